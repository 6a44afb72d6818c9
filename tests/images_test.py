"""Tests for image loading: conversions and the clear errors DESIGN.md asks for."""

import imageio.v3 as iio
import numpy as np
import pytest
import skimage.data

from inrsr.data import images, sources


def test_conversions(tmp_path):
  rgb = skimage.data.coffee()[:20, :30]
  gray = skimage.data.camera()[:20, :30]
  iio.imwrite(tmp_path / "rgb.png", rgb)
  iio.imwrite(tmp_path / "gray.png", gray)
  iio.imwrite(tmp_path / "rgba.png", np.concatenate([rgb, np.full((20, 30, 1), 128, np.uint8)], -1))
  iio.imwrite(tmp_path / "gray16.png", gray.astype(np.uint16) * 257)
  iio.imwrite(tmp_path / "photo.jpg", rgb, quality=95)
  iio.imwrite(tmp_path / "photo.bmp", rgb)
  np.testing.assert_allclose(images.load_image(tmp_path / "rgb.png"), rgb / 255.0, atol=1e-7)
  g = images.load_image(tmp_path / "gray.png")
  assert g.shape == (20, 30, 3) and np.allclose(g[..., 0], g[..., 2]) and np.allclose(g[..., 0], gray / 255.0)
  np.testing.assert_allclose(images.load_image(tmp_path / "rgba.png"), rgb / 255.0, atol=1e-7)
  np.testing.assert_allclose(images.load_image(tmp_path / "gray16.png")[..., 1], gray / 255.0, atol=1e-6)
  assert np.abs(images.load_image(tmp_path / "photo.jpg") - rgb / 255.0).mean() < 0.02
  np.testing.assert_allclose(images.load_image(tmp_path / "photo.bmp"), rgb / 255.0, atol=1e-7)
  assert [p.name for p in images.list_images(tmp_path)] == sorted(
      ["gray.png", "gray16.png", "photo.bmp", "photo.jpg", "rgb.png", "rgba.png"])


def test_unreadable_file_names_the_file(tmp_path):
  bad = tmp_path / "broken.png"
  bad.write_bytes(b"not a png at all")
  with pytest.raises(ValueError, match="broken.png: cannot read image"):
    images.load_image(bad)


def test_wrong_channel_count_names_the_image_and_gray_alpha_is_converted():
  with pytest.raises(ValueError, match="five.png: expected a grayscale, gray\\+alpha, RGB or RGBA"):
    images.to_rgb_float(np.zeros((4, 4, 5), np.uint8), "five.png")
  gray_alpha = np.stack([np.arange(16, dtype=np.uint8).reshape(4, 4), np.full((4, 4), 7, np.uint8)], -1)
  rgb = images.to_rgb_float(gray_alpha, "la.png")
  np.testing.assert_array_equal(rgb, np.repeat(gray_alpha[..., :1], 3, -1) / np.float32(255))


def test_empty_and_missing_folders(tmp_path):
  (tmp_path / "notes.txt").write_text("no images here")
  with pytest.raises(ValueError, match="holds no PNG/JPEG/BMP images.*data.root"):
    images.list_images(tmp_path)
  with pytest.raises(ValueError, match="does not exist: set data.root"):
    sources.load_images("folder", root=str(tmp_path / "missing"))


def test_bundled_images_and_bad_names():
  astronaut = images.bundled_image("astronaut")
  assert astronaut.shape == (512, 512, 3) and astronaut.dtype == np.float32
  assert images.bundled_image("camera").shape == (512, 512, 3)
  with pytest.raises(ValueError, match="not one of"):
    images.bundled_image("lena")
  with pytest.raises(ValueError, match="data.source"):
    sources.load_images("http")
