"""Benchmarks and the load tool: they drive the app and the engine; not engine code."""
