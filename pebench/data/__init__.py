"""Datasets: the embedded synthetic scenes and loaders for the real benchmarks."""
