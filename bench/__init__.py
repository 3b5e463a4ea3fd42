"""Benchmarks: throughput and memory measured on the machine at hand, printed and written as JSON."""
