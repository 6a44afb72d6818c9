"""Training: the loop, checkpoints, the cumulative schedule and the multi-process runtime."""
