"""SR-INR diagnostics: code shifts and trained-row shares by hand, and on a short real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tools import diagnostics
from inrsr.models import srinr


def test_touched_rows_marks_changed_rows():
  init = np.zeros((2, 4, 2), np.float32)
  trained = init.copy()
  trained[0, 3, 1] = 1e-7
  trained[1, 0, 0] = -2.0
  np.testing.assert_array_equal(diagnostics.touched_rows(trained, init),
                                [[False, False, False, True], [True, False, False, False]])
  with pytest.raises(ValueError, match="differ in shape"):
    diagnostics.touched_rows(trained, init[:1])


def test_level_stats_by_hand():
  # One level, N = 4, T = 2^16: (4 + 2)^6 <= T, so rows are dense: row = sum_d corner_d * 6^d.
  # Query 0 sits at the lattice origin (all coordinates -1); query 1 the same but code axis 3 at -0.5.
  points = np.full((2, 1, 6), -1.0, np.float32)
  points[1, 0, 3] = -0.5  # u = (-0.5 + 1) / 2 * 4 = 1: one cell along one of the three code axes
  ref = np.full((2, 1, 6), -1.0, np.float32)
  touched = np.zeros((1, 1 << 16), bool)
  touched[0, 0] = True  # the origin corner: corner 0 of query 0
  touched[0, 6] = True  # corner (0, 1, 0, 0, 0, 0) of query 0; for query 1 (base (0,0,0,1,0,0)) neither is a corner
  out = diagnostics.level_stats(points, ref, touched, [4])
  np.testing.assert_allclose(out["trained_corners"], [(2 / 64 + 0 / 64) / 2])
  np.testing.assert_allclose(out["code_shift"], [(0 + 1 / 3) / 2])  # |delta u| = 1 on one of 3 code axes
  np.testing.assert_allclose(out["cell_changed"], [0.5])
  assert set(diagnostics.level_stats(points, None, touched, [4])) == {"trained_corners"}
  with pytest.raises(ValueError, match="number of levels"):
    diagnostics.level_stats(points, ref, touched, [4, 8])


def test_hash_points_are_the_queries_and_bounded_codes():
  model = srinr.SRINR(num_levels=3, log2_table_size=12, n_min=4, n_max=16, hidden=8, code_resolution=1,
                      kernel_impl="reference")
  rng = np.random.default_rng(0)
  lr = rng.uniform(size=(12, 10, 3)).astype(np.float32)
  xyt = rng.uniform(-1, 1, size=(50, 3)).astype(np.float32)
  params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(lr)[None], jnp.asarray(xyt)[None])["params"]
  points = diagnostics.hash_points(model, params, lr, xyt)
  assert points.shape == (50, 3, 6)
  np.testing.assert_array_equal(points[:, :, :3], np.broadcast_to(xyt[:, None], (50, 3, 3)))
  # One lattice cell on the code axes: u = (code + 1) / 2 * N_l stays in [0, 1] on every level.
  for level, n in enumerate(model.resolutions):
    u = (points[:, level, 3:] + 1) / 2 * n
    assert u.min() >= -1e-5 and u.max() <= 1 + 1e-5
    assert u.std() > 0.01  # the codes vary with the query


def test_diagnose_a_short_run(trained_run_copy, tmp_path):
  result = diagnostics.diagnose_run(trained_run_copy, scales=(2.0, 8.0), ref_scale=4.0, queries=256)
  assert result["scales"] == [2.0, 4.0, 8.0]
  levels = len(result["resolutions"])
  fit = result["sets"]["fit"]
  assert fit["4"]["code_shift"] == [0.0] * levels and fit["4"]["cell_changed"] == [0.0] * levels
  assert max(fit["2"]["code_shift"]) > 0  # another scale's LR gives other codes for the same pixels
  assert "code_shift" not in result["sets"]["heldout"]["4"]
  assert all(0 < s <= 1 for s in result["touched_share"])
  assert all(0 <= v <= 1 for st in fit.values() for v in st["trained_corners"])
  assert all(np.isfinite(st["psnr"]) and st["bicubic_psnr"] > 10 for st in fit.values())
  assert (trained_run_copy / "diagnostics.json").exists()
  table = diagnostics.markdown(result)
  assert table.count("| fit | x") == 3 * 3 and table.count("| heldout | x") == 3
  diagnostics.plot(result, tmp_path / "d.png")
  assert (tmp_path / "d.png").stat().st_size > 10_000
