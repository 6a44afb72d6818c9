"""Custom kernels for inrsr (hash-grid lookup and 64-vertex weighted gather)."""
