"""glibc's allocator set for long streaming runs: freed large blocks go back to the OS (no jax import here)."""

import ctypes

FREED_BLOCK_BYTES = 4 << 20  # `return_freed_memory`'s mmap threshold (measured against 1 and 16 MiB)


def return_freed_memory() -> None:
  """Have glibc hand every freed block of 4 MiB or more straight back to the OS, for the rest of the process.

  What `MALLOC_MMAP_THRESHOLD_=4194304` sets (`mallopt(M_MMAP_THRESHOLD)`); nothing without glibc. A whole-clip
  model's frame-by-frame programs free their working buffers after each step, but glibc (whose threshold rises to
  32 MiB as such buffers are freed) keeps them in its heaps, and with the clip's LR-sized states allocated between
  them the holes add up: 20 BVSR-IK frames at 1024^2 peaked about 235 MiB over one frame without it, 130 MiB with
  it, in the same time (1 MiB: 155 MiB and 12 % slower; BENCHMARKS.md). `upscaling.upscale_paths` calls it for
  such a model (a process-wide allocator setting: the upscale command's, not a library default).
  """
  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):  # not glibc
    return
  m_mmap_threshold = -3  # <malloc.h>
  mallopt(m_mmap_threshold, FREED_BLOCK_BYTES)
