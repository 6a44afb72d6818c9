"""Tests for the torch-free .pth reader on crafted files: views bounded by their storage, refused by key."""

import collections
import io
import pickle
import zipfile

import numpy as np
import pytest

from inrsr.convert import pth


class _Global:
  """Written as the pickle global `module.name` (a torch name, without torch)."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's save_reduce wants a callable
    raise NotImplementedError


class _Call:
  """Written as `fn(*args)` in the pickle (REDUCE)."""

  def __init__(self, fn, *args):
    self.fn, self.args = fn, args

  def __reduce__(self):
    return self.fn, self.args


class _StorageRef:
  """A persistent id ('storage', torch.<kind>, key, 'cpu', numel), as torch.save writes one per storage."""

  def __init__(self, key, kind, numel):
    self.pid = ("storage", _Global("torch", kind), key, "cpu", numel)


class _Writer(pickle._Pickler):  # pylint: disable=protected-access  # the pure-Python pickler can write any global
  def persistent_id(self, obj):
    return obj.pid if isinstance(obj, _StorageRef) else None

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, _Global):
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
      return
    super().save(obj, save_persistent_id)


def _tensor(key, numel, offset, size, stride, kind="FloatStorage"):
  """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks) as torch.save writes it."""
  return _Call(_Global("torch._utils", "_rebuild_tensor_v2"), _StorageRef(key, kind, numel), offset, tuple(size),
               tuple(stride), False, _Call(_Global("collections", "OrderedDict")))


def write_pth(path, obj, storages):
  """A zip-format .pth as torch.save lays it out: archive/data.pkl, archive/data/<key>, archive/byteorder."""
  buf = io.BytesIO()
  _Writer(buf, protocol=2).dump(obj)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/byteorder", "little")
    for key, array in storages.items():
      z.writestr(f"archive/data/{key}", np.asarray(array).astype(np.asarray(array).dtype.newbyteorder("<")).tobytes())


def test_crafted_writer_reads_back_views_as_numpy_would(tmp_path):
  # The writer is checked through the reader's normal path: a transposed view, an offset row and a scalar
  # equal NumPy's own indexing of the storage.
  storage = np.arange(12, dtype=np.float32)
  sd = collections.OrderedDict(
      t=_tensor("0", 12, 0, (4, 3), (1, 4)),  # the transpose of the (3, 4) row-major matrix
      row=_tensor("0", 12, 4, (4,), (1,)),
      scalar=_tensor("0", 12, 11, (), ()),
      empty=_tensor("0", 12, 12, (0, 5), (5, 1)))
  path = tmp_path / "ok.pth"
  write_pth(path, {"model": {"sd": sd}}, {"0": storage})
  got = pth.load(path)["model"]["sd"]
  assert isinstance(got, collections.OrderedDict) and list(got) == ["t", "row", "scalar", "empty"]
  np.testing.assert_array_equal(got["t"], storage.reshape(3, 4).T)
  np.testing.assert_array_equal(got["row"], storage[4:8])
  assert got["scalar"].shape == () and got["scalar"] == 11.0
  assert got["empty"].shape == (0, 5)


@pytest.mark.parametrize("offset,size,stride,match", [
    (0, (1000,), (1,), r"reach element 999 of storage '0', which holds 4: refusing to read out of bounds"),
    (3, (2,), (1,), r"reach element 4 of storage '0', which holds 4"),
    (0, (2, 2), (3, 1), r"reach element 4 of storage '0'"),
    (5, (), (), r"reach element 5 of storage '0'"),
    (0, (2**40, 2**40), (0, 0), r"holds 1,208,925,819,614,629,174,706,176 elements, more than the 4"),
    (0, (2**62, 2**62), (1, 1), r"reach element 9,223,372,036,854,775,806 of storage '0'"),  # past int64
    (0, (4,), (-1,), r"must not be negative"),
    (-1, (1,), (1,), r"must not be negative"),
    (0, (2.5,), (1,), r"must be equally long tuples of integers"),
    (0, (2, 2), (1,), r"must be equally long tuples of integers"),
])
def test_views_past_their_storage_are_refused_by_file_and_key(tmp_path, offset, size, stride, match):
  # A 16-byte storage (4 float32): before the bounds, these read process memory past it or crashed the reader.
  path = tmp_path / "crafted.pth"
  write_pth(path, {"model": {"sd": {"encoder.head.0.weight": _tensor("0", 4, offset, size, stride)}}},
            {"0": np.ones(4, np.float32)})
  with pytest.raises(ValueError, match=r"crafted\.pth: tensor 'model/sd/encoder\.head\.0\.weight': .*" + match):
    pth.load(path)


def test_storage_of_a_partial_element_is_refused(tmp_path):
  path = tmp_path / "odd.pth"
  write_pth(path, {"w": _tensor("0", 1, 0, (1,), (1,))}, {"0": np.ones(3, np.uint8)})  # 3 bytes, not a float32
  with pytest.raises(ValueError, match=r"odd\.pth: storage '0' holds 3 bytes, not a whole number of FloatStorage"):
    pth.load(path)


def test_parameters_read_as_their_tensor_and_self_holding_containers_are_refused(tmp_path):
  path = tmp_path / "param.pth"
  tensor = _tensor("0", 6, 0, (2, 3), (3, 1), "DoubleStorage")
  param = _Call(_Global("torch._utils", "_rebuild_parameter"), tensor, True,
                _Call(_Global("collections", "OrderedDict")))  # an nn.Parameter, as torch.save writes one
  write_pth(path, {"p": param}, {"0": np.arange(6, dtype=np.float64)})
  np.testing.assert_array_equal(pth.load(path)["p"], np.arange(6.0).reshape(2, 3))
  loop = {}
  loop["me"] = loop
  write_pth(tmp_path / "loop.pth", loop, {})
  with pytest.raises(ValueError, match=r"loop\.pth: containers nested too deeply"):
    pth.load(tmp_path / "loop.pth")


def test_convert_refuses_a_crafted_file_in_one_line_and_writes_nothing(tmp_path, run_module):
  path = tmp_path / "crafted.pth"
  write_pth(path, {"model": {"name": "liif", "sd": {"w": _tensor("0", 4, 0, (1 << 20,), (1,))}}},
            {"0": np.ones(4, np.float32)})
  run = run_module("experiments.convert", f"--input={path}", f"--workdir={tmp_path / 'run'}", timeout=300)
  errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
  assert run.returncode == 2 and "Traceback" not in run.stderr and errors == [
      f"error: {path}: tensor 'model/sd/w': offset 0, size (1048576,) and stride (1,) reach element 1,048,575 of "
      "storage '0', which holds 4: refusing to read out of bounds"], run.stderr[-2000:]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.pth"]
