"""DEFT benchmarks: sparse inference speed (bench_sparse), MiniLM accuracy and density (bench_minilm), SmolLM2 gated-MLP density (bench_smollm2)."""
