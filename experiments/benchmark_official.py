r"""Every port against its official PyTorch code on CPU: same weights, same input, outputs compared, interleaved.

  python -m experiments.benchmark_official --official=/path/to/checkouts [--models=liif,hiif,clit,bvsr_ik]
      [--cases=liif_edsr_x4,...] [--json=FILE] [--repeats=3] [--threads=2] [--reuse_freed_memory] [--one_process]

--official is a folder holding the official checkouts side by side (outside this repository, fetched as the
fixture generators say: ../shared/fixtures/README.md): `liif` (yinboc/liif), `CLIT` (jaroslaw1007/CLIT), `HIIF`
(the hello-jinwoo/HIIF files the HIIF fixture names, with yinboc/liif's models/models.py) and `BVSR-IK`
(QZ1-boy/BVSR-IK). The weights are the shared fixture checkpoints (--fixtures), loaded into the official model as
its own code loads them and, converted (`inrsr.convert`), into inrsr (the LIIF and CLIT fixtures' x100 on the last
layer is taken back out on both sides, `_unamplify`). The official code runs unedited, with the
generators' CPU patches: `.cuda()` is the identity, device='cuda' tensors are made on the CPU, and modules that are
imported but not used here (timm, tensorboardX, torchvision, cv2) are stubbed.

Each case runs in a fresh process of its own (spawned; --one_process runs them all in this one, as before): a case
run after others inherits their heap and threads, which moved BVSR-IK's official side 1.7x (BENCHMARKS.md, "Every
row, each case in a fresh process of its own"). Each case: one warm-up call of each implementation (its wall time is
the first-call time: compilation for inrsr), then the two interleaved, the median of --repeats calls each. Speeds
are output pixels per second (train rows: seconds per step); ratio = inrsr speed / official speed. The outputs of
the warm-up calls are compared (both clipped to [0, 1]; train rows: the first step's L1 loss in the same units)
against the fixtures' bar, 1e-5. Prints one Markdown table with the load average (/proc/loadavg) at start and end,
versions and threads; --json writes the list of rows, each with the run's context under "run" (rewritten after every
case, so a long run that stops keeps what it measured). A case that fails is a row with its error; the exit status
is 1 when any case failed or missed the bar.

--reuse_freed_memory sets glibc's allocator for each case's whole process
(`inrsr.infer.allocator.reuse_freed_memory`), so both sides get it: PyTorch gains more from it than inrsr
(BENCHMARKS.md, "glibc's arenas"). The header names the allocator setting and glibc's MALLOC_* variables, which
change both sides' speed as much.

Without torch, or without a model's checkout, the affected cases are skipped with a one-line reason.
"""

import importlib.util
import os
import pathlib
import sys

from absl import app
from absl import flags

from experiments import configs
from tools.official import CASES, CHECKOUTS, REPO, markdown, run_cases

_OFFICIAL = flags.DEFINE_string("official", None, "Folder holding the official checkouts (liif, CLIT, HIIF, BVSR-IK).")
_FIXTURES = flags.DEFINE_string(
    "fixtures", str(pathlib.Path(os.environ.get("INRSR_SHARED_DIR", REPO.parent / "shared")) / "fixtures"),
    "The shared fixtures folder (its checkpoints are the weights).")
_MODELS = flags.DEFINE_list("models", ["liif", "hiif", "clit", "bvsr_ik"], "Models to run: liif, hiif, clit, bvsr_ik.")
_CASES = flags.DEFINE_list("cases", [], "Cases to run (default: every case of --models); see CASES.")
_JSON = flags.DEFINE_string("json", None, "Write the rows (and the run's header) to this JSON file.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per implementation (median), interleaved.")
_THREADS = flags.DEFINE_integer("threads", 2, "torch.set_num_threads (XLA's CPU client uses every core).")
_CHUNK = flags.DEFINE_integer("chunk", 30000, "Query points per call for both (the official eval_bsize).")
_REUSE = configs.reuse_freed_memory_flag()  # each case's process's allocator: both sides get it
_ONE_PROCESS = flags.DEFINE_bool("one_process", False, "Run every case in this process instead of one each.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if importlib.util.find_spec("torch") is None:
    sys.exit("benchmark_official: needs PyTorch for the official side (pip install torch); not installed")
  official_dir = pathlib.Path(_OFFICIAL.value)
  if not official_dir.is_dir():
    sys.exit(f"benchmark_official: --official={official_dir} is not a folder")
  unknown = sorted(set(_MODELS.value) - set(CHECKOUTS)) + sorted(set(_CASES.value) - set(CASES))
  if unknown:
    raise app.UsageError(f"unknown --models/--cases {unknown}; models {sorted(CHECKOUTS)}, cases {sorted(CASES)}")
  if _REPEATS.value < 1:
    raise app.UsageError(f"--repeats={_REPEATS.value} must be >= 1")
  reuse = configs.apply_reuse_freed_memory(_REUSE)  # before either side allocates
  names = _CASES.value or [n for n, c in CASES.items() if c.model in _MODELS.value]
  header, rows = run_cases(names, official_dir, pathlib.Path(_FIXTURES.value), repeats=_REPEATS.value,
                           chunk=_CHUNK.value, threads=_THREADS.value, json_path=_JSON.value,
                           allocator_mode="reuse_freed_memory" if reuse else "glibc default",
                           one_process=_ONE_PROCESS.value)
  print(markdown(header, rows))
  if any("error" in r or not r.get("within_bar", True) for r in rows):
    sys.exit(1)


if __name__ == "__main__":
  flags.mark_flags_as_required(["official"])
  configs.run(main, names=())
