"""Tools that drive the running app: load tests and benchmarks."""
