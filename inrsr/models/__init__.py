"""Models of inrsr: SR-INR / VR-INR (srinr.py)."""
