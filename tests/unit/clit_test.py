"""Tests for LIT/CLIT (models/clit.py, convert/clit.py): official fixture, NumPy checks, hand-worked scales."""

import copy

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import common
from inrsr import coords
from inrsr.infer import inference
from tools import benchmarking
from inrsr.convert import clit as convert_clit
from inrsr.models import clit, clit_tables, sampling

NAME = "edsr_baseline_clit3"
CHUNK = 16384


@pytest.fixture(scope="module")
def official(shared):
  """The official checkpoint and its outputs (README section "clit"): (checkpoint, {name: array})."""
  from inrsr.convert import pth
  ref = np.load(shared / "fixtures" / "clit" / f"{NAME}.npz")
  return pth.load(shared / "fixtures" / "clit" / f"{NAME}.pth"), {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def converted(official):
  checkpoint, _ = official
  config, params = convert_clit.convert(checkpoint)
  return config, params


def _encoder(model, scales):
  """`model.encode` at the static stage `scales`, jitted: (params, lr) -> features."""
  return jax.jit(lambda p, x: model.apply({"params": p}, x, scales=scales, method=model.encode))


def _predict(model, params, lr, coords, cells, scales):
  """encode once, then query in equal chunks of at most CHUNK (the official chop_forward; queries are
  independent), so one compiled query serves every chunk and the last one pads at most a few queries."""
  encode = _encoder(model, scales)
  query = jax.jit(lambda p, f, c, e: model.apply({"params": p}, f, c, e, scales=scales, return_stages=True,
                                                 method=model.query))
  feats = encode(params, lr)
  n = coords.shape[1]
  chunk = -(-n // -(-n // CHUNK))  # ceil(n / number of chunks)
  outs = []
  for start in range(0, n, chunk):
    idx = np.arange(start, start + chunk) % n
    outs.append(np.asarray(query(params, feats, coords[:, idx], cells[:, idx]))[:, :, :min(chunk, n - start)])
  return np.concatenate(outs, axis=2)  # (S, B, Q, 3)


def test_convert_reads_sizes_from_the_checkpoint(converted):
  config, params = converted
  assert config == {"name": "clit", "encoder": "edsr-baseline",
                    "encoder_args": {"n_resblocks": 4, "n_feats": 64, "res_scale": 1.0}, "base_dim": 64, "head": 8,
                    "r": 3, "num_stages": 3, "cell_decode": True, "local_attn": True, "pos_bias": True,
                    "posenc_scale": 10.0, "posenc_dims": 64, "hidden_list": [256, 256, 256, 256], "act": "gelu"}
  assert params["imnets_2"]["layers_0"]["kernel"].shape == (64 * 49 + 2, 256)
  assert params["pb_proj"]["kernel"].shape == (64, 8)
  assert sum(np.size(v) for v in jax.tree.leaves(params)) == 3709161 - 24  # official count less MeanShift


@pytest.mark.parametrize("case", ["grid", "cascade", "rand", "rand3"])
def test_matches_official_fixture(case, official, converted):
  """Every query of every fixture case to 1e-5 (README's bar): 'cascade' is the whole 276x372 grid at x12."""
  _, ref = official
  config, params = converted
  model = clit.from_config(config)
  scales = tuple(float(s) for s in ref[f"scales_{case}"])
  lr = ref["lr"]
  # The stored grid sizes follow from the LR size and the scales, as in the official collate function.
  assert clit.stage_sizes(lr.shape[:2], scales) == tuple(map(tuple, ref[f"stage_hw_{case}"].tolist()))
  coords, pred = ref[f"coord_{case}"], ref[f"pred_{case}"]
  assert coords.shape[0] == np.prod(ref[f"stage_hw_{case}"][-1]) or case.startswith("rand")  # grids: every pixel
  coords = coords[None, :, ::-1]  # official (y, x) -> inrsr (x, y)
  cells = np.broadcast_to(ref[f"cell_{case}"][::-1], coords.shape)
  out = _predict(model, params, lr[None], coords, cells, scales)
  err = np.abs(out[-1, 0] - pred).max()
  print(f"{case} scales {scales} Q {coords.shape[1]}: max abs error {err:.3g}")
  if f"stage_pred_{case}" in ref:
    for k in range(len(scales)):
      e = np.abs(out[k, 0] - ref[f"stage_pred_{case}"][k]).max()
      print(f"  stage {k}: max abs error {e:.3g}")
      assert e <= 1e-5, (case, k, e)
  assert err <= 1e-5, (case, err)


def test_stage_scales_hand_worked():
  # sample_system_scale(s, 4): first min(s, 4), then factors of 4 while the rest is >= 4, then the remainder.
  assert clit.stage_scales(3) == (3.0,)
  assert clit.stage_scales(4) == (4.0,)  # <= 4: one stage
  assert clit.stage_scales(12) == (4.0, 3.0)  # 12 / 4 = 3 < 4
  assert clit.stage_scales(16) == (4.0, 4.0)  # 16 / 4 = 4 -> 4, then 1 is not > 1
  assert clit.stage_scales(18) == (4.0, 4.0, 1.125)  # 18 / 4 = 4.5 -> 4, 4.5 / 4 = 1.125
  assert clit.stage_scales(7.3) == (4.0, 1.825)
  assert clit.stage_scales(30) == (4.0, 4.0, 1.875)
  assert clit.stage_scales(6, scale_base=2) == (2.0, 2.0, 1.5)
  # 23 x 31 LR: stage grids round(h * prod(scales[:i+1])), the numbers stored in the fixture's README.
  assert clit.stage_sizes((23, 31), (4.0, 1.825)) == ((92, 124), (168, 226))
  assert clit.stage_sizes((23, 31), (4.0, 4.0, 1.125)) == ((92, 124), (368, 496), (414, 558))
  assert clit.feature_sizes((23, 31), (4.0, 3.0)) == ((23, 31), (92, 124))
  assert clit.scales_for_size((23, 31), (276, 372)) == (4.0, 3.0)
  assert clit.scales_for_size((23, 31), (69, 93)) == (3.0,)
  for bad in (0, -2, float("nan"), float("inf")):
    with pytest.raises(ValueError):
      clit.stage_scales(bad)


def _torch_nearest(fmap, gy, gx):
  """NumPy transcription of torch grid_sample(mode='nearest', align_corners=False, zeros) at one point."""
  h, w = fmap.shape[:2]
  uy = (np.float32(gy) + np.float32(1)) * np.float32(h / 2) - np.float32(0.5)
  ux = (np.float32(gx) + np.float32(1)) * np.float32(w / 2) - np.float32(0.5)
  iy, ix = int(np.rint(uy)), int(np.rint(ux))  # np.rint: ties to even, as std::nearbyint
  if 0 <= iy < h and 0 <= ix < w:
    return fmap[iy, ix]
  return np.zeros(fmap.shape[2:], fmap.dtype)


def test_neighbourhood_gathering_matches_numpy_transcription():
  """The 7x7 K/V gathering and rel_coord against a point-by-point NumPy transcription of the official code."""
  rng = np.random.default_rng(0)
  for h, w in ((5, 6), (8, 7), (92, 124)):
    fmap = rng.standard_normal((h, w, 3)).astype(np.float32)
    q = rng.uniform(-1, 1, (40, 2)).astype(np.float32)
    q[:6] = [[-1, -1], [1, 1], [1, -1], [0, 0], [-0.5, 0.5], [0.99999, -1]]  # ties and the out-of-range corner
    coord_lr = np.stack(np.meshgrid(coords.make_coord_f32(h), coords.make_coord_f32(w), indexing="ij"), -1)
    delta = np.stack(np.meshgrid(np.arange(-3, 4, dtype=np.float32) * np.float32(2 / h),
                                 np.arange(-3, 4, dtype=np.float32) * np.float32(2 / w), indexing="ij"), -1)
    want_v, want_rel = [], []
    for gy, gx in q:
      centre = _torch_nearest(coord_lr, gy, gx)  # zero vector when out of range
      nb = (centre[None, None] + delta).reshape(49, 2)
      want_v.append([_torch_nearest(fmap, a, b) for a, b in nb])
      rel = np.array([gy, gx], np.float32)[None] - nb
      want_rel.append(rel * np.array([h, w], np.float32))
    # The model's path: nearest centre, static per-axis tables, broadcast to 7 x 7, then one gather.
    cy, cx = jnp.asarray(q[None, :, 0]), jnp.asarray(q[None, :, 1])
    iy, vy = sampling.nearest_index(cy, h)
    ix, vx = sampling.nearest_index(cx, w)
    ok = vy & vx
    ty, tx = clit.neighbour_table(h, 3), clit.neighbour_table(w, 3)
    ry, rx = np.asarray(jnp.where(ok, iy, h))[0], np.asarray(jnp.where(ok, ix, w))[0]
    niy = np.repeat(ty[1][ry], 7, axis=1)
    nix = np.tile(tx[1][rx], (1, 7))
    valid = np.repeat(ty[2][ry], 7, axis=1) & np.tile(tx[2][rx], (1, 7))
    got_v = np.asarray(sampling.gather(jnp.asarray(fmap[None]), jnp.asarray(niy[None]), jnp.asarray(nix[None]),
                                    jnp.asarray(valid[None])))[0]
    got_rel = np.stack([(q[:, :1] - np.repeat(ty[0][ry], 7, axis=1)) * np.float32(h),
                        (q[:, 1:] - np.tile(tx[0][rx], (1, 7))) * np.float32(w)], -1)
    np.testing.assert_array_equal(got_v, np.array(want_v))
    np.testing.assert_array_equal(got_rel, np.array(want_rel))


def test_position_bias_matches_numpy():
  """The sinusoid bias against the official construction of b_vals (stack, roll, cat) and rel @ b_vals.T."""
  freqs = clit.posenc_freqs(10, 64)
  # torch builds these in float32 (linspace, then pow): within float32 rounding of the exact values.
  np.testing.assert_allclose(freqs, 2.0 ** np.linspace(0, 10, 16) - 1, rtol=1e-6)
  assert freqs[0] == 0 and freqs[-1] == 1023 and freqs.dtype == np.float32
  assert freqs[3] == 3 and freqs[6] == 15 and freqs[9] == 63  # linspace hits 2, 4, 6 exactly in float32
  b_vals = np.stack([freqs, np.zeros_like(freqs)], -1)
  b_vals = np.concatenate([b_vals, np.roll(b_vals, 1, -1)], 0)  # (32, 2): y frequencies, then x frequencies
  model = clit.CLIT(base_dim=16, head=4, encoder_args={"n_resblocks": 1, "n_feats": 8})
  rel = np.random.default_rng(1).uniform(-4, 4, (1, 5, 49, 2)).astype(np.float32)
  rng = np.random.default_rng(2)
  params = {"kernel": rng.standard_normal((64, 4)).astype(np.float32), "bias": np.ones(4, np.float32)}
  got = model.apply({"params": {"pb_proj": params}}, jnp.asarray(rel), method=lambda m, x: m._position_bias(x))
  args = np.matmul(rel, b_vals.T)  # float32, one product per entry (the other factor is 0), as torch
  want = np.concatenate([np.sin(args.astype(np.float64)), np.cos(args.astype(np.float64))], -1) @ params["kernel"]
  want = want + params["bias"]
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


def _small(num_stages=3, **kw):
  return clit.CLIT(base_dim=16, head=4, num_stages=num_stages, hidden_list=(32, 32),
                   encoder_args=flax.core.FrozenDict({"n_resblocks": 1, "n_feats": 8}), **kw)  # hashable


def _init(model, *args, seed=0):
  """Random params of the shapes `model.init` creates (NumPy, so no per-shape PRNG compilation)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (rng.standard_normal(s.shape) * 0.05).astype(np.float32), shapes)


def _inputs(h=5, w=6, q=40, seed=0):
  rng = np.random.default_rng(seed)
  lr = rng.uniform(0, 1, (2, h, w, 3)).astype(np.float32)
  coords = rng.uniform(-1, 1, (2, q, 2)).astype(np.float32)
  coords[:, :2] = [[1, 1], [-1, -1]]
  cells = np.broadcast_to(np.array([2 / (w * 7), 2 / (h * 7)], np.float32), coords.shape)
  return lr, coords, cells


def test_cascade_api_init_chunking_and_precomputed_stages():
  model = _small()
  lr, coords, cells = _inputs()
  params = _init(model, lr, coords, cells)  # a one-stage init call creates every stage
  assert {"imnets_2", "conv_qs_2", "conv_ks_2", "conv_vs_2", "pb_proj"} <= set(params)
  scales = (4.0, 1.75)
  call = jax.jit(lambda p, *a, scales=None: model.apply({"params": p}, *a, scales=scales, return_stages=True),
                 static_argnames="scales")
  encode = jax.jit(lambda p, x, scales=None: model.apply({"params": p}, x, scales=scales, method=model.encode),
                   static_argnames="scales")
  query = jax.jit(lambda p, *a, scales=None: model.apply({"params": p}, *a, scales=scales, method=model.query),
                  static_argnames="scales")
  full = call(params, lr, coords, cells, scales=scales)
  assert full.shape == (2, 2, coords.shape[1], 3)
  # Scales as one number are decomposed with scale_base: 7 -> (4, 1.75).
  assert model.stage_plan((5, 6), 7.0) == model.stage_plan((5, 6), scales) == ((5, 6), (20, 24))
  # encode without the scales: query computes the stage-1 maps itself; same numbers.
  feats = encode(params, lr)
  assert len(feats["stages"]) == 1
  np.testing.assert_allclose(query(params, feats, coords, cells, scales=scales), full[-1], atol=1e-6)
  # Queries are independent: chunks give the same outputs.
  feats = encode(params, lr, scales=scales)
  assert [m["v"].shape[1:3] for m in feats["stages"]] == [(5, 6), (20, 24)]
  parts = [query(params, feats, coords[:, s], cells[:, s], scales=scales) for s in (slice(0, 20), slice(20, None))]
  np.testing.assert_allclose(np.concatenate(parts, 1), full[-1], atol=1e-6)
  # Without scales the model is LIT (stage 0 only), the first output of the cascade.
  np.testing.assert_allclose(call(params, lr, coords, cells)[0], full[0], atol=1e-6)
  with pytest.raises(ValueError, match="same scales"):
    model.apply({"params": params}, feats, coords, cells, scales=(2.0, 2.0), method=model.query)
  with pytest.raises(ValueError, match="num_stages"):
    model.apply({"params": params}, lr, coords, cells, scales=(4.0, 4.0, 4.0, 2.0))


def test_lit_without_cascade_weights_is_bilinear_plus_residual():
  """With the MLP's last layer zeroed, the output is exactly the border-padded bilinear upsampling."""
  model = _small(num_stages=1)
  lr, coords, cells = _inputs(h=4, w=5)
  params = _init(model, lr, coords, cells, seed=1)
  params["imnets_0"]["layers_2"] = jax.tree.map(np.zeros_like, params["imnets_0"]["layers_2"])
  out = np.asarray(model.apply({"params": params}, lr, coords, cells))
  # Independent bilinear (align_corners False, border): pixel centres at (c + 1) * n / 2 - 0.5.
  want = np.empty_like(out)
  for b in range(2):
    for i, (x, y) in enumerate(coords[b]):
      u = np.clip((y + 1) * 4 / 2 - 0.5, 0, 3)
      v = np.clip((x + 1) * 5 / 2 - 0.5, 0, 4)
      y0, x0 = int(np.floor(u)), int(np.floor(v))
      y1, x1 = min(y0 + 1, 3), min(x0 + 1, 4)
      fy, fx = u - y0, v - x0
      img = lr[b]
      want[b, i] = ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
                    + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))
  np.testing.assert_allclose(out, want, atol=1e-6)


def test_frequency_encoding_option():
  model = _small(num_stages=2, freq_encoding=True, freq_dims=16)
  lr, coords, cells = _inputs()
  params = _init(model, lr, coords, cells)
  assert params["conv_freqs_1"]["kernel"].shape == (3, 3, 16, 8)
  assert params["imnets_0"]["layers_0"]["kernel"].shape == ((16 + 16) * 49 + 2, 32)
  out = jax.jit(lambda p, *a: model.apply({"params": p}, *a, scales=(2.0, 2.0)))(params, lr, coords, cells)
  assert out.shape == (2, coords.shape[1], 3) and np.isfinite(np.asarray(out)).all()
  # Off (the released code's default): no frequency convs.
  assert "conv_freqs_0" not in _init(_small(), lr, coords, cells)


def test_convert_rejects_foreign_layouts(official):
  checkpoint, _ = official
  with pytest.raises(ValueError, match="only 'clit'"):
    convert_clit.convert({"model": {"name": "liif", "args": {}, "sd": {}}})
  with pytest.raises(ValueError, match="expected an official CLIT checkpoint"):
    convert_clit.convert({"state_dict": {}})
  bad = copy.deepcopy(checkpoint)
  bad["model"]["args"]["pb_spec"]["args"]["posenc_type"] = "learn"
  with pytest.raises(ValueError, match="not supported"):
    convert_clit.convert(bad)
  bad = copy.deepcopy(checkpoint)
  del bad["model"]["sd"]["conv_ks.1.weight"]
  with pytest.raises(ValueError, match="conv_ks.1.weight"):
    convert_clit.convert(bad)
  bad = copy.deepcopy(checkpoint)
  bad["model"]["sd"]["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match="extra.weight"):
    convert_clit.convert(bad)
  bad = copy.deepcopy(checkpoint)
  for key in [k for k in bad["model"]["sd"] if k.startswith("imnets.2.")]:
    del bad["model"]["sd"][key]
  with pytest.raises(ValueError, match="imnet_num != conv_num"):
    convert_clit.convert(bad)


def test_from_config_rejects_unknown_fields():
  with pytest.raises(ValueError, match="lambda_"):
    clit.from_config({"name": "clit", "lambda_": 0.5})
  with pytest.raises(ValueError, match="encoder"):
    clit.from_config({"encoder": "swinir"})
  fields = {"num_stages": 2, "hidden_list": [8], "encoder_args": {"n_resblocks": 2}}
  model = clit.from_config({"name": "clit", **fields})
  assert model.hidden_list == (8,) and model.num_stages == 2
  assert hash(model) == hash(clit.from_config(dict(fields)))  # hashable (jit caches key on the module)


def test_benchmark_models_times_clit3_apart_from_lit():
  clit, lit = benchmarking.model_config("clit"), benchmarking.model_config("lit")
  assert (clit.num_stages, lit.num_stages) == (3, 1)
  assert benchmarking.model_config("clit_points") == clit  # the same model, decoded point by point
  assert common.GENERALISING_MODELS["clit"]["num_stages"] == 1  # the shared default is not edited by the call
  with pytest.raises(ValueError, match="unknown model 'rdn'"):
    benchmarking.model_config("rdn")


def _decode_bands(model, params, lr, out_hw, chunk, factored=None):
  """`query_band` over every band of `band_layout` (unclipped, as the official outputs): (H, W, 3)."""
  kwargs, cols, bands = model.band_layout(lr.shape[:2], out_hw, chunk)
  if factored is not None:
    kwargs["factored"] = factored
  feats = _encoder(model, kwargs["scales"])(params, jnp.asarray(lr)[None])
  ys, xs = coords.make_coord_f32(out_hw[0]), coords.make_coord_f32(out_hw[1])
  cell = jnp.asarray([2 / out_hw[1], 2 / out_hw[0]], jnp.float32)
  decode = jax.jit(lambda p, f, y, pl: model.apply({"params": p}, f, y, xs, cell, pl, cols, method=model.query_band,
                                                   **kwargs))
  out = np.concatenate([np.asarray(decode(params, feats, ys[r], plans)) for r, plans in bands])
  return out[:out_hw[0]], kwargs


def test_band_plans_fill_the_slots_of_bands_shorter_than_a_feature_row():
  """12 output rows on a 1-row map share its row: 4-row bands get 4 slots, not the whole output's 12."""
  _, bands = clit_tables.band_plans(12, 2, [(1, 2)], 4)
  for r, ((groups, slot, pick),) in bands:
    assert groups.tolist() == [0] and slot.shape == (1, 4) and slot[0].tolist() == [0, 1, 2, 3]
    assert pick.tolist() == [0, 1, 2, 3]
  # 12 rows of a 3-row map (4 each) and of a 4-row map (3 each): the divisors and doubled multiples of 4 rows.
  assert clit_tables.band_heights(12, [3, 4]) == [1, 2, 4, 8, 12]
  assert clit_tables.band_heights(12, []) == [1, 2, 4, 8, 12]  # unit 1: powers of 2
  assert clit_tables.band_heights(36, [3]) == [1, 2, 3, 4, 6, 12, 24, 36]


def test_factor_threshold_rule_and_override():
  assert clit.CLIT(base_dim=256, head=8).factor_threshold() == 9.0  # the official width: 9 (x3 and up)
  assert clit.CLIT(base_dim=64, head=8).factor_threshold() == 16.0  # the fixture's width: x4 and up
  model = clit.CLIT(base_dim=64, head=8, num_stages=2)
  assert model.band_layout((64, 64), (768, 768), 30000)[0]["factored"] == (True, False)  # 144 and 9 per pixel
  try:
    clit.CLIT.factor_min_queries = 1.0
    assert model.factor_threshold() == 1.0
    assert model.band_layout((64, 64), (768, 768), 30000)[0]["factored"] == (True, True)
  finally:
    clit.CLIT.factor_min_queries = None


def test_band_plans_hand_worked():
  """10 output rows on a 4-row map: nearest rows (ties to even) 0 0 0 1 1 2 2 2 3 3, laid out 3 slots a row."""
  (col_slot, col_pick), = clit_tables.band_plans(10, 4, [(4, 2)], 4)[0]
  assert col_slot.tolist() == [[0, 1], [2, 3]] and col_pick.tolist() == [0, 1, 2, 3]
  _, bands = clit_tables.band_plans(10, 4, [(4, 2)], 4)
  assert [r.tolist() for r, _ in bands] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]
  (groups, slot, pick), = bands[0][1]
  assert groups.tolist() == [0, 1] and slot.tolist() == [[0, 1, 2], [3, 3, 3]] and pick.tolist() == [0, 1, 2, 3]
  (groups, slot, pick), = bands[1][1]  # rows 4..7: row 4 in map row 1, rows 5-7 in map row 2
  assert groups.tolist() == [1, 2] and slot.tolist() == [[0, 0, 0], [1, 2, 3]] and pick.tolist() == [0, 3, 4, 5]
  (groups, slot, pick), = bands[2][1]  # rows 8, 9 and two repeats of row 9, all in map row 3
  assert groups.tolist() == [3, 3] and slot[0].tolist() == [0, 1, 0] and pick.tolist() == [0, 1, 1, 1]
  with pytest.raises(ValueError, match="has 3 positions"):
    clit_tables.axis_plan(coords.make_coord_f32(10), 4, np.arange(4), 2)
  with pytest.raises(ValueError, match=r"positions \[8, 9\] have their nearest pixel outside"):
    clit_tables.axis_plan(coords.make_coord_f32(10), 4, np.arange(3), 3)
  with pytest.raises(ValueError, match="repeat a feature pixel"):
    clit_tables.axis_plan(coords.make_coord_f32(10), 4, np.array([0, 1, 2, 3, 3]), 3)


@pytest.mark.parametrize("case", ["grid", "cascade"])  # cascade: about 13 s on 2 CPU cores
def test_band_decoding_matches_official_fixture_on_the_full_grid(case, official, converted):
  """`query_band` (first Linear factored per feature pixel) on all 6417 / 102672 queries of the fixture grids,
  in the bands of `inference.upscale`'s default chunk."""
  _, ref = official
  config, params = converted
  model = clit.from_config(config)
  out_hw = tuple(int(v) for v in ref[f"stage_hw_{case}"][-1])
  scales = tuple(float(s) for s in ref[f"scales_{case}"])
  out, kwargs = _decode_bands(model, params, ref["lr"], out_hw, 65536, factored=(True,) * len(scales))
  assert kwargs["scales"] == scales  # the decomposition of the size ratio is the official one here
  err = np.abs(out.reshape(-1, 3) - ref[f"pred_{case}"]).max()
  assert err <= 1e-5, err


def test_inference_band_decoding_equals_point_queries():
  """CLIT3 at x18: stages [4, 4, 1.125] with 324, 20 and 1.3 output pixels per feature pixel."""
  # factor_threshold() = 128 * 4 heads / base_dim 16 = 32 pixels: the first stage factored, the others by points.
  num_stages, lr_hw, out_hw, factored = 3, (3, 4), (54, 72), (True, False, False)
  model = _small(num_stages)
  lr, q, cells = _inputs(*lr_hw)
  params = _init(model, lr, q, cells)  # a one-stage init call creates every stage
  assert model.band_layout(lr_hw, out_hw, 512)[0]["factored"] == factored
  bands = inference.upscale(model, params, lr[0], *out_hw, chunk=512)
  points = inference.upscale(model, params, lr[0], *out_hw, chunk=512, band_decoding=False)
  assert np.abs(bands - points).max() <= 2e-6
  # Every stage factored (the last one's layout: 2 slots a row and a column for 1.125 pixels), unclipped,
  # against `query` on the whole grid.
  out, _ = _decode_bands(model, params, lr[0], out_hw, 512, factored=(True,) * num_stages)
  flat = np.arange(out_hw[0] * out_hw[1])
  q = coords.grid_xy_f32(flat // out_hw[1], flat % out_hw[1], *out_hw)[None]
  cells = np.broadcast_to(np.array([2 / out_hw[1], 2 / out_hw[0]], np.float32), q.shape)
  scales = model.query_kwargs(lr_hw, out_hw)["scales"]
  ref = jax.jit(lambda p, x, c, e: model.apply({"params": p}, x, c, e, scales=scales))(params, lr[:1], q, cells)
  assert np.abs(out.reshape(-1, 3) - np.asarray(ref)[0]).max() <= 2e-6
  # Bands of rows stream the same output whatever their height.
  streamed = np.concatenate([b for _, b in inference.upscale_rows(model, params, lr[0], *out_hw, chunk=512, rows=7)])
  np.testing.assert_array_equal(streamed, bands)


def test_stage_block_is_the_whole_map_cut_to_its_rows():
  """Blocks at the top edge, inside and at the bottom edge against `_stage_maps` of the whole 24 x 20 grid."""
  model = _small(3)
  lr, q, cells = _inputs(6, 5)
  params = _init(model, lr, q, cells)
  feats = _encoder(model, (4.0, 4.0))(params, jnp.asarray(lr[:1]))
  whole = feats["stages"][1]
  assert whole["v"].shape == (1, 24, 20, 16)
  for row0 in (0, 9, 17):
    block = model.apply({"params": params}, feats["feat"], np.int32(row0), stage=1, hw=(24, 20), rows=7,
                        method=model.stage_block)
    assert int(block["row0"]) == row0
    for name in ("q", "k", "v"):
      np.testing.assert_allclose(block[name], whole[name][:, row0:row0 + 7], rtol=0, atol=2e-6)
  with pytest.raises(ValueError, match="stage=0 must be >= 1"):
    model.apply({"params": params}, feats["feat"], np.int32(0), stage=0, hw=(6, 5), rows=3, method=model.stage_block)


@pytest.mark.parametrize("factor_all", [False, True])
def test_band_decoding_with_stage_maps_in_blocks_equals_point_queries(factor_all, monkeypatch):
  """CLIT3 at x16 (stages [4, 4]) with the second stage's 24-row maps forced into blocks of 14 rows (twice a band's
  one feature row and 2 x 3 neighbours): the same output as point queries on whole maps, and less held memory."""
  model = _small(3)
  lr_hw, out_hw = (6, 5), (96, 80)
  lr, q, cells = _inputs(*lr_hw)
  params = _init(model, lr, q, cells)
  if factor_all:
    monkeypatch.setattr(clit.CLIT, "factor_min_queries", 1.0)
  points = inference.upscale(model, params, lr[0], *out_hw, chunk=512, band_decoding=False)
  assert model.band_layout(lr_hw, out_hw, 512)[0]["windows"] == (0, 0)  # 24 x 20 x 16 maps: far below 256 MiB
  whole = inference.decode_bytes(model, params, lr_hw, out_hw, 512)
  monkeypatch.setattr(clit.CLIT, "stage_maps_max_bytes", 0)
  monkeypatch.setattr(clit.CLIT, "stage_block_bytes", 1)  # blocks as small as a band allows
  kwargs, _, bands = model.band_layout(lr_hw, out_hw, 512)
  assert kwargs["windows"] == (0, 14) and len(bands) > 1  # stage 0 (the LR grid) is never cut
  blocks = inference._band_setup(model, params, lr[0], *out_hw, 512, 1.0)[1]
  for _, plans in bands:
    feats = blocks(plans)
    assert feats["stages"][1]["v"].shape == (1, 14, 20, 16) and feats["stages"][0]["v"].shape == (1, 6, 5, 16)
  assert blocks.made > 1  # the bands moved down the grid past one block
  out = inference.upscale(model, params, lr[0], *out_hw, chunk=512)
  assert np.abs(out - points).max() <= 2e-6
  # Hand count: the normalised LR (3 channels), init_feat and stage 0's q, k, v (16 each) on the 6 x 5 LR grid;
  # stage 1's 24 x 20 q, k, v before, two 14-row blocks (and their int32 row0) now.
  lr_grid = 6 * 5 * (3 + 16 + 3 * 16)
  assert whole[0] == 4 * (lr_grid + 3 * 24 * 20 * 16)
  features, _ = inference.decode_bytes(model, params, lr_hw, out_hw, 512)
  assert features == 4 * lr_grid + 2 * (4 * 3 * 14 * 20 * 16 + 4)


@pytest.mark.parametrize("num_stages,lr_hw,out_hw", [(1, (6, 8), (48, 64)), (3, (3, 4), (54, 72))])
def test_band_call_needs_no_more_memory_than_a_chunk_of_points(num_stages, lr_hw, out_hw):
  """XLA's memory analysis of one band call against one chunk of point queries (LIT x8; CLIT3 x18)."""
  model = _small(num_stages)
  lr, q, cells = _inputs(*lr_hw)
  params = _init(model, lr, q, cells)
  chunk = 1024  # a third of LIT's 3072 output pixels, a quarter of CLIT3's 3888
  band = benchmarking.upscale_call_peak_bytes(model, params, lr[0], *out_hw, chunk=chunk)
  points = benchmarking.upscale_call_peak_bytes(model, params, lr[0], *out_hw, chunk=chunk, band_decoding=False)
  if band is None or points is None:
    pytest.skip("this backend has no memory analysis")
  kwargs, _, bands = model.band_layout(lr_hw, out_hw, chunk)
  assert any(kwargs["factored"]) and len(bands) > 1  # a factored stage, and more than one band
  assert band <= points, (band, points)
  with pytest.raises(ValueError, match="chunk=0 > 0"):
    benchmarking.upscale_call_peak_bytes(model, params, lr[0], *out_hw, chunk=0)
