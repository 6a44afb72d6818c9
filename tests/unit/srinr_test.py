"""Tests for the SR-INR / VR-INR model: shapes, parameter count, a NumPy re-computation, and a fit test."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

import fitting
from hashgrid_reference_test import brute_force_indices
from inrsr import coords, metrics, resize
from inrsr.models import encoding
from inrsr.models import srinr
from kernels import hashgrid

SMALL = dict(num_levels=3, log2_table_size=10, n_min=4, n_max=16)


def test_level_resolutions():
  assert encoding.level_resolutions(12, 16, 128)[0] == 16
  assert encoding.level_resolutions(12, 16, 128)[-1] == 128
  assert encoding.level_resolutions(3, 4, 16) == (4, 8, 16)
  with pytest.raises(ValueError):
    encoding.level_resolutions(3, 16, 4)


def test_output_shapes_image_and_video():
  model = srinr.SRINR(**SMALL)
  image = jnp.zeros((20, 24, 3))
  q = jnp.zeros((7, 3))
  init, apply = jax.jit(model.init), jax.jit(model.apply)  # jitted: 4 times faster than op by op here
  params = init(jax.random.key(0), image, q)
  assert apply(params, image, q).shape == (7, 3)
  video = jnp.zeros((5, 20, 24, 3))
  t = jnp.asarray(coords.time_coords(5))
  vq = jnp.concatenate([jnp.zeros((5, 9, 2)), jnp.broadcast_to(t[:, None, None], (5, 9, 1))], -1)
  assert apply(params, video, vq).shape == (5, 9, 3)
  with pytest.raises(ValueError, match="coords"):
    apply(params, video, vq[:3])


def test_parameter_count_at_paper_defaults():
  n = srinr.param_count(srinr.paper_defaults())
  tables = 12 * 2**24 * 2
  mlp = lambda i, o, h=64: i * h + h + h * o + o
  by_hand = tables + 12 * mlp(75, 3) + 12 * mlp(18, 64) + 11 * mlp(2, 2) + mlp(24, 3)
  assert n == by_hand
  assert 3.95e8 < n < 4.05e8


def test_weight_norm_and_attention_variants():
  lr, q = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 4, 3))
  ml = srinr.SRINR(**SMALL, weight_norm="multilinear", top_down_attention=False)
  p = ml.init(jax.random.key(0), lr, q)["params"]
  assert "weight_mlp" not in p["hash"] and "attention" not in p
  assert p["color_hidden"]["kernel"].shape == (3 * 2, 64)
  with pytest.raises(ValueError, match="weight_norm"):
    srinr.SRINR(**SMALL, weight_norm="l2").init(jax.random.key(0), lr, q)


def _mlp(x, p, level=None):
  get = (lambda k: p[k]) if level is None else (lambda k: p[k][level])
  return np.maximum(x @ get("w1") + get("b1"), 0) @ get("w2") + get("b2")


@pytest.mark.parametrize("weight_norm,spacing,position_cells", [("none", "level", 0), ("softmax", "level", 0),
                                                                 ("none", "lr_pixels", 2)])
def test_forward_matches_numpy_recomputation(weight_norm, spacing, position_cells):
  rng = np.random.default_rng(0)
  model = srinr.SRINR(**SMALL, weight_norm=weight_norm, texture_spacing=spacing, position_resolution=position_cells)
  lr = skimage.data.rocket()[::40, ::40][:10, :14] / 255.0
  q = np.concatenate([rng.uniform(-1, 1, (6, 2)), np.zeros((6, 1))], -1).astype(np.float32)
  params = jax.jit(model.init)(jax.random.key(1), jnp.asarray(lr, jnp.float32), jnp.asarray(q))
  # Make the tables large enough to matter.
  params = jax.tree.map(lambda x: x, params)
  params["params"]["hash"]["tables"] = jnp.asarray(rng.normal(size=params["params"]["hash"]["tables"].shape),
                                                   jnp.float32)
  got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(lr, jnp.float32), jnp.asarray(q)))

  p = jax.tree.map(np.asarray, params["params"])
  res = model.resolutions
  k = model.patch_size
  off = np.arange(k) - (k - 1) / 2
  feats = []
  for l, n_l in enumerate(res):
    if spacing == "level":
      sx = sy = 2.0 / n_l
    else:  # max(res) / n_l LR pixels between samples
      sx, sy = 2.0 * (max(res) / n_l) / lr.shape[1], 2.0 * (max(res) / n_l) / lr.shape[0]
    pts = np.stack(np.broadcast_arrays(q[:, None, None, 0] + off[None, None, :] * sx,
                                       q[:, None, None, 1] + off[None, :, None] * sy), -1)
    patch = np.asarray(resize.sample_bicubic(jnp.asarray(lr, jnp.float32), jnp.asarray(pts, jnp.float32)))
    code = np.tanh(_mlp(patch.reshape(len(q), -1), p["texture"]["mlp"], l))
    xyt = q if not position_cells else (q + 1) * min(position_cells, n_l) / n_l - 1  # min(c, N_l) cells
    stt = np.concatenate([xyt, code], -1).astype(np.float32)
    u = (stt + np.float32(1)) * np.float32(0.5) * np.float32(n_l)
    frac = u - np.floor(u)
    w = _mlp(np.concatenate([stt, frac, 1 - frac], -1), p["hash"]["weight_mlp"], l)
    if weight_norm == "softmax":
      w = np.exp(w - w.max(-1, keepdims=True))
      w /= w.sum(-1, keepdims=True)
    idx = brute_force_indices(stt, n_l, 2**model.log2_table_size)
    feats.append(np.einsum("nc,ncf->nf", w, p["hash"]["tables"][l][idx]))
  att = [feats[0]]
  for l in range(1, len(res)):
    gate = 1 / (1 + np.exp(-_mlp(att[-1], p["attention"], l - 1)))
    att.append(gate * feats[l])
  h = np.maximum(np.concatenate(att, -1) @ p["color_hidden"]["kernel"] + p["color_hidden"]["bias"], 0)
  want = h @ p["color_out"]["kernel"] + p["color_out"]["bias"]
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_fit_beats_bicubic_on_real_photo():
  """`fit` protocol: train on the LR/HR pair of one photograph at x4, evaluate on the same pixels."""
  hr = skimage.data.astronaut()[100:196, 180:276].astype(np.float32) / 255.0
  lr, hr = resize.downsample(hr, 4)
  h, w = hr.shape[:2]
  bicubic = metrics.psnr(np.clip(resize.resize(lr, h, w), 0, 1), hr)
  model = srinr.SRINR(num_levels=6, log2_table_size=15, n_min=16, n_max=96)
  grid = jnp.asarray(coords.coord_grid(h, w).reshape(1, -1, 3))
  lr_j = jnp.asarray(lr[None])
  # 200 steps: the fit is 1.8 dB above bicubic after 100 steps, 8.2 after 150, 11.1 after 200 (15.9 after 300).
  params = fitting.fit(model, lr_j, grid, hr.reshape(1, -1, 3), steps=200, pixels=2048)
  pred = np.clip(np.asarray(jax.jit(model.apply)(params, lr_j, grid)).reshape(h, w, 3), 0, 1)
  fitted = metrics.psnr(pred, hr)
  print(f"fit PSNR {fitted:.2f} dB vs bicubic {bicubic:.2f} dB")
  assert fitted > bicubic + 5.0


def _pixel_centre(row, col, h, w):
  return np.array([[-1 + (2 * col + 1) / w, -1 + (2 * row + 1) / h]], np.float32)


@pytest.mark.parametrize("spacing", ["level", "lr_pixels"])
def test_lr_pixel_codes_see_the_same_neighbourhood_in_a_larger_frame(spacing):
  """With texture_spacing="lr_pixels" a code depends on the LR pixels around the query, not on the frame's size."""
  big = skimage.data.astronaut()[100:160, 200:260].astype(np.float32) / 255.0  # 60 x 60
  small = big[10:50, 15:55]  # 40 x 40; its pixel (20, 20) is pixel (30, 35) of `big`
  enc = encoding.TextureEncoder((4, 8, 16), spacing=spacing)
  params = enc.init(jax.random.key(0), jnp.asarray(small[None]), jnp.zeros((1, 1, 2)))
  codes = [np.asarray(enc.apply(params, jnp.asarray(im[None]), jnp.asarray(_pixel_centre(r, c, *im.shape[:2])[None])))
           for im, (r, c) in ((small, (20, 20)), (big, (30, 35)))]
  if spacing == "lr_pixels":  # coarsest samples 4 px apart: +-8 px plus the bicubic taps stay inside `small`
    np.testing.assert_allclose(codes[0], codes[1], atol=1e-5)
  else:  # 2 / N_l of the frame: another region of pixels in a larger frame
    assert np.abs(codes[0] - codes[1]).max() > 1e-2


def test_patches_with_one_pixel_spacing_are_the_pixels():
  """Hand-worked: bicubic samples 1 px apart (a spacing per axis) around a pixel centre are the pixels themselves."""
  image = skimage.data.coffee()[::20, ::20][:7, :9].astype(np.float32) / 255.0
  xy = _pixel_centre(3, 4, 7, 9)
  patch = np.asarray(resize.sample_patches(jnp.asarray(image), jnp.asarray(xy), [[2 / 9, 2 / 7]], 3))
  np.testing.assert_allclose(patch[0, 0], image[2:5, 3:6], atol=1e-6)


def test_position_resolution_puts_the_frame_on_fewer_cells():
  """Hand-worked: 2 cells on a level of N = 16 put x = -1, -0.5, 0, 0.5, 1 in cells 0, 0, 1, 1, 2 (the far edge)."""
  x = jnp.asarray([-1.0, -0.5, 0.0, 0.49, 1.0])[:, None, None]  # (N, L=1, D=1)
  coarse = srinr._coarsen(x, 2, (16,), "position_resolution")  # pylint: disable=protected-access
  v0, _ = hashgrid.lattice_position(coarse[:, 0], 16)
  np.testing.assert_array_equal(np.asarray(v0)[:, 0], [0, 0, 1, 1, 2])
  np.testing.assert_array_equal(np.asarray(srinr._coarsen(x, 0, (16,), "p")), np.asarray(x))  # 0: N_l cells
  with pytest.raises(ValueError, match="position_resolution=-1 must be >= 0"):
    srinr._coarsen(x, -1, (16,), "position_resolution")


def _numpy_patches(image, xy, spacings, k, size):
  """Brute force: each patch sample's 4 x 4 bicubic taps (Keys a = -0.5, edges clamped), one at a time."""
  h, w = size
  out = np.zeros((len(xy), len(spacings), k, k, image.shape[-1]))
  for n, (x, y) in enumerate(xy.astype(np.float64)):
    for l, (sx, sy) in enumerate(spacings):
      for a in range(k):
        for b in range(k):
          px = (x + (b - (k - 1) / 2) * sx + 1) * 0.5 * w - 0.5
          py = (y + (a - (k - 1) / 2) * sy + 1) * 0.5 * h - 0.5
          for i in range(-1, 3):
            for j in range(-1, 3):
              row, col = np.floor(py) + i, np.floor(px) + j
              weight = resize.cubic(py - row) * resize.cubic(px - col)
              out[n, l, a, b] += weight * image[int(np.clip(row, 0, h - 1)), int(np.clip(col, 0, w - 1))]
  return out


@pytest.mark.parametrize("padded", [False, True])
def test_texture_patches_in_both_layouts_match_brute_force(padded):
  """The TPU layout (points last, `sample_patches_lanes`) and the default one give the brute-force patches."""
  rng = np.random.default_rng(7)
  image = rng.uniform(0, 1, (9, 11, 3)).astype(np.float32)
  size = (7, 10) if padded else (9, 11)
  xy = rng.uniform(-1.1, 1.1, (13, 2)).astype(np.float32)
  spacings = np.asarray([[0.5, 0.25], [2 / 11, 2 / 9], [0.05, 0.4]], np.float32)
  want = _numpy_patches(image, xy, spacings, 5, size)
  hw = size if padded else None
  tap_by_tap = functools.partial(resize.sample_patches, max_block_bytes=0)  # the upscale chunks' evaluation
  for name, fn in (("lanes", encoding.sample_patches_lanes), ("dispatch", encoding.sample_patches),
                   ("all taps", resize.sample_patches), ("tap by tap", tap_by_tap)):
    got = np.asarray(fn(jnp.asarray(image), jnp.asarray(xy), spacings, 5, size=hw))
    np.testing.assert_allclose(got, want, atol=2e-5, err_msg=name)
  # One spacing per level for both axes, under jit with a traced valid size (as the model calls it).
  lanes = jax.jit(lambda im, p, s: encoding.sample_patches_lanes(im, p, spacings[:, 0], 3, size=(s[0], s[1])))
  np.testing.assert_allclose(np.asarray(lanes(image, xy, jnp.asarray(size))),
                             _numpy_patches(image, xy, np.repeat(spacings[:, :1], 2, 1), 3, size), atol=2e-5)


@pytest.mark.parametrize("renormalize", [False, True])
def test_bicubic_in_both_layouts_match_brute_force(renormalize):
  """`sample_bicubic_lanes` (the TPU layout) and the dispatcher equal a per-point NumPy bicubic (Keys a = -0.5;
  edges clamped, or with `renormalize` the taps outside dropped and the rest rescaled to sum 1)."""
  rng = np.random.default_rng(8)
  image = rng.uniform(0, 1, (6, 8, 3)).astype(np.float32)
  h, w = 5, 7  # valid part of the padded image
  xy = rng.uniform(-1, 1, (17, 2)).astype(np.float32)
  want = np.zeros((17, 3))
  for n, (x, y) in enumerate(xy.astype(np.float64)):
    px, py = (x + 1) * 0.5 * w - 0.5, (y + 1) * 0.5 * h - 0.5
    rows, cols = np.floor(py) + np.arange(-1, 3), np.floor(px) + np.arange(-1, 3)
    wy, wx = resize.cubic(py - rows), resize.cubic(px - cols)
    if renormalize:
      wy, wx = np.where((rows >= 0) & (rows < h), wy, 0), np.where((cols >= 0) & (cols < w), wx, 0)
      wy, wx = wy / wy.sum(), wx / wx.sum()
    patch = image[np.clip(rows, 0, h - 1).astype(int)][:, np.clip(cols, 0, w - 1).astype(int)]
    want[n] = np.einsum("i,j,ijc->c", wy, wx, patch)
  for fn in (encoding.sample_bicubic_lanes, encoding.sample_bicubic):
    got = fn(jnp.asarray(image), jnp.asarray(xy), (h, w), renormalize)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-6, err_msg=fn.__name__)
