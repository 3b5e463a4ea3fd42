"""Benchmarks and stress harnesses behind `run.py bench ...`: each prints numbers, none is a test."""
