"""glibc's allocator, set per process: freed blocks back to the OS, or kept for reuse (no jax import here)."""

import ctypes
import os

FREED_BLOCK_BYTES = 4 << 20  # `return_freed_memory`'s mmap threshold (measured against 1 and 16 MiB)

# <malloc.h>'s mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -3, -4, -8
_ENV = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
        "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


def _mallopt():
  try:
    return ctypes.CDLL("libc.so.6").mallopt
  except (OSError, AttributeError):  # not glibc
    return None


def return_freed_memory() -> None:
  """Have glibc hand every freed block of 4 MiB or more straight back to the OS, for the rest of the process.

  What `MALLOC_MMAP_THRESHOLD_=4194304` sets (`mallopt(M_MMAP_THRESHOLD)`); nothing without glibc. A whole-clip
  model's frame-by-frame programs free their working buffers after each step, but glibc (whose threshold rises to
  32 MiB as such buffers are freed) keeps them in its heaps, and with the clip's LR-sized states allocated between
  them the holes add up: 20 BVSR-IK frames at 1024^2 peaked about 235 MiB over one frame without it, 130 MiB with
  it, in the same time (1 MiB: 155 MiB and 12 % slower; BENCHMARKS.md). `upscaling.upscale_paths` calls it for
  such a model (a process-wide allocator setting: the upscale command's, not a library default).
  """
  mallopt = _mallopt()
  if mallopt is not None:
    mallopt(_M_MMAP_THRESHOLD, FREED_BLOCK_BYTES)


def reuse_freed_memory() -> bool:
  """Have glibc keep every freed block for the next allocation: one heap, no block of its own, never trimmed.

  XLA:CPU allocates each run's temporaries and outputs afresh from its worker threads; glibc maps any block over
  32 MiB (its highest mmap threshold) on its own, or from the threads' own heaps, and gives it back when freed,
  so the next run faults in and zeroes every page again: 136,000 page faults (530 MiB) and 0.2 s of kernel time
  per LIIF train step at batch 4 on 2 cores (BENCHMARKS.md, "glibc's arenas"). Set so (what
  `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647` set), the step faults none and runs
  1.09-1.21 times as fast (inference 1.1-1.9 times); the price is a resident size that stays at its peak, and
  every thread allocating from one heap. Only threads that have not allocated yet are affected: call it before
  JAX's backend starts (its first `jax.devices()` or computation), or the CPU client's threads keep their own
  heaps (`experiments.train --reuse_freed_memory` does; the default keeps glibc's behaviour). Nothing without
  glibc.

  Returns:
    Whether glibc took the three settings.
  """
  mallopt = _mallopt()
  if mallopt is None:
    return False
  return all([mallopt(_M_ARENA_MAX, 1) == 1, mallopt(_M_MMAP_MAX, 0) == 1,
              mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1])


def settings() -> str:
  """glibc's allocator variables of this process's environment, "NAME=value ..." (for a benchmark's header)."""
  return " ".join(f"{k}={os.environ[k]}" for k in _ENV if k in os.environ)
