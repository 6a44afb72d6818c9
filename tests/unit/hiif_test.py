"""HIIF: equality with the official code on the shared fixture, plus hand-worked checks of its parts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inrsr import models
from inrsr.convert import hiif as convert_hiif
from inrsr.models import hiif

SMALL = dict(encoder_args=(("n_feats", 8), ("n_resblocks", 1)), hidden_dim=32, heads=4, n_hi_layers=3,
             mlp_hidden=16)


@pytest.fixture(scope="module")
def official(shared):
  fixture = shared / "fixtures" / "hiif"  # `shared` skips, or fails under CI, when ../shared is absent
  from inrsr.convert import pth
  config, params = convert_hiif.convert(pth.load(fixture / "edsr_baseline_hiif.pth"))
  data = dict(np.load(fixture / "edsr_baseline_hiif.npz"))
  model = hiif.from_config(config)
  variables = {"params": jax.tree.map(jnp.asarray, params)}
  feats = jax.jit(lambda v, lr: model.apply(v, lr, method=hiif.HIIF.encode))(variables, data["lr"][None])
  return config, model, variables, feats, data


def test_convert_config(official):
  config, model, variables, _, _ = official
  assert config == {"name": "hiif", "encoder": "edsr-baseline", "encoder_args": {"n_resblocks": 16, "n_feats": 64},
                    "hidden_dim": 256, "heads": 16, "n_attn_blocks": 2, "n_hi_layers": 6, "mlp_hidden": 256}
  n = sum(int(x.size) for x in jax.tree.leaves(variables))
  assert n == 2_955_511 - 24  # the official count less EDSR's unused MeanShift (2 x (9 + 3))
  assert hiif.param_count(model) == n


@pytest.mark.parametrize("case", ["grid", "clip"])
def test_matches_official(official, case):
  _, model, variables, feats, d = official
  h, w = (int(v) for v in d[f"hw_{case}"])
  assert int(d[f"chunk_rows_{case}"]) == h  # the whole grid is one chunk, as this test queries it
  coords = np.ascontiguousarray(d[f"coord_{case}"][:, ::-1])[None]  # official (y, x) -> inrsr (x, y)
  np.testing.assert_array_equal(coords[0], hiif.make_coord_grid(h, w))
  cell_raw = np.ascontiguousarray(d[f"cell_raw_{case}"][::-1])
  cells = hiif.clip_cell(cell_raw, float(d[f"scale_{case}"]))
  np.testing.assert_array_equal(cells, d[f"cell_{case}"][::-1])
  # The model's test-time rule, from the LR and output sizes alone, is the official factor (1 or 1.75).
  assert models.cell_scale(model, d["lr"].shape[:2], (h, w)) == float(d[f"clip_{case}"])
  cells = np.broadcast_to(cells, coords.shape)

  @jax.jit
  def run(v, f, c, s):
    return model.apply(v, f, c, method=hiif.HIIF.local_coord), model.apply(v, f, c, s, method=hiif.HIIF.query)

  local, pred = run(variables, feats, coords, cells)
  # local_coord (compute_hi_coord's input) first: its float32 bits decide the discontinuous hierarchical code.
  np.testing.assert_array_equal(np.asarray(local[0]), d[f"local_{case}"])
  err = np.abs(np.asarray(pred[0]) - d[f"pred_{case}"]).max(-1)
  tie = d[f"tie_{case}"]
  print(f"{case}: max abs error {err.max():.3g} (non-tie {err[~tie].max():.3g}, "
        f"tie {err[tie].max() if tie.any() else 0:.3g}, {tie.sum()} tie queries of {tie.size})")
  assert err.max() <= 1e-5


@pytest.mark.parametrize("keep", [True, False])
def test_query_global_matches_official_one_chunk(official, keep):
  # The official one-chunk result of the whole grid, computed 1200 queries at a time (4 chunks, the last padded),
  # with each chunk's activations kept between the passes or recomputed in each.
  _, model, variables, feats, d = official
  coords = np.ascontiguousarray(d["coord_grid"][:, ::-1])[None]
  cells = np.ascontiguousarray(d["cell_grid"][::-1])[None]
  pred = hiif.query_global(model, variables, feats, coords, cells, chunk=1200, keep=keep)
  err = np.abs(pred[0] - d["pred_grid"]).max()
  print(f"query_global grid ({keep=}): max abs error {err:.3g}")
  assert err <= 1e-5


def test_compute_hi_coord_bits():
  # 0.3 = 0.0100110011..._2: levels 0..5 read binary digits 1..6 of each coordinate.
  local = jnp.array([[0.3, 0.75], [0.5, -0.2], [1.5, 0.0]], jnp.float32)
  bits = np.stack([np.asarray(hiif.compute_hi_coord(local, n)) for n in range(6)], axis=1)
  np.testing.assert_array_equal(bits[0, :, 0], [0, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(bits[0, :, 1], [1, 1, 0, 0, 0, 0])  # 0.11_2
  # 0.5 - 1e-9 is 0.5 in float32 (as in the official float32 run): digit 1 is 1, the rest 0.
  np.testing.assert_array_equal(bits[1, :, 0], [1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(bits[1, :, 1], [0] * 6)  # negative -> clipped to 0
  np.testing.assert_array_equal(bits[2, :, 0], [0] * 6)  # above 1 -> clipped to 1 -> floor(2^k) even
  np.testing.assert_array_equal(bits[2, :, 1], [0] * 6)


def _layer_norm(x, p, eps=1e-5):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _gelu(x):
  from math import erf
  return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def _random_params(module, *args, seed=0):
  """Random parameters of the right shapes without compiling `module.init` (slow on a loaded CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32), shapes)


def test_linear_attention_against_numpy():
  dim, heads, b, q = 12, 3, 2, 7
  block = hiif.LinearAttention(dim, heads)
  x = jax.random.normal(jax.random.key(1), (b, q, dim))
  params = _random_params(block, x)["params"]
  got = np.asarray(jax.jit(block.apply)({"params": params}, x))

  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  xs = np.asarray(x, np.float64)
  hc = dim // heads
  want = np.zeros_like(xs)
  for bi in range(b):
    qkv = xs[bi] @ p["qkv_proj"]["kernel"] + p["qkv_proj"]["bias"]  # (q, 3 dim)
    o = np.zeros((q, dim))
    for hd in range(heads):
      chunk = qkv[:, hd * 3 * hc:(hd + 1) * 3 * hc]  # official: reshape (q, heads, 3 hc), then chunk(3)
      qh, kh, vh = chunk[:, :hc], _layer_norm(chunk[:, hc:2 * hc], p["kln"]), _layer_norm(chunk[:, 2 * hc:], p["vln"])
      for i in range(q):  # o_i = sum_n (q_i . k_n) v_n / q
        o[i, hd * hc:(hd + 1) * hc] = sum((qh[i] @ kh[n]) * vh[n] for n in range(q)) / q
    ret = o + xs[bi]
    y = _gelu(ret @ p["proj1"]["kernel"] + p["proj1"]["bias"]) @ p["proj2"]["kernel"] + p["proj2"]["bias"]
    want[bi] = y + xs[bi]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_query_mask_and_cell_shapes():
  model = hiif.HIIF(**SMALL)
  rng = np.random.default_rng(0)
  lr = jnp.asarray(rng.uniform(0, 1, (2, 5, 6, 3)), jnp.float32)
  coords = jnp.asarray(rng.uniform(-1, 1, (2, 9, 2)), jnp.float32)
  cells = jnp.broadcast_to(jnp.array([2 / 13, 2 / 11], jnp.float32), (2, 9, 2))
  variables = _random_params(model, lr, coords, cells)
  pad = jnp.concatenate([coords, jnp.zeros((2, 4, 2))], axis=1)
  pcell = jnp.concatenate([cells, jnp.zeros((2, 4, 2))], axis=1)
  mask = jnp.broadcast_to(jnp.arange(13)[None, :] < 9, (2, 13))

  @jax.jit
  def run(v):  # one compilation for every variant (compiling is the slow part on a shared CPU)
    feats = model.apply(v, lr, method=hiif.HIIF.encode)
    return (model.apply(v, lr, coords, cells), model.apply(v, lr, coords, cells[:, 0]),
            model.apply(v, lr, pad, pcell, mask), model.apply(v, lr, pad, pcell),
            model.apply(v, feats, coords, cells, method=hiif.HIIF.query))

  out, out_cell2, masked, unmasked, split = (np.asarray(a) for a in run(variables))
  assert out.shape == (2, 9, 3)
  np.testing.assert_allclose(out_cell2, out, atol=1e-6)  # a (B, 2) cell is every query's cell
  # Padding queries behind a mask leave the valid queries' outputs unchanged...
  np.testing.assert_allclose(masked[:, :9], out, atol=1e-5)
  # ...while without the mask the attention mixes them in (official behaviour: chunking changes outputs).
  assert np.abs(unmasked[:, :9] - out).max() > 1e-4
  np.testing.assert_allclose(split, out, atol=1e-6)  # encode then query equals __call__


def test_config_and_convert_errors():
  with pytest.raises(ValueError, match="bogus"):
    hiif.from_config({"name": "hiif", "bogus": 1})
  model = hiif.from_config({"name": "hiif", "hidden_dim": 32, "heads": 4, "encoder_args": {"n_feats": 8}})
  assert model.encoder_args == (("n_feats", 8),) and model.heads == 4
  with pytest.raises(ValueError, match="not 'hiif'"):
    convert_hiif.convert({"model": {"name": "liif", "args": {}, "sd": {}}})
  with pytest.raises(ValueError, match="official HIIF"):
    convert_hiif.convert({"state_dict": {}})
  with pytest.raises(ValueError, match="layout"):
    convert_hiif.convert({"model": {"name": "hiif", "args": {}, "sd": {"imnet.layers.0.weight": np.zeros((2, 2))}}})


def test_clip_cell():
  cell = np.array([0.02, 0.03], np.float32)
  np.testing.assert_array_equal(hiif.clip_cell(cell, 3.0), cell)
  np.testing.assert_array_equal(hiif.clip_cell(cell, 8.0), cell * np.float32(2.0))
