"""Static report of the Pallas hash-grid kernels compiled for an H100 (sm_90a) on a machine without a GPU.

Route (no device needed):
  1. XLA's deviceless compile: the CUDA PJRT plugin (`jax-cuda12-plugin`, optional extra `kernel-report`) builds a
     compile-only H100 device from a GpuTargetConfig (`topology="1x1x1"`, `target_config=...`), the forward and
     backward ops are lowered and compiled for it, and XLA dumps the module's PTX (`xla_dump_to`, per compile).
  2. ptxas (from `nvidia-cuda-nvcc-cu12`) assembles each kernel's PTX for sm_90a and reports registers, spills,
     stack and static shared memory; nvdisasm (`nvidia-cuda-nvdisasm`) gives the SASS, whose loads, atomics and
     fences (MEMBAR, and the ERRBAR / CCTL ptxas puts around acquire-release atomics) are counted.
  3. The PTX's global loads, stores and atomics are attributed to the kernel argument their address comes from
     (a forward data-flow pass over the PTX registers), so "coordinate loads" are the loads from `points`.

All counts are static instruction counts per thread of one program (the kernels are fully unrolled), not
dynamic profiles. Dynamic shared memory (Triton's scratch) comes from XLA's thunk sequence.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import time

# H100 SXM (80 GB HBM3) facts for XLA's GpuTargetConfigProto (text format). Only what the compiler reads.
H100 = dict(
    name="NVIDIA H100 80GB HBM3",
    core_count=132,
    threads_per_block_limit=1024,
    threads_per_warp=32,
    threads_per_core_limit=2048,
    shared_memory_per_block=48 * 1024,
    shared_memory_per_block_optin=227 * 1024,
    shared_memory_per_core=228 * 1024,
    registers_per_core_limit=65536,
    registers_per_block_limit=65536,
    fpus_per_core=128,
    memory_bandwidth=3_352_320_000_000,  # bytes/s (3.35 TB/s)
    l2_cache_size=50 * 1024 * 1024,
    clock_rate_ghz=1.98,
    device_memory_size=80 * 1024 ** 3,
    compute_capability=(9, 0),
)
ARCH = "sm_90a"
MAX_CTAS_PER_SM = 32
MAX_WARPS_PER_SM = 64
REG_ALLOC_UNIT = 256  # registers are allocated per warp in units of 256

KERNELS = ("hashgrid_fwd", "hashgrid_bwd")
# Kernel parameters, in the order of the pallas_call operands then outputs (aliased inputs are skipped).
PARAMS = {
    "hashgrid_fwd": ("points", "weights", "tables", "meta", "out"),
    "hashgrid_bwd": ("points", "weights", "tables", "meta", "g", "dtables_in", "dweights", "dtables"),
}


def target_config_text(spec: dict = H100) -> str:
  """GpuTargetConfigProto text for XLA's deviceless GPU compile."""
  major, minor = spec["compute_capability"]
  fields = [
      "threads_per_block_limit", "threads_per_warp", "shared_memory_per_block", "shared_memory_per_core",
      "threads_per_core_limit", "core_count", "fpus_per_core", "memory_bandwidth", "l2_cache_size",
      "clock_rate_ghz", "device_memory_size", "shared_memory_per_block_optin", "registers_per_core_limit",
      "registers_per_block_limit"]
  info = "\n".join(f"  {f}: {spec[f]}" for f in fields)
  info += ("\n  block_dim_limit_x: 2147483647\n  block_dim_limit_y: 65535\n  block_dim_limit_z: 65535"
           "\n  thread_dim_limit_x: 1024\n  thread_dim_limit_y: 1024\n  thread_dim_limit_z: 64"
           f"\n  cuda_compute_capability {{ major: {major} minor: {minor} }}"
           f'\n  name: "{spec["name"]}"\n  device_vendor: "NVIDIA Corporation"')
  return (f"gpu_device_info {{\n{info}\n}}\nplatform_name: \"CUDA\"\n"
          f"dnn_version_info {{ major: 9 minor: 8 }}\ndevice_description_str: \"{spec['name']}\"\n")


# ---------------------------------------------------------------------------------------------------------
# Tools.


def _nvidia_bin(name: str) -> str | None:
  """A CUDA tool shipped in an `nvidia-*` wheel (site-packages/nvidia/*/bin/NAME)."""
  spec = importlib.util.find_spec("nvidia")
  if spec is None or not spec.submodule_search_locations:
    return None
  for root in spec.submodule_search_locations:
    for path in sorted(glob.glob(os.path.join(root, "*", "bin", name))):
      if os.access(path, os.X_OK):
        return path
  return None


def tool(name: str) -> str | None:
  """Path of ptxas / nvdisasm: $INRSR_<NAME>, else the pip wheel's copy, else None."""
  return os.environ.get(f"INRSR_{name.upper()}") or _nvidia_bin(name)


def tool_version(path: str) -> str:
  out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
  m = re.search(r"release ([\d.]+), V([\d.]+)", out)
  return m.group(2) if m else out.strip().splitlines()[-1]


def missing_requirements() -> list[str]:
  """What the `kernel-report` extra would provide and is not installed; empty when the report can run."""
  missing = []
  if importlib.util.find_spec("jax_cuda12_plugin") is None:
    missing.append("jax-cuda12-plugin (XLA's CUDA compiler)")
  if tool("ptxas") is None:
    missing.append("ptxas (nvidia-cuda-nvcc-cu12)")
  if tool("nvdisasm") is None:
    missing.append("nvdisasm (nvidia-cuda-nvdisasm)")
  return missing


# ---------------------------------------------------------------------------------------------------------
# Deviceless compile.


def h100_devices(count: int = 1) -> list:
  """`count` compile-only H100s of one node from XLA's CUDA plugin (no GPU or driver needed).

  The plugin's topology "1x1x{count}" is one slice of one host with `count` devices, all of process 0, so a mesh
  over them compiles the collectives of a single-node job (NVLink), as `tools.aot` does for "gpu:h100x8".

  Args:
    count: devices on the node (1 for the kernel report).

  Returns:
    The devices (compile only: `jax.jit(...).lower(...).compile()` works, running does not).
  """
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    topo = topologies.get_topology_desc(platform="cuda", topology=f"1x1x{count}", target_config=target_config_text())
  except NotImplementedError as e:  # The plugin failed its CUDA runtime check when jax first loaded it.
    raise RuntimeError("jax's CUDA plugin is not registered: set JAX_PLATFORMS=cpu or "
                       "JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 before jax first uses a device") from e
  return list(topo.devices)


def h100_device():
  """A compile-only H100 device from XLA's CUDA plugin (no GPU or driver needed)."""
  return h100_devices(1)[0]


@dataclasses.dataclass(frozen=True)
class Case:
  """The op's sizes for the report (the paper's model by default)."""

  num_levels: int = 12
  log2_t: int = 24
  feats: int = 2
  n: int = 1 << 20
  dims: int = 6


def _abstract_args(case: Case, device):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  sh = jax.sharding.SingleDeviceSharding(device)
  n, nl, d = case.n, case.num_levels, case.dims
  return dict(
      points=jax.ShapeDtypeStruct((n, nl, d), jnp.float32, sharding=sh),
      weights=jax.ShapeDtypeStruct((n, nl, 1 << d), jnp.float32, sharding=sh),
      tables=jax.ShapeDtypeStruct((nl, 1 << case.log2_t, case.feats), jnp.float32, sharding=sh),
      cot=jax.ShapeDtypeStruct((n, nl, case.feats), jnp.float32, sharding=sh))


def resolutions(case: Case) -> tuple[int, ...]:
  from inrsr.models import encoding  # pylint: disable=g-import-not-at-top
  return encoding.level_resolutions(case.num_levels, 16, 128)


def _functions(case: Case, impl: str, block_sizes):
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  res = resolutions(case)

  def fwd(points, weights, tables):
    return hashgrid.hashgrid_gather(points, weights, tables, res, impl=impl, block_sizes=block_sizes)

  def bwd(points, weights, tables, cot):
    _, vjp = jax.vjp(lambda w, t: fwd(points, w, t), weights, tables)
    return vjp(cot)

  def fwd_bwd(points, weights, tables, cot):
    out, vjp = jax.vjp(lambda w, t: fwd(points, w, t), weights, tables)
    return out, vjp(cot)

  return fwd, bwd, fwd_bwd


def compile_for_h100(fn, args, dump_dir: str):
  """Lower and compile `fn` for the compile-only H100; XLA dumps HLO, buffers and PTX into dump_dir."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.jit(fn).trace(*args).lower().compile(compiler_options={"xla_dump_to": dump_dir})


def _kernel_ptx(dump_dir: str, kernel: str) -> str:
  for path in sorted(glob.glob(os.path.join(dump_dir, "*.ptx"))):
    text = pathlib.Path(path).read_text()
    if re.search(rf"\.entry\s+{kernel}\s*\(", text):
      return text
  raise RuntimeError(f"no PTX with entry {kernel} in {dump_dir}")


def _launch(dump_dir: str, kernel: str) -> dict:
  """Grid, threads and dynamic shared memory of the kernel's launch, from XLA's thunk sequence."""
  for path in sorted(glob.glob(os.path.join(dump_dir, "*thunk_sequence.txt"))):
    for line in pathlib.Path(path).read_text().splitlines():
      if f" {kernel} " in line:
        grid = re.search(r"grid: \[([\d, ]+)\]", line)
        threads = re.search(r"threads: \[([\d, ]+)\]", line)
        smem = re.search(r"shared_memory: (\d+) bytes", line)
        return dict(grid=[int(x) for x in grid.group(1).split(",")] if grid else None,
                    threads=math.prod(int(x) for x in threads.group(1).split(",")) if threads else None,
                    dynamic_smem_bytes=int(smem.group(1)) if smem else 0)
  return dict(grid=None, threads=None, dynamic_smem_bytes=0)


# ---------------------------------------------------------------------------------------------------------
# PTX analysis.

_REG = re.compile(r"%[a-z]+\d+")
_WIDTH = re.compile(r"\.v(\d)")


def _statements(ptx: str, kernel: str) -> list[str]:
  m = re.search(rf"\.entry\s+{kernel}\s*\(", ptx)
  body = ptx[m.start():]
  end = re.search(r"\n}\n", body)
  body = body[:end.start()] if end else body
  out = []
  for line in body.splitlines():
    line = line.split("//")[0]
    for stmt in line.split(";"):
      stmt = stmt.strip().strip("{}").strip()
      if stmt and not stmt.startswith("."):
        out.append(stmt)
  return out


def _split_operands(rest: str) -> list[str]:
  ops, depth, cur = [], 0, ""
  for ch in rest:
    if ch in "{[":
      depth += 1
    elif ch in "}]":
      depth -= 1
    if ch == "," and depth == 0:
      ops.append(cur.strip())
      cur = ""
    else:
      cur += ch
  if cur.strip():
    ops.append(cur.strip())
  return ops


def ptx_memory_ops(ptx: str, kernel: str) -> dict:
  """Global loads / stores / atomics per kernel argument, fences, and atomic semantics, from the PTX.

  Each address register is traced back (forward data flow over the virtual registers) to the kernel
  parameters it is computed from; values loaded from memory carry no parameter, so a gather's address is
  attributed to the table, not to the points its index came from.
  """
  names = PARAMS.get(kernel)
  taint: dict[str, frozenset] = {}
  loads: dict[str, int] = {}
  load_bytes: dict[str, int] = {}
  stores: dict[str, int] = {}
  atomics: dict[str, int] = {}
  semantics: dict[str, int] = {}
  fences = 0
  for stmt in _statements(ptx, kernel):
    stmt = re.sub(r"^@!?%p\d+\s+", "", stmt)
    parts = stmt.split(None, 1)
    op = parts[0]
    operands = _split_operands(parts[1]) if len(parts) > 1 else []
    if op.startswith("ld.param"):
      p = re.search(rf"{kernel}_param_(\d+)", stmt)
      idx = int(p.group(1)) if p else -1
      label = names[idx] if names and 0 <= idx < len(names) else f"param_{idx}"
      for r in _REG.findall(operands[0]):
        taint[r] = frozenset([label])
      continue
    if op.startswith(("fence", "membar")):
      fences += 1
      continue
    addr = next((o for o in operands if o.startswith("[")), None)
    src = frozenset().union(*(taint.get(r, frozenset()) for r in _REG.findall(addr or "")))
    label = "+".join(sorted(src)) or "?"
    width = int(_WIDTH.search(op).group(1)) if _WIDTH.search(op) else 1
    if op.startswith("ld.global"):
      loads[label] = loads.get(label, 0) + 1
      bits = re.search(r"\.[bfus](\d+)$", op)
      load_bytes[label] = load_bytes.get(label, 0) + width * (int(bits.group(1)) // 8 if bits else 4)
      for r in _REG.findall(operands[0]):
        taint[r] = frozenset()
      continue
    if op.startswith("st.global"):
      stores[label] = stores.get(label, 0) + 1
      continue
    if op.startswith(("atom.global", "red.global")):
      atomics[label] = atomics.get(label, 0) + 1
      sem = next((s for s in ("acq_rel", "release", "acquire", "relaxed") if f".{s}." in op + "."), "relaxed")
      key = f"{op.split('.')[0]}.{sem}"
      semantics[key] = semantics.get(key, 0) + 1
      if op.startswith("atom"):
        for r in _REG.findall(operands[0]):
          taint[r] = frozenset()
      continue
    if not operands:
      continue
    dst = _REG.findall(operands[0])
    srcs = frozenset().union(*(taint.get(r, frozenset()) for o in operands[1:] for r in _REG.findall(o)))
    for r in dst:
      taint[r] = srcs
  return dict(loads=loads, load_bytes=load_bytes, stores=stores, atomics=atomics,
              atomic_semantics=semantics, ptx_fences=fences, loops=ptx_loops(ptx, kernel))


def ptx_loops(ptx: str, kernel: str) -> int:
  """Loops in the kernel's PTX: branches back to an earlier label (LLVM may version a loop, giving two)."""
  seen, loops = set(), 0
  for stmt in _statements(ptx, kernel):
    if re.fullmatch(r"\$\w+:", stmt):
      seen.add(stmt[:-1])
    elif (m := re.search(r"\bbra(?:\.uni)?\s+(\$\w+)", stmt)) and m.group(1) in seen:
      loops += 1
  return loops


# ---------------------------------------------------------------------------------------------------------
# ptxas and SASS.


def run_ptxas(ptx: str, kernel: str, workdir: str, ptxas: str, arch: str = ARCH) -> dict:
  """Assemble the PTX; registers, spills, stack and static shared memory of `kernel`, and the cubin path."""
  src = os.path.join(workdir, f"{kernel}.ptx")
  cubin = os.path.join(workdir, f"{kernel}.cubin")
  pathlib.Path(src).write_text(ptx)
  proc = subprocess.run([ptxas, f"-arch={arch}", "-v", "-O3", src, "-o", cubin], capture_output=True,
                        text=True)
  if proc.returncode:
    raise RuntimeError(f"ptxas failed on {kernel}:\n{proc.stderr}")
  info = proc.stderr
  section = info[info.find(f"'{kernel}'"):]
  num = lambda pat: int(m.group(1)) if (m := re.search(pat, section)) else 0  # noqa: E731
  return dict(registers=num(r"Used (\d+) registers"), spill_stores_bytes=num(r"(\d+) bytes spill stores"),
              spill_loads_bytes=num(r"(\d+) bytes spill loads"), stack_bytes=num(r"(\d+) bytes stack frame"),
              static_smem_bytes=num(r"(\d+) bytes smem"), barriers=num(r"used (\d+) barriers"),
              cubin=cubin, ptxas_log=info.strip())


SASS_OPS = ("LDG", "STG", "ATOMG", "REDG", "ATOM", "RED", "MEMBAR", "FENCE", "ERRBAR", "CCTL", "BAR", "LDS",
            "STS", "SHFL")


def sass_counts(cubin: str, nvdisasm: str) -> dict:
  """Counts of memory, atomic and fence instructions in the SASS (static, per thread)."""
  proc = subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(f"nvdisasm failed:\n{proc.stderr}")
  counts = {k: 0 for k in SASS_OPS}
  total = 0
  for line in proc.stdout.splitlines():
    m = re.search(r"\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)[.\s;]", line)
    if not m:
      continue
    total += 1
    if m.group(1) in counts:
      counts[m.group(1)] += 1
  counts["instructions"] = total
  return counts


def occupancy(registers: int, threads: int, smem_bytes: int, spec: dict = H100) -> dict:
  """CTAs per SM and warp occupancy from registers, threads per CTA and shared memory."""
  warps = max(1, threads // 32)
  regs_per_warp = -(-registers * 32 // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
  by_regs = spec["registers_per_core_limit"] // (regs_per_warp * warps) if registers else MAX_CTAS_PER_SM
  by_smem = spec["shared_memory_per_core"] // (smem_bytes + 1024) if smem_bytes else MAX_CTAS_PER_SM
  by_warps = MAX_WARPS_PER_SM // warps
  ctas = min(by_regs, by_smem, by_warps, MAX_CTAS_PER_SM)
  return dict(ctas_per_sm=ctas, occupancy=ctas * warps / MAX_WARPS_PER_SM,
              limited_by=min((by_regs, "registers"), (by_smem, "shared memory"), (by_warps, "warps"))[1])


# ---------------------------------------------------------------------------------------------------------
# The report.


def kernel_report(case: Case = Case(), block_sizes=None, *, keep_dir: str | None = None) -> dict:
  """Compile both kernels for an H100 without a device and measure them; returns a JSON-able dict."""
  missing = missing_requirements()
  if missing:
    raise RuntimeError("the kernel report needs the `kernel-report` extra: missing " + ", ".join(missing))
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  block_sizes = block_sizes or hashgrid.BlockSizes.get_default(case.num_levels, case.feats, 1 << case.log2_t)
  ptxas, nvdisasm = tool("ptxas"), tool("nvdisasm")
  device = h100_device()
  args = _abstract_args(case, device)
  fwd, bwd, _ = _functions(case, "pallas", block_sizes)
  workdir = keep_dir or tempfile.mkdtemp(prefix="kernel_report_")
  report = dict(case=dataclasses.asdict(case), block_sizes=dataclasses.asdict(block_sizes), arch=ARCH,
                device=H100["name"], jax=jax.__version__, ptxas=tool_version(ptxas),
                nvdisasm=tool_version(nvdisasm), kernels={})
  try:
    for kernel, fn, fargs in (("hashgrid_fwd", fwd, (args["points"], args["weights"], args["tables"])),
                              ("hashgrid_bwd", bwd, (args["points"], args["weights"], args["tables"],
                                                     args["cot"]))):
      dump = os.path.join(workdir, kernel)
      t0 = time.perf_counter()
      compile_for_h100(fn, fargs, dump)
      compile_s = time.perf_counter() - t0
      ptx = _kernel_ptx(dump, kernel)
      launch = _launch(dump, kernel)
      t0 = time.perf_counter()
      asm = run_ptxas(ptx, kernel, workdir, ptxas)
      ptxas_s = time.perf_counter() - t0
      sass = sass_counts(asm.pop("cubin"), nvdisasm)
      mem = ptx_memory_ops(ptx, kernel)
      smem = asm["static_smem_bytes"] + launch["dynamic_smem_bytes"]
      entry = dict(**launch, **{k: v for k, v in asm.items() if k != "ptxas_log"}, smem_bytes=smem,
                   **occupancy(asm["registers"], launch["threads"] or 32 * block_sizes.num_warps, smem),
                   ptx=mem, sass=sass, compile_s=round(compile_s, 2), ptxas_s=round(ptxas_s, 2),
                   ptx_version=re.search(r"\.version\s+([\d.]+)", ptx).group(1))
      report["kernels"][kernel] = entry
  finally:
    if keep_dir is None:
      shutil.rmtree(workdir, ignore_errors=True)
  return report


def _fmt_counts(d: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "0"


def summary(report: dict) -> dict:
  """Per kernel: the headline figures (registers, spills, loads, coordinate-load repeat, atomics, fences)."""
  out = {}
  dims = report["case"]["dims"]
  for name, k in report["kernels"].items():
    s, p = k["sass"], k["ptx"]
    block_n = report["block_sizes"]["block_n" if name.endswith("fwd") else "block_n_bwd"]
    coord = p["loads"].get("points", 0)
    out[name] = dict(
        registers=k["registers"], spill_bytes=k["spill_stores_bytes"] + k["spill_loads_bytes"],
        stack_bytes=k["stack_bytes"], smem_bytes=k["smem_bytes"], ctas_per_sm=k["ctas_per_sm"],
        occupancy=k["occupancy"], global_loads=s["LDG"], coordinate_loads=coord,
        # How many threads load each coordinate of the block: 1 = every coordinate is loaded exactly once.
        coordinate_load_repeat=coord * k["threads"] / (dims * block_n),
        global_stores=s["STG"], global_atomics=s["ATOMG"] + s["REDG"] + s["ATOM"] + s["RED"],
        fenced_atomics=sum(v for key, v in p["atomic_semantics"].items() if not key.endswith("relaxed")),
        fences=s["MEMBAR"] + s["FENCE"], errbar=s["ERRBAR"], cctl=s["CCTL"], barriers=s["BAR"],
        sass_instructions=s["instructions"], loops=p["loops"])
  return out


def markdown(report: dict) -> str:
  """A Markdown table of the report: one row per kernel."""
  head = ("| kernel | block_n x threads | registers | spills (B) | CTAs/SM (occupancy) | smem B | global loads "
          "(LDG) | coordinate loads (repeat) | global atomics (fenced) | fences MEMBAR / ERRBAR / CCTL | "
          "SASS instructions | loops |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for name, m in summary(report).items():
    k = report["kernels"][name]
    block_n = report["block_sizes"]["block_n" if name.endswith("fwd") else "block_n_bwd"]
    lines.append(
        f"| {name} | {block_n} x {k['threads']} | {m['registers']} | {m['spill_bytes']} | {m['ctas_per_sm']} "
        f"({m['occupancy']:.1%}) | {m['smem_bytes']} | {m['global_loads']} | {m['coordinate_loads']} "
        f"({m['coordinate_load_repeat']:g}x) | {m['global_atomics']} ({m['fenced_atomics']}) | {m['fences']} / "
        f"{m['errbar']} / {m['cctl']} | {m['sass_instructions']} | {m['loops']} |")
  c = report["case"]
  lines.append("")
  lines.append(f"L={c['num_levels']}, T=2^{c['log2_t']}, F={c['feats']}, N={c['n']}; {report['arch']} "
               f"({report['device']}), jax {report['jax']}, ptxas {report['ptxas']}, nvdisasm {report['nvdisasm']}; "
               f"num_warps={report['block_sizes']['num_warps']}. Counts are static instructions per thread of one "
               "program: an instruction in a loop body counts once.")
  for name, k in report["kernels"].items():
    lines.append(f"- {name}: PTX loads by argument: {_fmt_counts(k['ptx']['loads'])}; stores: "
                 f"{_fmt_counts(k['ptx']['stores'])}; atomics: {_fmt_counts(k['ptx']['atomics'])} "
                 f"({_fmt_counts(k['ptx']['atomic_semantics'])}).")
  return "\n".join(lines)


def write(report: dict, out_dir: str) -> tuple[str, str]:
  """Write kernel_report.json and kernel_report.md into out_dir; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  jpath, mpath = os.path.join(out_dir, "kernel_report.json"), os.path.join(out_dir, "kernel_report.md")
  with open(jpath, "w") as f:
    json.dump(report, f, indent=1)
  with open(mpath, "w") as f:
    f.write(markdown(report) + "\n")
  return jpath, mpath


# ---------------------------------------------------------------------------------------------------------
# Bytes moved per query: from the compiled HLO's buffers on the CUDA target.

SECTOR = 32  # bytes: the unit a gathered row or an atomic moves between L2 and HBM
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4,
                "s64": 8, "u64": 8, "f64": 8}
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16)\[([\d,]*)\]")
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*(.*?)\s+([\w\-]+)\((.*)$")


def _shape_bytes(shape: str) -> int:
  return sum(_DTYPE_BYTES.get(t, 4) * math.prod(int(d) for d in dims.split(",") if d)
             for t, dims in _ARRAY.findall(shape))


def _parse_hlo(text: str) -> dict:
  """Computations of an HLO module: name -> list of (name, shape, opcode, operands, attributes)."""
  comps, cur = {}, None
  for line in text.splitlines():
    m = re.match(r"^(?:ENTRY\s+)?%([\w.\-]+)\s*\(.*\)\s*->.*\{\s*$", line)
    if m:
      cur = comps.setdefault(m.group(1), [])
      if line.startswith("ENTRY"):
        comps["__entry__"] = cur
      continue
    if line.startswith("}"):
      cur = None
      continue
    m = _INSTR.match(line)
    if cur is None or not m:
      continue
    name, shape, opcode, rest = m.groups()
    depth, i = 1, 0
    while i < len(rest) and depth:
      depth += {"(": 1, ")": -1}.get(rest[i], 0)
      i += 1
    operands = re.findall(r"%([\w.\-]+)", rest[:i - 1])
    cur.append((name, shape, opcode, operands, rest[i:]))
  return comps


_VIEW_OPS = ("bitcast", "reshape", "get-tuple-element", "copy-start", "copy-done")


def _fusion_bytes(comp: list) -> tuple[int, int]:
  """(read, written) bytes of one fused kernel: operands read whole unless only gathered / sliced from (then the
  gathered rows at one 32-byte sector each, or the slice), outputs written whole unless updated in place."""
  by_name = {i[0]: i for i in comp}
  params = [i[0] for i in comp if i[2] == "parameter"]
  users: dict[str, list] = {}
  for ins in comp:
    for k, o in enumerate(ins[3]):
      users.setdefault(o, []).append((ins, k))

  def partial_read(name) -> int | None:
    """Bytes read from `name` if every use only gathers / slices it (through views), else None."""
    total = 0
    for (uname, ushape, uop, _, uattrs), k in users.get(name, []):
      if uop in _VIEW_OPS:
        sub = partial_read(uname)
        if sub is None:
          return None
        total += sub
      elif uop == "gather" and k == 0:
        sizes = re.search(r"slice_sizes=\{([\d,]*)\}", uattrs)
        row = math.prod(int(x) for x in sizes.group(1).split(",") if x) if sizes else 1
        elem = _DTYPE_BYTES.get(_ARRAY.search(ushape).group(1), 4)
        rows = _shape_bytes(ushape) // max(1, row * elem)
        total += rows * max(SECTOR, row * elem)
      elif uop in ("dynamic-slice", "slice") and k == 0:
        sub = partial_read(uname)  # a slice that is only gathered from reads the gathered rows
        total += _shape_bytes(ushape) if sub is None else min(sub, _shape_bytes(ushape))
      elif uop in ("dynamic-update-slice", "scatter") and k == 0:
        continue  # updated in place: counted with the output
      else:
        return None
    return total

  read = 0
  for name in params:
    full = _shape_bytes(by_name[name][1])
    part = partial_read(name)
    read += full if part is None else min(full, part)
  root = comp[-1]
  written = 0
  root_ops = [by_name[o] for o in root[3]] if root[2] == "tuple" else [root]
  for r in root_ops:
    if r[2] == "dynamic-update-slice":
      written += _shape_bytes(by_name[r[3][1]][1]) if r[3][1] in by_name else 0
    elif r[2] == "scatter":
      upd = by_name.get(r[3][2])
      n = _shape_bytes(upd[1]) if upd else 0
      written += 2 * n  # read-modify-write of the updated rows
    else:
      written += _shape_bytes(r[1])
  return read, written


def hlo_bytes(hlo_text: str, kernel_bytes: dict[str, tuple[int, int]] | None = None) -> dict:
  """Bytes read and written by the kernels of a compiled module (loops times their known trip counts).

  Args:
    hlo_text: XLA's after-optimizations HLO of the module.
    kernel_bytes: custom-call kernel name (e.g. "hashgrid_fwd") -> (read, written), for kernels whose operands
      are not read whole (the Pallas kernels gather their tables): their bytes come from the caller's model.

  Returns:
    dict(read=..., written=..., kernels=[(name, calls, read, written)]) in bytes.
  """
  comps = _parse_hlo(hlo_text)
  kernel_bytes = kernel_bytes or {}
  rows = []

  def walk(comp_name: str, times: int):
    comp = comps[comp_name]
    shapes = {i[0]: i[1] for i in comp}
    for name, shape, opcode, operands, attrs in comp:
      if opcode == "while":
        trips = re.search(r'known_trip_count":\{"n":"(\d+)"', attrs)
        body = re.search(r"body=%([\w.\-]+)", attrs)
        walk(body.group(1), times * (int(trips.group(1)) if trips else 1))
      elif opcode == "fusion":
        called = re.search(r"calls=%([\w.\-]+)", attrs).group(1)
        r, w = _fusion_bytes(comps[called])
        rows.append((name, times, r * times, w * times))
      elif opcode == "custom-call":
        target = re.search(r'name\s*=\s*"(\w+)"', attrs) or re.search(r'op_name="[^"]*?/(\w+)/pallas_call', attrs)
        key = next((k for k in kernel_bytes if k in attrs), None)
        if key is not None:
          r, w = kernel_bytes[key]
        else:
          r = sum(_shape_bytes(shapes.get(o, "")) for o in operands)
          w = _shape_bytes(shape)
        rows.append((key or (target.group(1) if target else name), times, r * times, w * times))
      elif opcode in ("copy", "sort", "scatter", "gather", "reduce", "transpose", "dynamic-update-slice"):
        r = sum(_shape_bytes(shapes.get(o, "")) for o in operands)
        rows.append((name, times, r * times, _shape_bytes(shape) * times))

  walk("__entry__", 1)
  return dict(read=sum(r[2] for r in rows), written=sum(r[3] for r in rows), kernels=rows)


def fused_kernel_bytes(case: Case, kernel: str) -> tuple[int, int]:
  """(read, written) bytes of one Pallas kernel call at sector granularity: each gathered row and each atomic
  add touches one 32-byte sector of HBM (tables far larger than L2, rows hit in random order)."""
  n, nl, corners = case.n, case.num_levels, 1 << case.dims
  row = max(SECTOR, case.feats * 4)
  points, weights, out = n * nl * case.dims * 4, n * nl * corners * 4, n * nl * case.feats * 4
  gathers = n * nl * corners * row
  if kernel == "hashgrid_fwd":
    return points + weights + gathers, out
  # Backward: points, weights, g and the gathers in; dweights out; the atomics read and write their sectors.
  atomics = n * nl * corners * row
  return points + weights + out + gathers + atomics, weights + atomics


def bytes_model(case: Case = Case(), block_sizes=None, *, bandwidth: float = H100["memory_bandwidth"]) -> dict:
  """Bytes moved per query (one point, all L levels) by the fused kernels and by the XLA reference.

  Both are compiled for the H100 without a device; each kernel of the optimized HLO counts its operands and
  outputs (gathers and slices only what they take, a gathered row one 32-byte sector; in-place updates only the
  update), loop bodies times their trip counts; the Pallas kernels count their model (`fused_kernel_bytes`).
  Returns per impl and step ("fwd", "fwd_bwd"): bytes per query, the time at `bandwidth` and the queries/s
  that implies, and the kernels that move the most.
  """
  from kernels import hashgrid  # pylint: disable=g-import-not-at-top
  block_sizes = block_sizes or hashgrid.BlockSizes.get_default(case.num_levels, case.feats, 1 << case.log2_t)
  device = h100_device()
  args = _abstract_args(case, device)
  kernel_bytes = {k: fused_kernel_bytes(case, k) for k in KERNELS}
  out = dict(case=dataclasses.asdict(case), bandwidth_bytes_per_s=bandwidth, impls={})
  with tempfile.TemporaryDirectory(prefix="bytes_model_") as tmp:
    for impl in ("pallas", "reference"):
      fwd, _, fwd_bwd = _functions(case, impl, block_sizes)
      for step, fn, fargs in (("fwd", fwd, (args["points"], args["weights"], args["tables"])),
                              ("fwd_bwd", fwd_bwd, (args["points"], args["weights"], args["tables"], args["cot"]))):
        dump = os.path.join(tmp, f"{impl}_{step}")
        compiled = compile_for_h100(fn, fargs, dump)
        (hlo,) = glob.glob(os.path.join(dump, "*after_optimizations.txt"))
        r = hlo_bytes(pathlib.Path(hlo).read_text(), kernel_bytes)
        total = r["read"] + r["written"]
        top: dict[str, list] = {}
        for name, calls, rd, wr in r["kernels"]:
          t = top.setdefault(re.sub(r"\.\d+$", "", name), [0, 0])
          t[0] += calls
          t[1] += rd + wr
        mem = compiled.memory_analysis()
        out["impls"].setdefault(impl, {})[step] = dict(
            bytes_per_query=total / case.n, read_per_query=r["read"] / case.n,
            written_per_query=r["written"] / case.n, ms_at_bandwidth=total / bandwidth * 1e3,
            queries_per_s_at_bandwidth=case.n * bandwidth / total,
            temp_bytes=getattr(mem, "temp_size_in_bytes", None),
            top_kernels=sorted(([k, c, b / case.n] for k, (c, b) in top.items()), key=lambda x: -x[2])[:6])
  return out


def bytes_markdown(model: dict) -> str:
  c = model["case"]
  lines = ["| impl | step | bytes / query | read / written | at 3.35 TB/s: ms for N | queries/s | temp GB | "
           "largest kernels (calls, bytes / query) |", "|---|---|---|---|---|---|---|---|"]
  for impl, steps in model["impls"].items():
    for step, m in steps.items():
      top = "; ".join(f"{k} ({n}, {b:,.0f})" for k, n, b in m["top_kernels"][:3])
      lines.append(f"| {impl} | {step} | {m['bytes_per_query']:,.0f} | {m['read_per_query']:,.0f} / "
                   f"{m['written_per_query']:,.0f} | {m['ms_at_bandwidth']:.1f} | {m['queries_per_s_at_bandwidth']:.3g} | "
                   f"{(m['temp_bytes'] or 0) / 1e9:.2f} | {top} |")
  lines.append("")
  lines.append(f"L={c['num_levels']}, T=2^{c['log2_t']}, F={c['feats']}, N={c['n']} queries (one query: one point at "
               "all L levels).")
  return "\n".join(lines)
