"""Tests for inrsr.resize: Pillow agreement, point sampling and patch sampling."""

import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from PIL import Image

from inrsr import coords, resize


def _pil_resize_float(image, height, width):
  """Pillow BICUBIC in float mode ('F'), channel by channel: no 8-bit rounding between passes."""
  return np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                              .resize((width, height), Image.BICUBIC)) for c in range(image.shape[-1])], -1)


@pytest.mark.parametrize("scale", [2, 3, 4, 8, 32, 2.5])
def test_downsample_matches_pillow_on_real_photo(scale):
  img = skimage.data.astronaut()
  h_lr, w_lr, h_hr, w_hr = coords.scaled_size(*img.shape[:2], scale)
  crop = img[:h_hr, :w_hr]
  lr, hr = resize.downsample(crop / 255.0, scale)
  assert lr.shape == (h_lr, w_lr, 3) and hr.shape == crop.shape
  # Exact filter: Pillow in float mode, every pixel.
  ref = np.clip(_pil_resize_float(crop / 255.0, h_lr, w_lr), 0, 1)
  np.testing.assert_allclose(lr, ref, atol=1e-5)
  # 8-bit Pillow rounds (and clips) between its two passes; interior pixels stay within 1/255 except a few
  # strong-edge pixels where the intermediate clip bites.
  pil8 = np.asarray(Image.fromarray(crop).resize((w_lr, h_lr), Image.BICUBIC)) / 255.0
  err = np.abs(lr - pil8)[2:-2, 2:-2]
  assert np.mean(err <= 1.0 / 255 + 1e-6) > 0.98
  assert np.mean(err) < 0.35 / 255


def test_resize_matrix_rows_sum_to_one():
  for n_in, n_out in [(100, 13), (13, 100), (7, 7)]:
    np.testing.assert_allclose(resize.resize_matrix(n_in, n_out).sum(1), 1.0, atol=1e-6)


def test_point_sampling_matches_whole_image_upsampling():
  lr = skimage.data.chelsea()[::8, ::8][:30, :40] / 255.0  # a real photograph, 30 x 40
  out_h, out_w = 90, 120
  up = resize.resize(lr, out_h, out_w)
  grid = coords.coord_grid(out_h, out_w)[..., :2]
  pts = resize.sample_bicubic(jnp.asarray(lr, jnp.float32), jnp.asarray(grid))
  # Interior: away from the 2-pixel LR border where Pillow truncates the kernel and we clamp.
  np.testing.assert_allclose(np.asarray(pts)[8:-8, 8:-8], up[8:-8, 8:-8], atol=2e-5)


def test_patches_match_pointwise_sampling_and_padding():
  rng = np.random.default_rng(0)
  lr = skimage.data.coffee()[::16, ::16] / 255.0
  xy = rng.uniform(-1, 1, (17, 2)).astype(np.float32)
  spacings = np.array([0.5, 0.1, 0.02], np.float32)
  k = 5
  patches = np.asarray(resize.sample_patches(jnp.asarray(lr, jnp.float32), jnp.asarray(xy), spacings, k))
  assert patches.shape == (17, 3, k, k, 3)
  off = np.arange(k) - (k - 1) / 2
  for l, s in enumerate(spacings):
    px = xy[:, None, None, 0] + off[None, None, :] * s
    py = xy[:, None, None, 1] + off[None, :, None] * s
    pts = np.stack(np.broadcast_arrays(px, py), -1)
    want = resize.sample_bicubic(jnp.asarray(lr, jnp.float32), jnp.asarray(pts, jnp.float32))
    np.testing.assert_allclose(patches[:, l], np.asarray(want), atol=1e-5)
  # A frame padded at the bottom/right samples the same as the unpadded frame when told its size.
  padded = np.pad(lr, ((0, 5), (0, 3), (0, 0)), mode="edge")
  again = resize.sample_patches(jnp.asarray(padded, jnp.float32), jnp.asarray(xy), spacings, k,
                                size=(lr.shape[0], lr.shape[1]))
  np.testing.assert_allclose(np.asarray(again), patches, atol=1e-5)


def test_sampling_hand_worked_case():
  # Samples exactly at pixel centres return the pixels; a horizontal ramp is reproduced in the interior.
  ramp = np.tile(np.arange(8, dtype=np.float32)[None, :, None], (4, 1, 1)) / 8
  xy = jnp.asarray([[-1 + 5 / 8, 0.0], [-1 + 6 / 8, -0.75]], jnp.float32)  # x at pixel 2 centre, between 2 and 3
  np.testing.assert_allclose(np.asarray(resize.sample_bicubic(jnp.asarray(ramp), xy))[:, 0],
                             [2 / 8, 2.5 / 8], atol=1e-6)
