"""inrsr: arbitrary-scale image and video super-resolution with implicit neural representations."""

__version__ = "0.1.0"
