"""Benchmarks: our pipeline, models and training steps timed against a reference, interleaved."""
