"""DEFT benchmarks: sparse inference speed (bench_sparse)."""
