"""Thin absl entry points of inrsr (train, evaluate, upscale, benchmarks)."""
