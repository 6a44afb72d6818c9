"""Tests for LIIF (models/liif.py, models/rdn.py, convert/liif.py): official fixtures, a NumPy decoder, hand cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inrsr import coords
from inrsr.convert import liif as convert_liif
from inrsr.models import edsr, liif, rdn, sampling


def _fixture(shared, name):
  from inrsr.convert import pth
  folder = shared / "fixtures" / "liif"
  return pth.load(folder / f"{name}.pth"), np.load(folder / f"{name}.npz")


@pytest.mark.parametrize("name,winograd", [("edsr_baseline_liif", False), ("edsr_baseline_liif", True),
                                           ("rdn_a_liif", False)])
def test_matches_official_fixture(name, winograd, shared, monkeypatch):
  """With `winograd`, every 3x3 convolution of EDSR and the first-layer projection through the Winograd op on CPU
  (the lower size limit off: the fixture's input is under it)."""
  if winograd:
    monkeypatch.setattr(edsr, "WINOGRAD_MIN_ELEMENTS", 0)
  checkpoint, ref = _fixture(shared, name)
  config, params = convert_liif.convert(checkpoint)
  assert config["name"] == "liif"
  if name.startswith("rdn"):
    assert config["encoder"] == "rdn"
    assert config["encoder_args"] == {"D": 20, "C": 6, "G": 32, "G0": 64, "kernel_size": 3}
  else:
    assert config["encoder"] == "edsr-baseline"
    assert config["encoder_args"]["n_resblocks"] == 16
  model = liif.from_config(config)
  run = jax.jit(lambda p, lr, c, e: model.apply({"params": p}, lr, c, e))
  for case in ("grid", "rand"):
    coords = ref[f"coord_{case}"][None, :, ::-1]  # official (y, x) -> inrsr (x, y)
    cells = ref[f"cell_{case}"][None, :, ::-1]
    pred = np.asarray(run(params, ref["lr"][None], coords, cells))[0]
    err = np.abs(pred - ref[f"pred_{case}"]).max()
    print(f"{name} {case}: max abs error {err:.3g}")
    assert err <= 1e-5, (name, case, err)


def test_make_coord_is_bit_exact_with_official_grid(shared):
  _, ref = _fixture(shared, "edsr_baseline_liif")
  grid = ref["coord_grid"].reshape(57, 77, 2)  # official make_coord((57, 77)), computed by torch in float32
  np.testing.assert_array_equal(coords.make_coord_f32(57), grid[:, 0, 0])
  np.testing.assert_array_equal(coords.make_coord_f32(77), grid[0, :, 1])


def test_nearest_index_rounds_ties_to_even_and_flags_out_of_range():
  # Unnormalised positions (c + 1) * n / 2 - 0.5: n=2, c=0 -> 0.5 -> 0; n=4, c=0 -> 1.5 -> 2; n=4, c=-0.5 -> 0.5 -> 0.
  idx, valid = sampling.nearest_index(jnp.array([0.0, 0.5, -1.0, 1.0, -1.5]), 2)
  np.testing.assert_array_equal(idx, [0, 1, 0, 2, -1])  # -1 -> -0.5 -> -0 (in range); 1 -> 1.5 -> 2 (out)
  np.testing.assert_array_equal(valid, [True, True, True, False, False])
  idx, _ = sampling.nearest_index(jnp.array([0.0, -0.5, 0.5]), 4)
  np.testing.assert_array_equal(idx, [2, 0, 2])


def test_local_ensemble_weights_by_hand():
  # 2x2 latents with value 10*i + j, a linear MLP that outputs the latent's value, query (x, y) = (0.2, -0.1).
  # Latent centres are +-0.5 (spacing 1); the diagonal-area weights are the bilinear weights
  # (1 - |dy|)(1 - |dx|): latent (0,0) 0.6*0.3 = 0.18, (0,1) 0.6*0.7 = 0.42, (1,0) 0.4*0.3 = 0.12,
  # (1,1) 0.4*0.7 = 0.28, so the blend is 0*0.18 + 1*0.42 + 10*0.12 + 11*0.28 = 4.7, de-normalised 2.85.
  feat = jnp.array([[0.0, 1.0], [10.0, 11.0]])[None, :, :, None]
  kernel = np.zeros((3, 3), np.float32)
  kernel[0, 0] = 1.0  # inputs: [latent, rel_y, rel_x]
  params = {"imnet_0": {"kernel": kernel, "bias": np.zeros(3, np.float32)}}
  q = jnp.array([[[0.2, -0.1]]])
  for ensemble, want in ((True, 4.7), (False, 1.0)):  # without the ensemble: nearest latent (0, 1)
    model = liif.LIIF(hidden_list=(), feat_unfold=False, cell_decode=False, local_ensemble=ensemble)
    out = model.apply({"params": params}, {"feat": feat}, q, None, method="query")
    np.testing.assert_allclose(out[0, 0, 0], want * 0.5 + 0.5, atol=1e-5)
  # rel_coord fed to the MLP: (y, x) offsets from the chosen latent in units where one latent is 2.
  kernel = np.zeros((3, 3), np.float32)
  kernel[1, 0], kernel[2, 1] = 1.0, 1.0
  params = {"imnet_0": {"kernel": kernel, "bias": np.zeros(3, np.float32)}}
  model = liif.LIIF(hidden_list=(), feat_unfold=False, cell_decode=False, local_ensemble=False)
  out = model.apply({"params": params}, {"feat": feat}, q, None, method="query")
  np.testing.assert_allclose(out[0, 0, :2], np.array([(-0.1 + 0.5) * 2, (0.2 - 0.5) * 2]) * 0.5 + 0.5, atol=1e-6)


def _numpy_decoder(feat, mlp, coord_yx, cell_yx, local_ensemble, feat_unfold, cell_decode):
  """The official query_rgb written out in float64 NumPy: NCHW unfold loop, grid_sample nearest, ensemble."""
  feat = np.transpose(np.asarray(feat, np.float64)[0], (2, 0, 1))  # (C, H, W)
  c, h, w = feat.shape
  if feat_unfold:
    unfolded = np.zeros((c * 9, h, w))
    for ch in range(c):
      for ki in range(3):
        for kj in range(3):
          for i in range(h):
            for j in range(w):
              y, x = i + ki - 1, j + kj - 1
              if 0 <= y < h and 0 <= x < w:
                unfolded[ch * 9 + ki * 3 + kj, i, j] = feat[ch, y, x]
    feat = unfolded
  centres_y = -1 + (2 * np.arange(h) + 1) / h
  centres_x = -1 + (2 * np.arange(w) + 1) / w

  def sample(grid_x, grid_y):
    ix = np.rint(((grid_x + 1) * w - 1) / 2).astype(int)
    iy = np.rint(((grid_y + 1) * h - 1) / 2).astype(int)
    ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    ix, iy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    q_feat = np.where(ok[:, None], feat[:, iy, ix].T, 0.0)
    q_coord = np.where(ok[:, None], np.stack([centres_y[iy], centres_x[ix]], -1), 0.0)
    return q_feat, q_coord

  shifts, eps = ([-1, 1], 1e-6) if local_ensemble else ([0], 0.0)
  preds, areas = [], []
  for vx in shifts:
    for vy in shifts:
      c_ = coord_yx.astype(np.float64).copy()
      c_[:, 0] += vx / h + eps
      c_[:, 1] += vy / w + eps
      c_ = np.clip(c_, -1 + 1e-6, 1 - 1e-6)
      q_feat, q_coord = sample(c_[:, 1], c_[:, 0])
      rel = (coord_yx - q_coord) * np.array([h, w])
      inp = [q_feat, rel] + ([cell_yx * np.array([h, w])] if cell_decode else [])
      preds.append(mlp(np.concatenate(inp, -1)))
      areas.append(np.abs(rel[:, 0] * rel[:, 1]) + 1e-9)
  tot = np.sum(areas, 0)
  if local_ensemble:
    areas = areas[::-1]
  return sum(p * (a / tot)[:, None] for p, a in zip(preds, areas)) * 0.5 + 0.5


@pytest.mark.parametrize("flags", [(True, True, True), (False, True, True), (True, False, True),
                                   (True, True, False), (False, False, False)])
def test_decoder_matches_numpy_reference(flags):
  local_ensemble, feat_unfold, cell_decode = flags
  model = liif.LIIF(encoder_args={"n_resblocks": 1, "n_feats": 4}, hidden_list=(16, 16),
                    local_ensemble=local_ensemble, feat_unfold=feat_unfold, cell_decode=cell_decode)
  rng = np.random.default_rng(0)
  h, w, q = 5, 7, 300
  coords = rng.uniform(-1, 1, size=(1, q, 2)).astype(np.float32)
  coords[0, :4] = [[-1, -1], [1, 1], [-1, 1], [0.999999, 0.0]]
  cells = np.broadcast_to(np.float32([2 / (w * 2.7), 2 / (h * 2.7)]), (1, q, 2))
  in_dim = 4 * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
  dims = [in_dim, 16, 16, 3]
  params = {f"imnet_{i}": {"kernel": rng.normal(0, 1.5 / np.sqrt(a), size=(a, b)).astype(np.float32),
                           "bias": rng.normal(0, 0.1, size=b).astype(np.float32)}
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))}  # query needs only the MLP's params
  feat = rng.normal(size=(1, h, w, 4)).astype(np.float32)
  out = np.asarray(model.apply({"params": params}, {"feat": feat}, coords, cells, method="query"))[0]

  layers = [(np.asarray(params[f"imnet_{i}"]["kernel"], np.float64), np.asarray(params[f"imnet_{i}"]["bias"]))
            for i in range(3)]

  def mlp(x):
    for k, b in layers[:-1]:
      x = np.maximum(x @ k + b, 0)
    return x @ layers[-1][0] + layers[-1][1]

  want = _numpy_decoder(feat, mlp, coords[0, :, ::-1], cells[0, :, ::-1], *flags)
  assert want.std() > 0.1
  np.testing.assert_allclose(out, want, atol=1e-5)


def _tiny_official_sd(encoder="edsr-baseline"):
  """A small state_dict in the official LIIF layout (random values; PyTorch shapes)."""
  rng = np.random.default_rng(1)
  sd = {}

  def add(prefix, *shape):
    sd[f"{prefix}.weight"] = rng.normal(size=shape).astype(np.float32)
    sd[f"{prefix}.bias"] = rng.normal(size=shape[:1]).astype(np.float32)

  if encoder == "rdn":
    add("encoder.SFENet1", 8, 3, 3, 3)
    add("encoder.SFENet2", 8, 8, 3, 3)
    for i in range(2):
      for j in range(3):
        add(f"encoder.RDBs.{i}.convs.{j}.conv.0", 4, 8 + 4 * j, 3, 3)
      add(f"encoder.RDBs.{i}.LFF", 8, 20, 1, 1)
    add("encoder.GFF.0", 8, 16, 1, 1)
    add("encoder.GFF.1", 8, 8, 3, 3)
  else:
    add("encoder.sub_mean", 3, 3, 1, 1)
    add("encoder.add_mean", 3, 3, 1, 1)
    add("encoder.head.0", 8, 3, 3, 3)
    add("encoder.body.0.body.0", 8, 8, 3, 3)
    add("encoder.body.0.body.2", 8, 8, 3, 3)
    add("encoder.body.1", 8, 8, 3, 3)
  add("imnet.layers.0", 16, 8 * 9 + 4)
  add("imnet.layers.2", 3, 16)
  args = {"encoder_spec": {"name": encoder, "args": {"no_upsampling": True}},
          "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}}
  return {"model": {"name": "liif", "args": args, "sd": sd}, "optimizer": {}, "epoch": 1}


def test_convert_infers_sizes_from_state_dict():
  config, params = convert_liif.convert(_tiny_official_sd("rdn"))
  assert config["encoder_args"] == {"D": 2, "C": 3, "G": 4, "G0": 8, "kernel_size": 3}
  assert config["hidden_list"] == [16]
  sd = _tiny_official_sd("rdn")["model"]["sd"]
  # OIHW -> HWIO and (out, in) -> (in, out), read at one element each.
  kernel = params["encoder_net"]["RDB_1_conv_2"]["kernel"]
  assert kernel[2, 0, 5, 3] == sd["encoder.RDBs.1.convs.2.conv.0.weight"][3, 5, 2, 0]
  assert params["imnet_0"]["kernel"][70, 9] == sd["imnet.layers.0.weight"][9, 70]
  config, params = convert_liif.convert(_tiny_official_sd())
  assert config["encoder_args"] == {"n_resblocks": 1, "n_feats": 8, "res_scale": 1.0}
  assert sorted(params["encoder_net"]) == ["body_0_conv1", "body_0_conv2", "body_out", "head"]


def _edit(checkpoint, fn):
  fn(checkpoint["model"])
  return checkpoint


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(name="metasr"), "reads only 'liif'"),
    (lambda m: m.pop("sd"), "lacks \\['sd'\\]"),
    (lambda m: m["sd"].pop("imnet.layers.2.bias"), "imnet.layers.2.bias"),
    (lambda m: m["sd"].pop("encoder.body.0.body.2.weight"), "encoder.body.0.body.2.weight"),
    (lambda m: m["sd"].update({"encoder.tail.0.weight": np.zeros((3, 8, 3, 3), np.float32)}), "encoder.tail.0.weight"),
    (lambda m: m["sd"].update({"imnet.layers.0.weight": np.zeros((16, 70), np.float32)}), "expected \\(76, 16\\)"),
    (lambda m: m["args"]["encoder_spec"].update(name="rcan"), "'rcan' is not supported"),
    (lambda m: m["args"]["encoder_spec"]["args"].update(no_upsampling=False), "upsampler"),
])
def test_foreign_layout_is_a_clear_value_error(edit, message):
  with pytest.raises(ValueError, match=message):
    convert_liif.convert(_edit(_tiny_official_sd(), edit))
  with pytest.raises(ValueError, match="official LIIF checkpoint"):
    convert_liif.convert({"state_dict": {}})


def test_rdn_shape_mismatch_names_the_param():
  checkpoint = _tiny_official_sd("rdn")
  checkpoint["model"]["sd"]["encoder.RDBs.1.LFF.weight"] = np.zeros((8, 24, 1, 1), np.float32)
  with pytest.raises(ValueError, match="RDB_1_LFF"):
    convert_liif.convert(checkpoint)


def test_from_config_rejects_unknown_fields_and_encoders():
  with pytest.raises(ValueError, match="unknown model config fields \\['depth'\\]"):
    liif.from_config({"name": "liif", "depth": 3})
  with pytest.raises(ValueError, match="encoder='swin'"):
    liif.from_config({"encoder": "swin"})
  with pytest.raises(ValueError, match="unknown RDN fields \\['growth'\\]"):
    liif.from_config({"encoder": "rdn", "encoder_args": {"D": 2, "growth": 3}})
  with pytest.raises(ValueError, match="unknown EDSR fields \\['D'\\]"):
    liif.from_config({"encoder_args": {"D": 2}})
  model = liif.from_config({"encoder": "rdn", "encoder_args": {"config": "A"}, "hidden_list": [8]})
  assert hash(model) == hash(liif.LIIF(encoder="rdn", encoder_args={"config": "A"}, hidden_list=(8,)))
  assert rdn.from_fields(config="A") == rdn.RDN(D=20, C=6, G=32)


def _numpy_bilinear_border(img, x, y):
  """grid_sample(bilinear, padding 'border', align_corners=False) of img (h, w, C) at (x, y) in [-1, 1], float64."""
  h, w, _ = img.shape
  fx = np.clip((x + 1) * w / 2 - 0.5, 0, w - 1)
  fy = np.clip((y + 1) * h / 2 - 0.5, 0, h - 1)
  out = []
  for px, py in zip(fx, fy):
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = px - x0, py - y0
    out.append((1 - ay) * ((1 - ax) * img[y0, x0] + ax * img[y0, x1]) + ay * ((1 - ax) * img[y1, x0] + ax * img[y1, x1]))
  return np.array(out)


def test_bilinear_skip_adds_the_bilinear_upsampling_of_the_lr():
  rng = np.random.default_rng(3)
  lr = rng.uniform(size=(1, 5, 7, 3)).astype(np.float32)
  q = rng.uniform(-1, 1, size=(1, 200, 2)).astype(np.float32)
  q[0, :3] = [[-1, -1], [1, 1], [0.99, -0.97]]  # corners: the border padding clamps
  cells = np.full((1, 200, 2), 0.1, np.float32)
  plain = liif.LIIF(encoder_args={"n_resblocks": 1, "n_feats": 4}, hidden_list=(8,))
  params = jax.jit(plain.init)(jax.random.key(0), jnp.asarray(lr), jnp.asarray(q), jnp.asarray(cells))
  with_skip = liif.LIIF(encoder_args={"n_resblocks": 1, "n_feats": 4}, hidden_list=(8,), skip="bilinear")
  skipped, unskipped = (np.asarray(jax.jit(m.apply)(params, lr, q, cells)) for m in (with_skip, plain))
  diff = skipped - unskipped
  # (pred + bilinear(2 lr - 1)) * 0.5 + 0.5 - (pred * 0.5 + 0.5) = bilinear(lr) - 0.5.
  want = _numpy_bilinear_border(lr[0].astype(np.float64), q[0, :, 0], q[0, :, 1]) - 0.5
  assert np.abs(want).max() > 0.3
  np.testing.assert_allclose(diff[0], want, atol=1e-5)
  with pytest.raises(ValueError, match="skip='bicubic' must be one of"):
    liif.from_config({"skip": "bicubic"})
