"""Starting JAX's multi-process runtime for a training run of N processes (one per host or per GPU).

`initialize` wraps `jax.distributed.initialize`: with a coordinator address, a process count and this process's
index (from flags, or the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID) it
starts them as given; with `auto=True` and none of them, JAX detects them itself (SLURM, Open MPI, TPU pods);
with nothing set the run stays a single process. It must run before anything touches a device. On CPU the
processes exchange data through JAX's gloo collectives (`jax_cpu_collectives_implementation`, gloo by default in
jax 0.10), which is what the 2-process CI test uses on localhost.
"""

from __future__ import annotations

import os

import jax
from absl import logging

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_COUNT = "JAX_NUM_PROCESSES"
ENV_INDEX = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
  value = os.environ.get(name, "")
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def settings(coordinator_address: str | None = None, num_processes: int | None = None,
             process_id: int | None = None) -> tuple[str | None, int | None, int | None]:
  """The (address, count, index) a run starts with: each from its argument, else from its environment variable.

  Args:
    coordinator_address: "host:port" of process 0's coordinator service.
    num_processes: the number of processes.
    process_id: this process's index in [0, num_processes).

  Returns:
    (coordinator_address, num_processes, process_id), each None where neither gives it.

  Raises:
    ValueError: a count below 1, an index outside [0, count), or only some of the three given.
  """
  address = coordinator_address or os.environ.get(ENV_ADDRESS) or None
  count = num_processes if num_processes is not None else _env_int(ENV_COUNT)
  index = process_id if process_id is not None else _env_int(ENV_INDEX)
  given = {"coordinator_address": address, "num_processes": count, "process_id": index}
  if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    raise ValueError(f"--{' --'.join(missing)} missing: a multi-process run needs --coordinator_address, "
                     f"--num_processes and --process_id (or {ENV_ADDRESS}, {ENV_COUNT}, {ENV_INDEX}), or "
                     "--distributed to let JAX detect them on SLURM, Open MPI or a TPU pod")
  if count is not None:
    if count < 1:
      raise ValueError(f"num_processes={count} must be >= 1")
    if not 0 <= index < count:
      raise ValueError(f"process_id={index} must be in [0, num_processes={count})")
  return address, count, index


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
  """Start the multi-process runtime when the arguments or the environment ask for it.

  Args:
    coordinator_address: "host:port" of process 0 (every process gives the same one).
    num_processes: the number of processes.
    process_id: this process's index.
    auto: with none of the three given, let `jax.distributed.initialize()` detect them (SLURM, Open MPI, TPU).

  Returns:
    True when the runtime was started (then `jax.process_count()` is the number of processes), False for a
    single-process run.
  """
  address, count, index = settings(coordinator_address, num_processes, process_id)
  if address is None and not auto:
    return False
  if address is None:
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
  logging.info("process %d of %d (%d local of %d devices)", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True
