"""Custom kernels for inrsr (hash-grid lookup and 64-vertex weighted gather; 3x3 convolution by Winograd)."""
