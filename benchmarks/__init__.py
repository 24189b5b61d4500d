"""Benchmark scripts (run as ``python benchmarks/<name>.py``); an installed package so they
import each other by name."""
