"""Bounded upscale memory: HIIF streamed in two stages, BVSR-IK frame by frame, SR-INR's patch gather."""

import ctypes.util
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import bvsr_ik_train291
from inrsr import resize
from inrsr.infer import inference
from inrsr.models import bvsr_ik, hiif

SMALL_HIIF = dict(encoder_args=(("n_feats", 8), ("n_resblocks", 1)), hidden_dim=32, heads=4, n_hi_layers=3,
                  mlp_hidden=16)


@pytest.fixture(scope="module")
def small_hiif():
  model = hiif.HIIF(**SMALL_HIIF)
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 4, 2)),
                          jnp.zeros((1, 4, 2)))
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32), shapes)
  return model, variables["params"], rng.random((8, 12, 3)).astype(np.float32)


def _one_call(model, params, lr, h, w, cell_scale):
  """Independent of inference: one `model.apply` on the whole H x W grid (the official one-chunk evaluation)."""
  cell = np.array([2 / w, 2 / h], np.float32) * np.float32(cell_scale)
  coords = hiif.make_coord_grid(h, w)[None]
  out = jax.jit(model.apply)({"params": params}, jnp.asarray(lr)[None], coords, np.broadcast_to(cell, coords.shape))
  return np.clip(np.asarray(out)[0].reshape(h, w, 3), 0, 1)


@pytest.mark.parametrize("kept", [True, False])
def test_hiif_streamed_equals_one_call(small_hiif, kept, monkeypatch):
  """Streamed in chunks, each chunk's activations kept between the passes or (KEPT_MAX_BYTES 0) recomputed."""
  model, params, lr = small_hiif
  if not kept:
    monkeypatch.setattr(hiif, "KEPT_MAX_BYTES", 0)
  h, w = 37, 53  # x4.4: 1961 queries in chunks of 300, the last one padded
  factor = hiif.clip_factor(lr.shape[:2], (h, w))  # the default cell rule: x1.13 here (s = 4.52)
  want = _one_call(model, params, lr, h, w, factor)
  bands = list(inference.upscale_rows(model, params, lr, h, w, chunk=300, rows=5))
  assert [r for r, _ in bands] == list(range(0, h, 5))
  got = np.concatenate([b for _, b in bands])
  np.testing.assert_allclose(got, want, atol=2e-6)
  # The same chunks as `query_global` (the fixture-checked path) give the same numbers bit for bit.
  feats = inference._encoder(model)(params, jnp.asarray(lr)[None])  # pylint: disable=protected-access
  cell = np.array([2 / w, 2 / h], np.float32) * np.float32(factor)
  coords = hiif.make_coord_grid(h, w)[None]
  glob = hiif.query_global(model, {"params": params}, feats, coords, np.broadcast_to(cell, coords.shape), 300)
  np.testing.assert_array_equal(got, np.clip(glob[0].reshape(h, w, 3), 0, 1))
  # Chunks decoded with their own statistics (what a plain chunked decode would do) differ: the test can tell.
  query = jax.jit(lambda q: model.apply({"params": params}, feats, q, jnp.broadcast_to(cell, q.shape),
                                        method=hiif.HIIF.query))
  own = np.concatenate([np.asarray(query(coords[:, s:s + 300]))[0] for s in range(0, h * w, 300)])
  assert np.abs(np.clip(own.reshape(h, w, 3), 0, 1) - want).max() > 1e-4


def test_hiif_decode_bytes_count_the_kept_activations(small_hiif, monkeypatch):
  """64 x 64 from 16 x 16 in chunks of 1000: 5 chunks (5000 queries with the padding) of hidden_dim float32 kept."""
  model, params, _ = small_hiif
  kept, _ = inference.decode_bytes(model, params, (16, 16), (64, 64), chunk=1000)
  one_call, _ = inference.decode_bytes(model, params, (16, 16), (64, 64), chunk=0)
  assert kept - one_call == 5000 * model.hidden_dim * 4
  monkeypatch.setattr(hiif, "KEPT_MAX_BYTES", 5000 * model.hidden_dim * 4 - 1)  # over it: recomputed, none kept
  assert inference.decode_bytes(model, params, (16, 16), (64, 64), chunk=1000)[0] == one_call


def test_hiif_without_the_projection_table_gives_the_same_outputs(small_hiif, monkeypatch):
  model, params, lr = small_hiif
  coords = jnp.asarray(hiif.make_coord_grid(20, 30))[None]
  cells = jnp.broadcast_to(jnp.asarray([2 / 30, 2 / 20], jnp.float32), coords.shape)
  run = lambda: model.apply({"params": params}, jnp.asarray(lr)[None], coords, cells)
  with_table = np.asarray(run())
  monkeypatch.setattr(hiif, "PROJECTION_TABLE_MAX_BYTES", 0)
  assert set(model.apply({"params": params}, jnp.asarray(lr)[None], method=hiif.HIIF.encode)) == {
      "feat", "stats", "inp"}
  np.testing.assert_allclose(np.asarray(run()), with_table, atol=2e-6)


@pytest.mark.parametrize("variant", [{}, {"official_feature_order": False, "flow": "zero"}])
def test_bvsr_ik_frames_equal_the_whole_clip(variant):
  # `__call__` (every frame batched, the training path) against `stream_clip` (frame by frame) via inference.
  model = bvsr_ik.KCANet(**bvsr_ik_train291.SMALL_MODEL, **variant)
  params = bvsr_ik.init_params(model, jax.random.key(0))
  frames = list(np.random.default_rng(1).random((4, 10, 14, 3)).astype(np.float32))  # padded to 12 x 16 inside
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x)["outputs"])  # compiled once, not run op by op
  whole = np.asarray(forward(params, jnp.asarray(np.stack(frames))[None]))[0]
  got = list(inference.upscale_clip_frames(model, params, frames))
  assert len(got) == 4 and got[0].shape == (40, 56, 3)
  np.testing.assert_allclose(np.stack(got), np.clip(whole, 0, 1), atol=1e-5)
  assert np.abs(got[0] - got[1]).max() > 1e-3  # the frames differ: a frame written twice would be caught
  with pytest.raises(ValueError, match="one \\(h, w, 3\\) shape"):
    inference.upscale_clip_frames(model, params, [frames[0], frames[1][:8]])


def test_sample_patches_gathers_one_tap_at_a_time_above_the_block_limit():
  # Values of both paths: brute force in tests/unit/srinr_test.py. Memory: an upscale chunk (65536 points, 8
  # levels of 5 x 5 patches, whose all-taps block is 1.26 GB) keeps XLA's temporaries below 4 times the output;
  # 1024 points (a training batch's) are gathered as one block, 16 times the output and more.
  image = jnp.zeros((64, 64, 3))
  spacings = 2.0 / np.geomspace(16, 128, 8).astype(np.float32)
  temps = {}
  for n in (1024, 65536):
    xy = jnp.zeros((n, 2))
    compiled = jax.jit(lambda im, p: resize.sample_patches(im, p, spacings, 5)).lower(image, xy).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
      pytest.skip("no memory analysis on this backend")
    temps[n] = analysis.temp_size_in_bytes / (n * 8 * 5 * 5 * 3 * 4)
  assert temps[65536] < 4, temps
  assert temps[1024] >= 16, temps


def test_an_output_whose_clit_stage_maps_exceed_the_host_is_refused_before_any_work(tmp_path, monkeypatch):
  # Hand count: CLIT3 :small at x32 from 16 x 16 runs stages [4, 4, 2] on grids 16, 64 and 256 (LR x 1, 4, 16),
  # each holding q, k and v of base_dim channels; plus the normalised LR (3) and init_feat (base_dim).
  from experiments.configs import clit_train291  # pylint: disable=g-import-not-at-top
  from inrsr import models  # pylint: disable=g-import-not-at-top
  from inrsr.infer import upscaling  # pylint: disable=g-import-not-at-top
  model = models.from_config(clit_train291.get_config("clit3,small").model)
  params = models.init_params(model, jax.random.key(0))
  c = model.base_dim
  assert model.query_kwargs((16, 16), (512, 512)) == {"scales": (4.0, 4.0, 2.0)}
  want = 4 * (16 * 16 * (3 + c) + 3 * c * (16 ** 2 + 64 ** 2 + 256 ** 2))
  features, peak = inference.decode_bytes(model, params, (16, 16), (512, 512))
  assert features == want and peak > want  # XLA's temporaries (the resampled maps) on top
  lr = np.zeros((16, 16, 3), np.float32)
  out = tmp_path / "out.png"
  monkeypatch.setattr(upscaling.training, "host_memory_available", lambda: peak - 1)
  with pytest.raises(ValueError, match=r"an output of 512x512 from a 16x16 input: CLIT needs "):
    upscaling.upscale_to_file(model, params, lr, out, 512, 512)
  assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file
  monkeypatch.setattr(upscaling.training, "host_memory_available", lambda: peak)
  upscaling.upscale_to_file(model, params, lr, out, 64, 64)  # x4 (one stage) fits: written
  assert out.is_file()


_FREED_PROBE = """
import sys
from inrsr.infer import allocator  # imports no jax, which would change the heap's behaviour on its own
if sys.argv[1] == "1":
  allocator.return_freed_memory()
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = b"x" * (16 << 20)
del big  # a freed 16 MiB block: glibc's dynamic mmap threshold rises to 16 MiB
size = allocator.FREED_BLOCK_BYTES + (1 << 20)
blocks, keep = [], []
for _ in range(30):
  blocks.append(b"x" * size)  # just over the threshold, its pages touched
  keep.append(b"y" * 1000)  # a small live block after each, as a clip's states between frames' buffers
before = rss()
del blocks
print(round(before - rss()), round(30 * size / 2**20))
"""


def test_return_freed_memory_hands_freed_blocks_back_to_the_os(tmp_path):
  """30 freed blocks just over the threshold between live ones: kept by glibc's heap by default, returned once
  set."""
  if not sys.platform.startswith("linux") or "libc.so.6" not in (ctypes.util.find_library("c") or ""):
    pytest.skip("glibc's mallopt only")
  probe = tmp_path / "probe.py"
  probe.write_text(_FREED_PROBE)
  run = lambda flag: [int(v) for v in subprocess.run([sys.executable, str(probe), flag], capture_output=True,
                                                     text=True, check=True,
                                                     cwd=pathlib.Path(__file__).parents[2]).stdout.split()[-2:]]
  returned, total = run("0")
  assert returned < 0.2 * total  # the premise: without it the freed blocks stay in the heap
  returned, total = run("1")
  assert returned >= 0.95 * total


def test_clip_upscale_sets_the_allocator_for_a_whole_clip_model(tmp_path, monkeypatch):
  """`upscale_paths` of a clip with BVSR-IK calls `return_freed_memory` once, before the frames."""
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  from inrsr import models  # pylint: disable=g-import-not-at-top
  from inrsr.infer import upscaling  # pylint: disable=g-import-not-at-top
  from inrsr.train import checkpoints  # pylint: disable=g-import-not-at-top
  config = bvsr_ik_train291.get_config("small")
  model = models.from_config(config.model)
  checkpoints.save_params(tmp_path / "run", config, models.init_params(model, jax.random.key(0)))
  (tmp_path / "lr").mkdir()
  for k in range(2):
    iio.imwrite(tmp_path / "lr" / f"{k:08d}.png", np.full((8, 8, 3), 40 * k, np.uint8))
  calls = []
  monkeypatch.setattr(upscaling.allocator, "return_freed_memory",
                      lambda: calls.append(len(list(tmp_path.glob("sr/*")))))
  upscaling.upscale_paths(tmp_path / "run", tmp_path / "lr", tmp_path / "sr", scale=4, clip=True, progress=False)
  assert calls == [0] and len(list((tmp_path / "sr").glob("*.png"))) == 2
