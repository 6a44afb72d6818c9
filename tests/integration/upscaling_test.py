"""Tests for streamed upscaling: bands equal to `upscale` bit for bit, the output guard, GIF frames, bounded memory."""

import functools
import os
import pathlib
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from experiments.configs import liif_train291, srinr_demo
from inrsr import models
from inrsr.infer import inference, upscaling
from tools import benchmarking
from inrsr.data import images

REPO = pathlib.Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def _model(name):
  """A small fitting (SR-INR) or generalising (LIIF) model with random parameters whose output is not flat."""
  config = {"srinr": srinr_demo, "liif": liif_train291}[name].get_config("small")
  model = models.from_config(config.model)
  return model, benchmarking.varied_params(model)


def _lr():
  return images.bundled_image("astronaut")[::16, ::16]  # 32 x 32


@pytest.mark.parametrize("name", ["srinr", "liif"])
def test_streamed_png_equals_upscale(name, tmp_path):
  model, params = _model(name)
  lr, height, width = _lr(), 37, 53
  whole = inference.upscale(model, params, lr, height, width, chunk=500)  # 4 chunks, the last padded
  bands = list(inference.upscale_rows(model, params, lr, height, width, chunk=500, rows=5))  # 5 does not divide 37
  assert [r for r, _ in bands] == list(range(0, 37, 5)) and [len(b) for _, b in bands] == [5] * 7 + [2]
  np.testing.assert_array_equal(np.concatenate([b for _, b in bands]), whole)  # one computation, bit for bit
  want = upscaling.to_uint8(whole)
  assert want.std() > 5  # the output is not flat, so the comparison can tell images apart
  upscaling.write_png(tmp_path / "bands.png", iter(bands), height, width)
  np.testing.assert_array_equal(iio.imread(tmp_path / "bands.png"), want)
  upscaling.upscale_to_file(model, params, lr, tmp_path / "file.png", height, width, chunk=500)
  np.testing.assert_array_equal(iio.imread(tmp_path / "file.png"), want)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bands.png", "file.png"]  # no .partial left behind


def test_default_bands_hold_about_one_chunk():
  model, params = _model("liif")
  bands = list(inference.upscale_rows(model, params, _lr(), 40, 30, chunk=100))
  assert [len(b) for _, b in bands] == [4] * 10 and bands[0][1].shape == (4, 30, 3)
  with pytest.raises(ValueError, match="rows=0"):
    inference.upscale_rows(model, params, _lr(), 40, 30, rows=0)  # raised at the call, not at the first band


def test_write_png_16_bit_and_bad_bands(tmp_path):
  band = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
  upscaling.write_png(tmp_path / "a.png", [(0, band[:4]), (4, band[4:])], 6, 7, bitdepth=16)
  np.testing.assert_array_equal(images.read_png16(tmp_path / "a.png"), np.round(band * 65535).astype(np.uint16))
  wide = np.random.default_rng(1).random((7, 60000, 3)).astype(np.float32)  # filtered 5 rows at a time
  upscaling.write_png(tmp_path / "a.png", [(0, wide)], 7, 60000)
  np.testing.assert_array_equal(iio.imread(tmp_path / "a.png"), upscaling.to_uint8(wide))
  with pytest.raises(ValueError, match="expected .* at row 4"):
    upscaling.write_png(tmp_path / "b.png", [(0, band[:4]), (5, band[4:])], 6, 7)
  with pytest.raises(ValueError, match="hold 4 rows, not the image's 6"):
    upscaling.write_png(tmp_path / "b.png", [(0, band[:4])], 6, 7)
  assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # failed writes leave nothing


def test_guard_refuses_outputs_that_do_not_fit(tmp_path):
  with pytest.raises(ValueError, match=r"does not fit a \.png file, which stores at most 2147483647 pixels per side"):
    upscaling.check_output("x.png", 2**31, 1)
  with pytest.raises(ValueError, match=r"70000x70000 \(4,900,000,000 pixels, 13.7 GiB as 8-bit RGB\) exceeds the "
                                       r"limit of 4,294,967,296 pixels"):
    upscaling.check_output("x.png", 70000, 70000)
  with pytest.raises(ValueError, match=r"does not fit a \.jpg file, which stores at most 65535"):
    upscaling.check_output("x.jpg", 10, 70000)
  with pytest.raises(ValueError, match=r"encoded from the whole frame in memory; write a \.png"):
    upscaling.check_output("x.jpg", 20000, 20000)
  upscaling.check_output("x.png", 65536, 65536)  # the largest allowed
  upscaling.check_output("x.jpg", 16384, 16384)
  # Before any work: the run folder is not even looked at, and nothing is written.
  folder = tmp_path / "in"
  folder.mkdir()
  iio.imwrite(folder / "a.png", np.zeros((8, 8, 3), np.uint8))
  iio.imwrite(folder / "b.png", np.zeros((80, 100, 3), np.uint8))
  with pytest.raises(ValueError, match=r"b\.png: the output of 100000x80000 .* exceeds the limit"):
    upscaling.upscale_paths(tmp_path / "no-run", folder, tmp_path / "out", scale=1000, progress=False)
  with pytest.raises(ValueError, match=r"big\.png: the output of 100000x100000"):
    upscaling.upscale_paths(tmp_path / "no-run", folder / "a.png", tmp_path / "big.png", size="100000x100000")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_gif_is_written_frame_by_frame(tmp_path):
  photo = images.bundled_image("astronaut")
  frames = [upscaling.to_uint8(photo[k * 8:k * 8 + 24, k * 8:k * 8 + 40]) for k in range(3)]
  gif = upscaling._GifStream(tmp_path / "a.gif")  # pylint: disable=protected-access
  for f in frames:
    gif.append(f)
  gif.close()
  back = iio.imread(tmp_path / "a.gif", index=None)
  assert back.shape[:3] == (3, 24, 40)
  for got, want in zip(back, frames):  # each frame with its own 256-colour palette
    assert np.abs(got[..., :3].astype(float) - want).mean() < 4


_MEMORY_SCRIPT = """
import resource, sys, tracemalloc
import numpy as np
from experiments.configs import liif_train291
from inrsr import models
from inrsr.infer import upscaling
from tools import benchmarking
size, folder = int(sys.argv[1]), sys.argv[2]
model = models.from_config(liif_train291.get_config("small").model)
params = benchmarking.varied_params(model)
lr = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
tracemalloc.start()  # numpy reports its arrays' memory to tracemalloc
upscaling.upscale_to_file(model, params, lr, f"{folder}/warm.png", 256, 256, chunk=8192)  # compiled, steady state
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.reset_peak()
upscaling.upscale_to_file(model, params, lr, f"{folder}/big.png", size, size, chunk=8192)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, tracemalloc.get_traced_memory()[1])
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_peak_memory_does_not_grow_with_the_output_size(tmp_path):
  # One process upscales 256x256 (compilation, the steady state of the chunk loop), then 2048x2048: 64x the
  # pixels. Two measures of the second upscale, both within the one process (no run-to-run noise): the peak of
  # host arrays (tracemalloc, exact: about 4 MiB of bands, PNG rows and zlib output) and the growth of the
  # process's peak RSS over the first upscale's (about 8 MiB; XLA's buffers included). Holding the output whole
  # as the whole-frame upscale and imwrite did gave 148 MiB and 145 MiB.
  size = 2048
  whole = size * size * 3 * 4  # the float32 output a whole-frame upscale holds: 48 MiB
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  run = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(size), str(tmp_path)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  before_kib, after_kib, arrays_peak = (int(v) for v in run.stdout.split()[-3:])
  assert iio.improps(tmp_path / "big.png").shape == (size, size, 3)
  growth = (after_kib - before_kib) * 1024
  assert arrays_peak < whole / 6, f"host arrays peaked at {arrays_peak / 2**20:.1f} MiB during a {size}^2 upscale"
  assert growth < whole / 2, f"peak RSS grew by {growth / 2**20:.1f} MiB during a {size}^2 upscale"
