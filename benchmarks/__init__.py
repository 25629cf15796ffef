"""Side-by-side measurements. Run with `nox -s bench`; records land in benchmarks/results/."""
