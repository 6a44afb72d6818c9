"""Tests of inrsr.data.degradations (BVSR-IK's official blur-and-subsample recipes)."""

import dataclasses

import numpy as np
import pytest

from inrsr.data import degradations as deg

# The code's sigma list (data.py L243-244, gen_dataset_blurdown.py L69-70) and the sizes 2 * ceil(3 sigma) + 1
# its float arithmetic gives (e.g. 0.7 * 3 = 2.0999... -> 7, 1.3 * 3 = 3.9000...1 -> 9).
CODE_SIGMAS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0]
CODE_SIZES = [5, 5, 5, 7, 7, 7, 7, 9, 9, 9, 11, 11, 11, 13, 13, 13, 13]


def test_sigma_set_and_sizes():
  assert list(deg.GAUSSIAN_SIGMAS) == CODE_SIGMAS
  assert [deg.gaussian_kernel_size(s) for s in CODE_SIGMAS] == CODE_SIZES
  assert deg.TEST_RECIPE.sigmas == (1.2,) and deg.TEST_RECIPE.quantize and deg.TEST_RECIPE.noise_max == 0
  assert deg.REALISTIC_TRAIN.noise_max == 25.0 and not deg.REALISTIC_TRAIN.quantize


@pytest.mark.parametrize("sigma", CODE_SIGMAS)
def test_gaussian_kernels_sum_to_one(sigma):
  k = deg.gaussian_kernel(sigma)
  size = deg.gaussian_kernel_size(sigma)
  assert k.shape == (size, size) and k.dtype == np.float64
  np.testing.assert_allclose(k.sum(), 1.0, atol=1e-12)
  np.testing.assert_allclose(k, k.T, atol=0)  # isotropic
  np.testing.assert_allclose(k, k[::-1, ::-1], atol=0)
  assert np.unravel_index(np.argmax(k), k.shape) == (size // 2, size // 2)


def test_gaussian_kernel_formula():
  # fspecial('gaussian', 5, 0.5): exp(-(x^2 + y^2) / 0.5), normalised.
  x = np.arange(-2, 3)
  ref = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / 0.5)
  ref /= ref.sum()
  np.testing.assert_allclose(deg.gaussian_kernel(0.5), ref, rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_realistic_kernels(seed):
  k = deg.realistic_kernel(np.random.default_rng(seed))
  assert k.shape == (13, 13)
  assert k.min() >= 0
  np.testing.assert_allclose(k.sum(), 1.0, atol=1e-12)
  raw = deg.realistic_kernel(np.random.default_rng(seed), out_size=None)
  assert raw.shape == (31, 31) and raw.min() >= 0
  np.testing.assert_allclose(raw.sum(), 1.0, atol=1e-12)
  # Centred: centre of mass at 15.5 (the shift target, shape / 2) up to the spline shift's accuracy.
  yy, xx = np.mgrid[:31, :31]
  np.testing.assert_allclose([(raw * yy).sum(), (raw * xx).sum()], [15.5, 15.5], atol=0.05)


def test_cv2_cubic_resize_matches_opencv():
  # Reference values from cv2.resize(a, (13, 13), interpolation=cv2.INTER_CUBIC), OpenCV 5.0.0, float64 input.
  i, j = np.meshgrid(np.arange(31), np.arange(31), indexing="ij")
  a = np.sin(0.3 * i) * np.cos(0.2 * j) + 0.01 * i * j
  r = deg.cv2_resize_cubic(a, 13)
  row0 = [0.18311467537738646, 0.16581919787409927, 0.11612793513934888, 0.04886217368120579,
          -0.02249759167740448, -0.07132329967515487, -0.08873985205482492, -0.06600478996236703,
          -0.00704703504047818, 0.0849160240174982, 0.18256216691665428, 0.27377178705603983, 0.3432783087519834]
  diag = [0.18311467537738646, 0.7496305269668675, 0.7604857959664585, 0.6160632212810643, 1.0290883429590028,
          2.0695105406201866, 3.2177474816893965, 3.859707437159581, 4.139081884573566, 4.828786175607154,
          6.187103460151686, 7.836730447688642, 9.16596338979709]
  col12 = [0.3432783087519834, 1.6514471884651498, 2.5300602065996936, 2.9541530798236435, 3.0756483673941073,
           3.1526815942889, 3.5112033393281057, 4.313100148430208, 5.4676628499843964, 6.863959332233209,
           8.02393672969454, 8.804478375810564, 9.16596338979709]
  np.testing.assert_allclose(r[0], row0, rtol=0, atol=1e-14)
  np.testing.assert_allclose(np.diag(r), diag, rtol=0, atol=1e-14)
  np.testing.assert_allclose(r[:, 12], col12, rtol=0, atol=1e-14)
  np.testing.assert_allclose(deg.cv2_resize_cubic(np.full((31, 31), 2.5), 13), 2.5, atol=1e-6)


def test_blur_downsample_by_hand():
  img = (10.0 * np.arange(5)[:, None] + np.arange(5)[None]).astype(np.float32)  # img[y, x] = 10 y + x
  # Average with the right neighbour (cross-correlation), replicate at the right edge, keep [::2, ::2].
  k = np.zeros((3, 3))
  k[1, 1] = k[1, 2] = 0.5
  np.testing.assert_allclose(deg.blur_downsample(img, k, 2),
                             [[0.5, 2.5, 4.0], [20.5, 22.5, 24.0], [40.5, 42.5, 44.0]])
  # Take the pixel above: row max(2i - 1, 0) (replicate at the top).
  k = np.zeros((3, 3))
  k[0, 1] = 1.0
  np.testing.assert_allclose(deg.blur_downsample(img, k, 2), [[0, 2, 4], [10, 12, 14], [30, 32, 34]])
  # Channels are blurred independently with the same kernel; sizes are ceil(H / s).
  rgb = np.stack([img, 2 * img, 3 * img], -1)
  out = deg.blur_downsample(rgb, deg.gaussian_kernel(0.8), 4)
  assert out.shape == (2, 2, 3)
  np.testing.assert_allclose(out[..., 1], 2 * out[..., 0], rtol=1e-12)
  with pytest.raises(ValueError, match="odd"):
    deg.blur_downsample(img, np.ones((4, 4)) / 16)


def test_quantize_and_noise_semantics():
  hr = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
  lr, kernels = deg.degrade_clip(hr, 0, deg.TEST_RECIPE)
  assert lr.shape == (2, 16, 16, 3) and lr.dtype == np.float32 and kernels.shape == (2, 9, 9)
  np.testing.assert_array_equal(lr, (np.round(lr.astype(np.float64) * 255) / 255).astype(np.float32))
  train, _ = deg.degrade_clip(hr, 0, deg.GAUSSIAN_TRAIN)
  assert np.abs(train * 255 - np.round(train * 255)).max() > 1e-3  # training LR is float, not rounded
  k = deg.gaussian_kernel(1.0)
  clean = deg.degrade_frame(hr[0], np.random.default_rng(3), deg.GAUSSIAN_TRAIN, kernel=k)[0]
  fixed = dataclasses.replace(deg.GAUSSIAN_TRAIN, noise_max=10.0, noise_random=False)
  noisy = deg.degrade_frame(hr[0], np.random.default_rng(3), fixed, kernel=k)[0]
  assert 8.5 < np.std((noisy - clean) * 255) < 11.5
  random = deg.degrade_frame(hr[0], np.random.default_rng(3), deg.REALISTIC_TRAIN, kernel=k)[0]
  assert 0 < np.std((random - clean) * 255) < 25  # sigma = U[0, 1) * 25, no clipping
  quant = deg.degrade_frame(hr[0], np.random.default_rng(3), dataclasses.replace(deg.TEST_RECIPE, noise_max=30.0))[0]
  assert quant.min() >= 0 and quant.max() <= 1


def test_determinism_by_seed():
  hr = np.random.default_rng(1).integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
  for recipe in (deg.GAUSSIAN_TRAIN, deg.REALISTIC_TRAIN, deg.REALISTIC_TEST):
    a, ka = deg.degrade_clip(hr, 7, recipe)
    b, kb = deg.degrade_clip(hr, np.random.default_rng(7), recipe)
    np.testing.assert_array_equal(a, b)
    for x, y in zip(ka, kb):
      np.testing.assert_array_equal(x, y)
    c, _ = deg.degrade_clip(hr, 8, recipe)
    assert not np.array_equal(a, c)
  # One kernel per frame: realistic kernels differ across frames.
  _, ks = deg.degrade_clip(hr, 7, deg.REALISTIC_TEST)
  assert not np.allclose(ks[0], ks[1])


def test_bad_inputs():
  with pytest.raises(ValueError, match="clip"):
    deg.degrade_clip(np.zeros((8, 8, 3), np.uint8), 0)
  with pytest.raises(ValueError, match="dtype"):
    deg.degrade_clip(np.zeros((1, 8, 8, 3), np.int32), 0)
  with pytest.raises(ValueError, match="kernel"):
    deg.draw_kernel(np.random.default_rng(0), deg.BlurDownRecipe(kernel="motion"))
  with pytest.raises(ValueError, match="sigma"):
    deg.gaussian_kernel(0.0)


def test_fixture_kernel_and_lr(shared):
  z = np.load(shared / "fixtures" / "bvsr_ik" / "bvsr_ik.npz")  # `shared` skips, or fails under CI, when absent
  # Equal to the official float64 kernel within a few ulps (NumPy releases may order the normalising sum
  # differently: 4 entries of 81 differ by 8.7e-19 under one); the uint8 LR below must still be equal exactly.
  np.testing.assert_allclose(deg.gaussian_kernel(deg.TEST_SIGMA), z["blur_kernel"], rtol=1e-14, atol=0)
  lr, kernels = deg.degrade_clip(z["hr_rgb"], 0, deg.TEST_RECIPE)
  for k in kernels:
    np.testing.assert_allclose(k, z["blur_kernel"], rtol=1e-14, atol=0)
  official_rgb = np.round(z["lrs"][0].transpose(0, 2, 3, 1)[..., ::-1].astype(np.float64) * 255).astype(np.uint8)
  np.testing.assert_array_equal(deg.to_uint8(lr), official_rgb)
