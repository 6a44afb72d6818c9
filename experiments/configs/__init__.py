"""Experiment configs: `--config=NAME[:ARG]` (or `--config NAME[:ARG]`) resolves to experiments/configs/NAME.py.

`run(main)` starts every entry point of experiments/: the config names resolved, then `absl.app.run`, with an
expected error (bad input: ValueError, FileNotFoundError, FileExistsError, an error type of inrsr, absl's
UsageError, an unknown `--config.a.b` field) printed as one line `error: ...` on stderr, exit status 2, and no
traceback; `--verbose` or INRSR_VERBOSE=1 shows the traceback. Any other exception (a bug) keeps its traceback.
It also turns on JAX's persistent compilation cache (`compilation_cache`), so a second run of the same program
loads its executables instead of compiling them again.
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
import sys

CONFIG_DIR = pathlib.Path(__file__).resolve().parent
VERBOSE_ENV = "INRSR_VERBOSE"
ERROR_EXIT_CODE = 2
CACHE_ENV = "INRSR_COMPILATION_CACHE"


def compilation_cache(environ=None) -> str | None:
  """Turn on JAX's persistent compilation cache for this process, unless the user said otherwise.

  JAX_COMPILATION_CACHE_DIR, when set, is JAX's own setting and wins. Otherwise INRSR_COMPILATION_CACHE names the
  folder ("" turns the cache off); by default `$XDG_CACHE_HOME/inrsr/jax` (~/.cache/inrsr/jax). Executables are
  keyed by their program, compile options, backend and JAX version, so a stale entry is never used.

  Args:
    environ: the environment to read (default os.environ).

  Returns:
    The folder in use, or None when the cache is off or JAX's own variable decides.
  """
  environ = os.environ if environ is None else environ
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return None
  folder = environ.get(CACHE_ENV)
  if folder is None:
    folder = os.path.join(environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "inrsr", "jax")
  if not folder:
    return None
  import jax  # pylint: disable=g-import-not-at-top

  jax.config.update("jax_compilation_cache_dir", folder)
  return folder


def _resolve(value: str, flag: str = "config") -> str:
  """NAME[:ARG] -> the path of experiments/configs/NAME.py[:ARG]; paths and NAME.py pass unchanged."""
  if value.startswith("/"):
    return value
  name, sep, arg = value.partition(":")
  if name.endswith(".py") or "/" in name:
    return value
  path = CONFIG_DIR / f"{name}.py"
  if not path.exists():
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "common")
    raise ValueError(f"--{flag}={name}: no experiments/configs/{name}.py; known configs: {known}")
  return f"{path}{sep}{arg}"


def resolve_argv(argv: list[str], names: tuple[str, ...] = ("config",)) -> list[str]:
  """Rewrite `--config=NAME[:ARG]` and `--config NAME[:ARG]` into `--config=<path of NAME.py>[:ARG]`.

  Args:
    argv: the command line (sys.argv).
    names: the config-file flags to resolve (a CLI with a second config flag names both).

  Returns:
    The command line with the configs named by path (other arguments unchanged).

  Raises:
    ValueError: NAME is not a config file here, listing the ones that are.
  """
  out = []
  args = iter(argv)
  for a in args:
    for flag in names:
      if a.startswith(f"--{flag}="):
        a = f"--{flag}={_resolve(a[len(flag) + 3:], flag)}"
      elif a == f"--{flag}":
        value = next(args, None)
        a = f"--{flag}" if value is None else f"--{flag}={_resolve(value, flag)}"  # absl reports the missing value.
    out.append(a)
  return out


def _verbose(argv: list[str]) -> bool:
  """--verbose / --verbose=true|1 on the command line (the last one wins), else INRSR_VERBOSE set and not 0."""
  value = os.environ.get(VERBOSE_ENV, "") not in ("", "0")
  for a in argv[1:]:
    if a == "--":
      break
    if a in ("--verbose", "-verbose"):
      value = True
    elif a in ("--noverbose", "-noverbose"):
      value = False
    elif a.startswith(("--verbose=", "-verbose=")):
      value = a.split("=", 1)[1].lower() in ("1", "true", "t", "yes", "y")
  return value


def _expected(e: BaseException) -> bool:
  """Bad input rather than a bug: the error types a user's arguments or files raise, and inrsr's own."""
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  return (isinstance(e, (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                         PermissionError, app.UsageError, flags.Error))
          or type(e).__module__.split(".")[0] == "inrsr")


def _fields_near(flag: str, path: str, key: str, argv: list[str]) -> str:
  """'; did you mean ...' (or the fields there are) for the missing `key` of `--flag.path`, from the config file
  loaded again; '' when it cannot be loaded."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  try:
    value = next(a.split("=", 1)[1] for a in reversed(argv) if a.startswith(f"--{flag}="))
    node = flags.FLAGS[flag].parser.parse(value)
    for part in path.split("."):
      if part == key:
        break
      node = node[part]
    fields = sorted(node.keys())
  except Exception:  # pylint: disable=broad-except  # only a hint: the error is reported without it
    return ""
  close = difflib.get_close_matches(key, fields, n=3)
  if close:
    return f"; did you mean {' or '.join(close)}?"
  return f"; its fields are {', '.join(fields)}" if len(fields) <= 12 else ""


def _unknown_field(e: BaseException, argv: list[str]) -> str | None:
  """The one-line message of an override of a field the config lacks (ml_collections raises a KeyError or an
  AttributeError while absl parses `--config.a.b=v`), or None for another error."""
  if not isinstance(e, (KeyError, AttributeError)):
    return None
  inner = e
  while isinstance(inner.__context__, (KeyError, AttributeError)):
    inner = inner.__context__
  text = inner.args[0] if inner.args and isinstance(inner.args[0], str) else str(inner)
  key = text.strip().strip("'\"").splitlines()[0].strip("'\"") if text.strip() else ""
  for a in argv[1:]:
    name = a.split("=", 1)[0]
    match = re.fullmatch(r"--?(\w+)\.([\w.]+)", name)
    if key and match and key in match.group(2).split("."):
      parts = match.group(2).split(".")
      parent = ".".join(parts[:parts.index(key)]) or match.group(1)
      return (f"{name}: {parent} has no field {key!r}" +
              _fields_near(match.group(1), match.group(2), key, resolve_argv(argv, (match.group(1),))))
  return None


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split()) or type(e).__name__


def reuse_freed_memory_flag():
  """Define `--reuse_freed_memory` (glibc keeps freed blocks for reuse, `allocator.reuse_freed_memory`).

  Returns:
    The flag's holder; `apply_reuse_freed_memory(holder)` first thing in `main`, before JAX's backend starts.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  return flags.DEFINE_bool(
      "reuse_freed_memory", False, "CPU runs: have glibc keep freed blocks for reuse instead of handing XLA's "
      "buffers back to the OS after every step (on 2 CPU cores 1.1-1.2x the LIIF train step's speed and 1.1-1.9x "
      "inference's; the resident size stays at its peak).")


def apply_reuse_freed_memory(holder) -> bool:
  """Set glibc so when `holder` (from `reuse_freed_memory_flag`) is on; a warning where glibc refuses.

  Args:
    holder: the flag holder.

  Returns:
    Whether the setting is in effect.
  """
  if not holder.value:
    return False
  from absl import logging  # pylint: disable=g-import-not-at-top
  from inrsr.infer import allocator  # pylint: disable=g-import-not-at-top

  if allocator.reuse_freed_memory():
    return True
  logging.warning("--reuse_freed_memory: glibc's mallopt is not available here; the allocator is unchanged")
  return False


def run(main, names: tuple[str, ...] = ("config",)) -> None:
  """Run an entry point's `main` with absl: the shared start of every `experiments/*.py`.

  The config flags `names` are resolved (`resolve_argv`). An expected error, raised while the flags are parsed
  or by `main`, ends the process with one line `error: MESSAGE` on stderr and exit status 2; `--verbose` (a
  flag every entry point takes) or INRSR_VERBOSE=1 re-raises it with its traceback. Other exceptions are
  re-raised as they are.

  Args:
    main: the entry point's `main(argv)`.
    names: its config-file flags (none for scripts without one).
  """
  from absl import app, flags  # pylint: disable=g-import-not-at-top

  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, f"Show the Python traceback of an error (or set {VERBOSE_ENV}=1).",
                      module_name=sys.argv[0])  # listed with the entry point's own flags in --help
  verbose = _verbose(sys.argv)
  compilation_cache()

  def fail(message: str | None) -> None:
    if message is not None and not verbose:
      print(f"error: {message}", file=sys.stderr)
      sys.exit(ERROR_EXIT_CODE)

  started = []

  def guarded(argv):
    started.append(True)
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except  # absl would print a UsageError with the whole help
      fail(_one_line(e) if _expected(e) else None)
      raise

  try:
    app.run(guarded, argv=resolve_argv(sys.argv, names))
  except Exception as e:  # raised before main: resolving the config name, or parsing the flags
    if started:
      raise
    fail(_unknown_field(e, sys.argv) or (_one_line(e) if _expected(e) else None))
    raise
