"""A reader of PyTorch `.pth` checkpoints (zip + pickle) that needs no torch and runs no foreign code.

Why not torch: reading the official checkpoints is the only thing inrsr needs from PyTorch, and torch is a
multi-GB dependency. `torch.save` writes a zip holding `data.pkl` and one raw little-endian file per tensor
storage; this module unpickles `data.pkl` with an allow-list of globals (plain containers, tensor rebuilding,
typed storages) and refuses every other global, so a malicious file cannot run code. Tensors become NumPy
arrays in their PyTorch layout (conv OIHW, Linear (out, in)); everything else stays a Python object.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None,  # NumPy has no bfloat16: converted to float32 below.
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  """Stands in for `torch.<Name>Storage` in the pickle: remembers the dtype."""

  def __init__(self, name: str):
    self.name = name


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """`torch._utils._rebuild_tensor_v2`: a strided view into a storage, copied to a contiguous array."""
  itemsize = storage.dtype.itemsize
  if not size:
    return storage[offset].copy()
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride))
  return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
  return data


class _Unpickler(pickle.Unpickler):
  """Allows plain containers and tensors only; any other global is an error."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path):
    super().__init__(file)
    self.archive, self.prefix, self.path = archive, prefix, path
    self.storages: dict[str, np.ndarray] = {}

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if (module, name) == ("torch._utils", "_rebuild_parameter"):
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise ValueError(f"{self.path}: refusing to load {module}.{name}: only tensors and plain containers are "
                     "read (this is not a plain PyTorch state_dict / checkpoint)")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
      raise ValueError(f"{self.path}: unexpected persistent id {pid!r}")
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
      raise ValueError(f"{self.path}: unexpected storage type {storage_type!r}")
    if key not in self.storages:
      raw = self.archive.read(f"{self.prefix}data/{key}")
      if storage_type.name == "BFloat16Storage":
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        self.storages[key] = bits.view(np.float32)
      else:
        self.storages[key] = np.frombuffer(raw, np.dtype(_STORAGE_DTYPES[storage_type.name]).newbyteorder("<"))
    return self.storages[key]


def load(path) -> dict:
  """Read a `.pth` file written by `torch.save` (zip format, PyTorch >= 1.6) without torch.

  Args:
    path: the file.

  Returns:
    The saved object with tensors as NumPy arrays (PyTorch layout, native byte order).

  Raises:
    ValueError: the file is missing, not a zip checkpoint, big-endian, or holds anything but tensors and
      plain containers.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f"{path}: no such file (expected a PyTorch .pth checkpoint)")
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path}: not a zip-format PyTorch checkpoint (saved by torch >= 1.6 with torch.save); "
                     "legacy or corrupt files are not supported")
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
      raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
    prefix = pickles[0][:-len("data.pkl")]
    if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder").strip() != b"little":
      raise ValueError(f"{path}: big-endian checkpoints are not supported")
    with archive.open(pickles[0]) as f:
      try:
        obj = _Unpickler(f, archive, prefix, path).load()
      except (pickle.UnpicklingError, EOFError, KeyError) as e:
        raise ValueError(f"{path}: corrupt checkpoint ({type(e).__name__}: {e})") from e
  return obj
