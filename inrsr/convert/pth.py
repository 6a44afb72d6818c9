"""A reader of PyTorch `.pth` checkpoints (zip + pickle) that needs no torch and runs no foreign code.

Why not torch: reading the official checkpoints is the only thing inrsr needs from PyTorch, and torch is a
multi-GB dependency. `torch.save` writes a zip holding `data.pkl` and one raw little-endian file per tensor
storage; this module unpickles `data.pkl` with an allow-list of globals (plain containers, tensor rebuilding,
typed storages) and refuses every other global, so a malicious file cannot run code. Tensors become NumPy
arrays in their PyTorch layout (conv OIHW, Linear (out, in)); everything else stays a Python object. Every
tensor's offset, sizes and strides are checked against its storage before it is read (no view reaches past the
storage's elements, none repeats them, strides are not negative), so a crafted file cannot read memory out of
bounds; a tensor that fails is refused by its file and key.
"""

from __future__ import annotations

import collections
import math
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


class _Storage:
  """One storage of the archive: its key (the file `data/<key>`) and its elements."""

  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Tensor:
  """`torch._utils._rebuild_tensor_v2`'s arguments, kept until the tensor's key is known (`_materialise`)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _rebuild_tensor(storage, offset, size, stride, *unused):
  return _Tensor(storage, offset, size, stride)


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _tensor_array(t: _Tensor, name: str) -> np.ndarray:
  """A tensor as a contiguous array, after checking that its view stays inside its storage.

  Raises:
    ValueError: (naming the tensor `name`) a storage that is not one, sizes, strides or offset that are not
      non-negative integers, a view that reaches past the storage's last element or holds more elements
      than the storage (a repeating or overflowing view).
  """
  if not isinstance(t.storage, _Storage):
    raise ValueError(f"tensor {name}: its storage is {type(t.storage).__name__}, not a storage of the archive")
  storage, offset = t.storage.array, t.offset
  size, stride = tuple(t.size) if isinstance(t.size, (tuple, list)) else t.size, t.stride
  stride = tuple(stride) if isinstance(stride, (tuple, list)) else stride
  if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
          and all(map(_is_int, size + stride)) and _is_int(offset)):
    raise ValueError(f"tensor {name}: size {t.size!r}, stride {t.stride!r} and offset {t.offset!r} must be equally "
                     "long tuples of integers and an integer")
  if offset < 0 or min(size + stride, default=0) < 0:
    raise ValueError(f"tensor {name}: size {size}, stride {stride} and offset {offset} must not be negative")
  elements = len(storage)
  numel = math.prod(size)  # Python integers: no overflow
  if numel == 0:
    return np.zeros(size, storage.dtype)
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= elements:
    raise ValueError(f"tensor {name}: offset {offset}, size {size} and stride {stride} reach element {last:,} of "
                     f"storage {t.storage.key!r}, which holds {elements:,}: refusing to read out of bounds")
  if numel > elements:
    raise ValueError(f"tensor {name}: size {size} holds {numel:,} elements, more than the {elements:,} of its "
                     f"storage {t.storage.key!r} (a view that repeats elements, or sizes that overflow)")
  if not size:
    return storage[offset].copy()
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride))
  return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
  return data


def _materialise(obj, name: str = ""):
  """`obj` with every `_Tensor` (in dicts, lists and tuples) read into an array; `name` is its key path."""
  join = lambda k: f"{name}/{k}" if name else str(k)
  if isinstance(obj, _Tensor):
    return _tensor_array(obj, repr(name or "<root>"))
  if isinstance(obj, dict):
    items = [(k, _materialise(v, join(k))) for k, v in obj.items()]
    obj.clear()
    obj.update(items)  # same dict type (OrderedDict stays one)
    return obj
  if isinstance(obj, list):
    return [_materialise(v, join(i)) for i, v in enumerate(obj)]
  if isinstance(obj, tuple):
    return tuple(_materialise(v, join(i)) for i, v in enumerate(obj))
  return obj


class _Unpickler(pickle.Unpickler):
  """Allows plain containers and tensors only; any other global is an error."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path):
    super().__init__(file)
    self.archive, self.prefix, self.path = archive, prefix, path
    self.storages: dict[str, _Storage] = {}

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
      dtype = np.dtype("<u2" if storage_type.name == "BFloat16Storage" else _STORAGE_DTYPES[storage_type.name])
      if len(raw) % dtype.itemsize:
        raise ValueError(f"{self.path}: storage {key!r} holds {len(raw)} bytes, not a whole number of "
                         f"{storage_type.name} elements")
      array = np.frombuffer(raw, dtype.newbyteorder("<"))
      if storage_type.name == "BFloat16Storage":
        array = (array.astype(np.uint32) << 16).view(np.float32)
      self.storages[key] = _Storage(key, array)
    return self.storages[key]


def load(path) -> dict:
  """Read a `.pth` file written by `torch.save` (zip format, PyTorch >= 1.6) without torch.

  Args:
    path: the file.

  Returns:
    The saved object with tensors as NumPy arrays (PyTorch layout, native byte order).

  Raises:
    ValueError: the file is missing, not a zip checkpoint, big-endian, holds anything but tensors and plain
      containers, or a tensor whose view does not fit its storage (named by its key path, e.g. 'model/sd/w').
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
  try:
    return _materialise(obj)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  except RecursionError as e:
    raise ValueError(f"{path}: containers nested too deeply (or holding themselves): not a checkpoint") from e
