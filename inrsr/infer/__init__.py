"""Inference: the chunked op, file and clip upscaling, and zero-shot fitting."""
