"""Tests for inrsr.coords."""

import numpy as np
import pytest

from inrsr import coords


def test_pixel_centers_worked_case():
  np.testing.assert_allclose(coords.pixel_centers(4), [-0.75, -0.25, 0.25, 0.75])
  np.testing.assert_allclose(coords.time_coords(1), [0.0])
  np.testing.assert_allclose(coords.time_coords(2), [-0.5, 0.5])


def test_coord_grid_order_is_x_y_t():
  g = coords.coord_grid(2, 4, t=0.5)
  assert g.shape == (2, 4, 3)
  np.testing.assert_allclose(g[0, :, 0], [-0.75, -0.25, 0.25, 0.75])  # x runs along columns
  np.testing.assert_allclose(g[:, 0, 1], [-0.5, 0.5])  # y runs along rows
  assert np.all(g[..., 2] == 0.5)
  np.testing.assert_allclose(coords.pixel_coords(np.array([1]), np.array([3]), 2, 4, 0.5), g[1:2, 3])


@pytest.mark.parametrize("scale,expected", [(4, (64, 48, 256, 192)), (3, (85, 64, 255, 192)),
                                            (2.5, (102, 77, 255, 192))])
def test_scaled_size_mod_crop(scale, expected):
  assert coords.scaled_size(256, 193, scale) == expected


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_scaled_size_rejects_bad_scale(scale):
  with pytest.raises(ValueError, match="scale"):
    coords.scaled_size(64, 64, scale)


def test_scaled_size_rejects_too_small_image():
  with pytest.raises(ValueError, match="too small"):
    coords.scaled_size(16, 16, 32)
