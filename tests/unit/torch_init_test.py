"""PyTorch's default init for the ported models (`param_init="torch"`): hand-worked bounds and the official init."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from inrsr import models
from inrsr.models import clit, hiif, liif, torch_init


def _flat(model, seed=0):
  return traverse_util.flatten_dict(models.init_params(model, jax.random.key(seed)))


def test_small_liif_bounds_by_hand():
  # Encoder: EDSR with 8 features, one block; decoder input 9 * 8 (unfolded) + 2 (rel coord) + 2 (cell) = 76.
  model = liif.LIIF(encoder_args={"n_feats": 8, "n_resblocks": 1}, hidden_list=(16, 16), param_init="torch")
  flat = _flat(model)
  fan_in = {("encoder_net", "head"): 3 * 3 * 3, ("encoder_net", "body_0_conv1"): 3 * 3 * 8,
            ("imnet_0",): 76, ("imnet_1",): 16, ("imnet_2",): 16}
  for prefix, n in fan_in.items():
    for leaf in ("kernel", "bias"):
      w = np.asarray(flat[prefix + (leaf,)])
      bound = 1 / np.sqrt(n)
      assert np.abs(w).max() <= bound, (prefix, leaf)
      if w.size >= 64:  # a uniform draw of this size fills its range: max |w| > 0.85 bound by 1 - 0.85^64
        assert np.abs(w).max() > 0.85 * bound, (prefix, leaf)
  # flax's LeCun normal (std 1/sqrt(fan_in)) draws beyond that bound in the 76 x 16 layer: the scheme matters.
  flax_w = np.asarray(_flat(liif.LIIF(encoder_args={"n_feats": 8, "n_resblocks": 1}, hidden_list=(16, 16),
                                      param_init="flax"))[("imnet_0", "kernel")])
  assert np.abs(flax_w).max() > 1 / np.sqrt(76)
  assert np.all(np.asarray(_flat(model)[("imnet_0", "bias")]) != 0)  # torch biases are drawn, flax's are 0


def test_layer_norm_left_alone_and_other_leaves():
  model = hiif.HIIF(encoder_args=(("n_feats", 8), ("n_resblocks", 1)), hidden_dim=32, heads=4, n_hi_layers=3,
                    mlp_hidden=16, param_init="torch")
  flat = _flat(model)
  for path, v in flat.items():
    if path[-2] in ("norm", "kln", "vln"):
      np.testing.assert_array_equal(v, 1.0 if path[-1] == "scale" else 0.0)
  # fan_in of the first decoder layer: 4 weighted features of 32 + rel_cell 2 + 2 hierarchical bits = 132.
  w = np.asarray(flat[("fc_layers_0", "fc1", "kernel")])
  assert w.shape == (132, 16) and np.abs(w).max() <= 1 / np.sqrt(132) < 1.2 * np.abs(w).max()


def test_reinit_on_a_hand_built_tree():
  params = {"conv": {"kernel": np.zeros((3, 3, 4, 8), np.float32), "bias": np.zeros((8,), np.float32)},
            "grouped": {"kernel": np.zeros((3, 3, 2, 8), np.float32)},  # 8 channels in 4 groups: 2 in per group
            "norm": {"scale": np.ones((8,), np.float32), "bias": np.zeros((8,), np.float32)},
            "temperature": np.full((2,), 7.0, np.float32)}
  out = torch_init.reinit(params, jax.random.key(0))
  for name, fan_in in (("conv", 36), ("grouped", 18)):
    w = np.asarray(out[name]["kernel"])
    assert w.shape == params[name]["kernel"].shape and 0.9 / np.sqrt(fan_in) < np.abs(w).max() <= 1 / np.sqrt(fan_in)
  b = np.asarray(out["conv"]["bias"])
  assert np.all(b != 0) and np.abs(b).max() <= 1 / 6  # the bias takes its kernel's fan_in, 36
  np.testing.assert_array_equal(out["norm"]["scale"], 1.0)  # a bias without a kernel (LayerNorm) is left alone
  np.testing.assert_array_equal(out["norm"]["bias"], 0.0)
  np.testing.assert_array_equal(out["temperature"], 7.0)


def test_unknown_scheme_is_named():
  with pytest.raises(ValueError, match="param_init='xavier'"):
    liif.LIIF(param_init="xavier")
  for model in (hiif.HIIF(param_init="xavier"), clit.CLIT(param_init="xavier")):
    with pytest.raises(ValueError, match="param_init='xavier'"):
      models.init_params(model, jax.random.key(0))


def test_variances_match_the_official_init(shared):
  """Each layer's weight variance against the HIIF fixture's, whose weights the official code initialised.

  The fixture's generator drew torch's default init, then added 0.01 * N(0, 1) to every weight (fixtures
  README), so its variance is ours + 1e-4. flax's default is 3 times ours and fails this test.
  """
  from inrsr.convert import hiif as convert_hiif
  from inrsr.convert import pth
  config, official = convert_hiif.convert(pth.load(shared / "fixtures" / "hiif" / "edsr_baseline_hiif.pth"))
  official = traverse_util.flatten_dict(official)
  checked = 0
  for scheme, lo, hi in (("torch", 0.9, 1.1), ("flax", 2.5, 3.5)):
    ours = _flat(hiif.from_config({**config, "param_init": scheme}), seed=3)
    assert set(ours) == set(official)
    for path, w in official.items():
      if path[-1] != "kernel" or w.size < 20000:
        continue
      ratio = float(np.var(np.asarray(ours[path]))) / (float(np.var(w)) - 1e-4)
      assert lo < ratio < hi, (scheme, path, ratio)
      checked += 1
  assert checked >= 2 * 30  # the 33 encoder convs, freq, the attention and decoder layers
