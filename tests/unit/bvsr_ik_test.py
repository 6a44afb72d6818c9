"""Tests of the BVSR-IK port (inrsr.models.bvsr_ik / bvsr_ik_layers / spynet, inrsr.convert.bvsr_ik).

The fixture (`../shared/fixtures/bvsr_ik`, README section "bvsr_ik") holds the official model's seeded weights, a
5-frame 36x36 BGR clip, its outputs and the first call of each module's forward hook. Module tests run each
module on the hook inputs; the end-to-end test runs the clip through one compile of the whole model (about 20 s of
CPU) and checks its outputs, `lr_corrs` and module outputs.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from inrsr.convert import bvsr_ik as convert_lib
from inrsr.models import bvsr_ik, bvsr_ik_layers, spynet

T = 5
TOL = 1e-5


def _nhwc(a):
  """Official (..., C, H, W) -> (..., H, W, C)."""
  a = np.asarray(a)
  return np.moveaxis(a, -3, -1)


def _err(got, want):
  return float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())


# ----------------------------------------------------------------------------------------------- no fixture

def test_param_count_and_init_params():
  model = bvsr_ik.KCANet()
  params = bvsr_ik.init_params(model, jax.random.key(0))  # the tree of model.init, from jax.eval_shape
  assert sum(int(x.size) for x in jax.tree.leaves(params)) == 9_304_445
  count = {k: sum(int(x.size) for x in jax.tree.leaves(v)) for k, v in params.items()}
  assert count["SPC"] == 1_202_572 and count["spynet"] == 1_440_300
  assert count["INRAlign_forward"] == count["INRAlign_backward"] == 1_899_009
  assert count["backward_resblocks"] == count["forward_resblocks"] == 858_560 and count["fusion"] == 812_352
  assert sum(int(x.size) for x in jax.tree.leaves(params["SPC"]["inr_conv"])) == 1_051_208
  # PyTorch default init: U(+-1/sqrt(fan_in)); temperatures 1; frequencies linspace(2, 16, 8).
  spc = params["SPC"]
  qkv = params["INRAlign_forward"]["unet_scale_select"]["Encoder_0_0"]["recurr_attn"]["to_qkv"]["kernel"]
  for p, fan_in in ((spc["feat_ext"]["conv_in"]["kernel"], 27), (spc["feat_ext"]["conv_in"]["bias"], 27),
                    (spc["sum"]["kernel"], 168), (spc["unet_basis_select"]["up1"]["kernel"], 32 * 16),
                    (spc["inr_conv"]["atoms_0"]["dense_1"]["kernel"], 360),
                    (qkv, 9)):
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(p).max() <= bound and (p.size < 200 or np.abs(p).max() > 0.9 * bound)
  np.testing.assert_array_equal(spc["unet_basis_select"]["Decoder_1_0"]["recurr_attn"]["temperature"], [1.0])
  np.testing.assert_allclose([spc["inr_conv"][f"atoms_{n}"]["w0"] for n in range(8)], np.linspace(2, 16, 8))


def test_from_config():
  cfg = bvsr_ik.official_config()
  assert cfg.name == "bvsr_ik"
  model = bvsr_ik.from_config(cfg)
  assert model == bvsr_ik.KCANet()
  with pytest.raises(ValueError, match="unknown bvsr_ik model config fields"):
    bvsr_ik.from_config({"dim": 32, "width": 3})
  with pytest.raises(ValueError, match="only 4"):
    bvsr_ik.param_count(bvsr_ik.KCANet(scale=2))


def test_pixel_shuffle_matches_torch_order():
  x = np.random.default_rng(0).normal(size=(1, 2, 3, 8)).astype(np.float32)  # C = 2, r = 2
  out = np.asarray(bvsr_ik_layers.pixel_shuffle(jnp.asarray(x), 2))
  for c in range(2):
    for i in range(2):
      for j in range(2):
        np.testing.assert_array_equal(out[0, i::2, j::2, c], x[0, :, :, c * 4 + i * 2 + j])


def test_conv_transpose_matches_definition():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
  w = rng.normal(size=(2, 5, 4, 4)).astype(np.float32)  # torch (in, out, kh, kw)
  got = bvsr_ik_layers.ConvTranspose4x4(5).apply({"params": {"kernel": w.transpose(2, 3, 0, 1)}}, jnp.asarray(x))
  # torch ConvTranspose2d(k=4, s=2, p=1): scatter x[y, x] * W[:, :, a, b] to (2y - 1 + a, 2x - 1 + b).
  full = np.zeros((1, 2 * 3 + 2, 2 * 4 + 2, 5))
  for yy in range(3):
    for xx in range(4):
      for a in range(4):
        for b in range(4):
          full[0, 2 * yy + a, 2 * xx + b] += x[0, yy, xx] @ w[:, :, a, b]
  np.testing.assert_allclose(got, full[:, 1:-1, 1:-1], atol=1e-5)


@pytest.mark.parametrize("size,mult", [(3, 3), (5, 1), (7, 2)])
def test_depthwise_conv_values_and_gradients(size, mult):
  """`depthwise_conv` (on CPU a sum over the taps) equals a NumPy loop and XLA's grouped convolution, and its
  gradients equal autodiff of the grouped convolution."""
  x = jax.random.normal(jax.random.key(0), (2, 7, 6, 3))
  k = jax.random.normal(jax.random.key(1), (size, size, 1, 3 * mult))
  pad = size // 2
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  want = np.zeros((2, 7, 6, 3 * mult))
  for c in range(3):
    for j in range(mult):
      for a in range(size):
        for b in range(size):
          want[..., c * mult + j] += xp[:, a:a + 7, b:b + 6, c] * float(k[a, b, 0, c * mult + j])
  grouped = bvsr_ik_layers._depthwise_lax  # pylint: disable=protected-access
  np.testing.assert_allclose(bvsr_ik_layers.depthwise_conv(x, k, pad), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grouped(x, k, pad), want, rtol=1e-5, atol=1e-5)
  ref = lambda x, k: jnp.sum(jnp.sin(grouped(x, k, pad)))
  ours = lambda x, k: jnp.sum(jnp.sin(bvsr_ik_layers.depthwise_conv(x, k, pad)))
  for a, b in zip(jax.jit(jax.grad(ref, (0, 1)))(x, k), jax.jit(jax.grad(ours, (0, 1)))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_combiner_skips_the_zero_group():
  """`Combiner` on the products of groups 1..R-1 equals the code's 1x1 conv over all R groups with group 0 zero
  (float64 NumPy), and has the nn.Conv's parameters: same names, shapes and initial values."""
  b, h, w, r, cn, out = 2, 3, 4, 3, 6, 5
  products = jax.random.normal(jax.random.key(0), (b, h, w, (r - 1) * cn))
  combiner = bvsr_ik_layers.Combiner(out, r * cn)
  params = combiner.init(jax.random.key(1), products)["params"]
  conv_params = spynet.conv(out, 1, in_features=r * cn).init(jax.random.key(1), jnp.zeros((1, 1, 1, r * cn)))
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, conv_params["params"])
  np.testing.assert_array_equal(params["kernel"], conv_params["params"]["kernel"])
  np.testing.assert_array_equal(params["bias"], conv_params["params"]["bias"])
  full = np.concatenate([np.zeros((b, h, w, cn)), np.asarray(products, np.float64)], -1)
  want = full @ np.asarray(params["kernel"], np.float64)[0, 0] + np.asarray(params["bias"], np.float64)
  np.testing.assert_allclose(combiner.apply({"params": params}, products), want, rtol=1e-5, atol=1e-5)
  maps = jax.random.normal(jax.random.key(2), (b, h, w, r - 1, cn))
  padded = bvsr_ik_layers.with_zero_group(maps)
  assert padded.shape == (b, h, w, r, cn) and not np.any(padded[:, :, :, 0]) and np.array_equal(padded[:, :, :, 1:], maps)


def _filter_and_combine_numpy(x, atoms, mu, omega, kernel, bias, dout=None):
  """float64 loops: the code's products maps * mu * omega of groups 1..R-1 through the 1x1 rows (group 0 first),
  and, given dout, the gradients of sum(out * dout) with respect to x and the rows."""
  b, h, w, c = x.shape
  n, big = atoms[0].shape[0], atoms[-1].shape[-1]
  p = big // 2
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (p, p), (p, p), (0, 0)))
  rows = kernel.shape[0] - len(atoms) * c * n  # group 0's rows
  prod = np.zeros((b, h, w, len(atoms), c, n))
  for r, a in enumerate(np.asarray(a, np.float64) for a in atoms):
    o = (big - a.shape[-1]) // 2
    for i in range(a.shape[-1]):
      for j in range(a.shape[-1]):
        prod[:, :, :, r] += xp[:, o + i:o + i + h, o + j:o + j + w, :, None] * a[:, i, j]
  coef = np.asarray(mu, np.float64)[..., 1:, None, None] * np.asarray(omega, np.float64)[..., None, None, :]
  rows_k = np.asarray(kernel, np.float64)[rows:]
  out = (prod * coef).reshape(b, h, w, -1) @ rows_k + np.asarray(bias, np.float64)
  if dout is None:
    return out
  dout = np.asarray(dout, np.float64)
  d_rows = (prod * coef).reshape(-1, rows_k.shape[0]).T @ dout.reshape(-1, dout.shape[-1])
  d_prod = (dout @ rows_k.T).reshape(prod.shape) * coef
  d_xp = np.zeros_like(xp)
  for r, a in enumerate(np.asarray(a, np.float64) for a in atoms):
    o = (big - a.shape[-1]) // 2
    for i in range(a.shape[-1]):
      for j in range(a.shape[-1]):
        d_xp[:, o + i:o + i + h, o + j:o + j + w, :] += np.sum(d_prod[:, :, :, r] * a[:, i, j], -1)
  return out, d_xp[:, p:p + h, p:p + w], d_rows


@pytest.mark.parametrize("block_bytes", [None, 1])
def test_filter_and_combine_against_numpy(block_bytes):
  """The one-pass filtering and combination equals float64 loops over the code's products, in one block and in
  blocks of one row (7 rows: 7 blocks), and so do its gradients (with respect to x and the combiner's rows)."""
  b, h, w, c, n, k = 2, 7, 5, 3, 2, 4
  keys = jax.random.split(jax.random.key(3), 7)
  x = jax.random.normal(keys[0], (b, h, w, c))
  atoms = [jax.random.normal(keys[1], (n, 3, 3)), jax.random.normal(keys[2], (n, 5, 5))]
  mu = jax.nn.softmax(jax.random.normal(keys[3], (b, h, w, 3)), -1)
  omega = jax.random.normal(keys[4], (b, h, w, n))
  kernel = jax.random.normal(keys[5], (3 * c * n, k)) * 0.3
  bias = jnp.arange(k, dtype=jnp.float32)
  dout = jax.random.normal(keys[6], (b, h, w, k))
  fn = lambda x, kernel: bvsr_ik_layers.filter_and_combine(x, atoms, mu, omega, kernel, bias, block_bytes)
  want, want_dx, want_drows = _filter_and_combine_numpy(x, atoms, mu, omega, kernel, bias, dout)
  np.testing.assert_allclose(jax.jit(fn)(x, kernel), want, rtol=1e-5, atol=1e-5)
  dx, dk = jax.jit(jax.grad(lambda x, kernel: jnp.sum(fn(x, kernel) * dout), (0, 1)))(x, kernel)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
  assert not np.any(dk[:c * n])  # group 0's rows meet zeros
  np.testing.assert_allclose(dk[c * n:], want_drows, rtol=1e-5, atol=1e-5)


def test_filter_and_combine_blocks_on_cpu_only():
  """Rows go in blocks (a loop) in a program lowered for CPU, in one block for a GPU or TPU."""
  x, mu, omega = jnp.zeros((1, 8, 4, 2)), jnp.zeros((1, 8, 4, 2)), jnp.zeros((1, 8, 4, 2))
  atoms, kernel, bias = [jnp.zeros((2, 3, 3))], jnp.zeros((2 * 2 * 2, 3)), jnp.zeros((3,))
  traced = jax.jit(lambda x: bvsr_ik_layers.filter_and_combine(x, atoms, mu, omega, kernel, bias, 1)).trace(x)
  loops = {p: "stablehlo.while" in traced.lower(lowering_platforms=(p,)).as_text() for p in ("cpu", "cuda", "tpu")}
  assert loops == {"cpu": True, "cuda": False, "tpu": False}


def test_depthwise_conv_branch_follows_the_compile_platform():
  """The tap sum is lowered for CPU only: a program lowered for a GPU or TPU (as `experiments.aot` does on a CPU
  host) gets XLA's grouped convolution."""
  x, k = jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 1, 12))
  traced = jax.jit(lambda x, k: bvsr_ik_layers.depthwise_conv(x, k, 1)).trace(x, k)
  grouped = {p: "feature_group_count = 4" in traced.lower(lowering_platforms=(p,)).as_text()
             for p in ("cpu", "cuda", "tpu")}
  assert grouped == {"cpu": False, "cuda": True, "tpu": True}


def test_resize_and_warp():
  x = jnp.asarray([[0.0, 4.0]])[None, :, :, None]  # (1, 1, 2, 1)
  up = spynet.resize_bilinear(x, (1, 4))
  np.testing.assert_allclose(up[0, 0, :, 0], [0.0, 1.0, 3.0, 4.0])  # half-pixel centres, clamped
  up = spynet.resize_bilinear(x, (1, 3), align_corners=True)
  np.testing.assert_allclose(up[0, 0, :, 0], [0.0, 2.0, 4.0])
  img = jax.random.normal(jax.random.key(0), (1, 5, 6, 2))
  np.testing.assert_allclose(spynet.flow_warp(img, jnp.zeros((1, 5, 6, 2))), img, atol=1e-6)
  shift = jnp.zeros((1, 5, 6, 2)).at[..., 0].set(1.0)  # sample one pixel to the right
  warped = spynet.flow_warp(img, shift, "zeros")
  np.testing.assert_allclose(warped[:, :, :-1], img[:, :, 1:], atol=1e-6)
  np.testing.assert_allclose(warped[:, :, -1], 0.0)
  border = spynet.flow_warp(img, shift, "border")
  np.testing.assert_allclose(border[:, :, -1], img[:, :, -1], atol=1e-6)
  half = spynet.flow_warp(img, shift * 0.5, "zeros")
  np.testing.assert_allclose(half[:, :, :-1], 0.5 * (img[:, :, :-1] + img[:, :, 1:]), atol=1e-6)


def test_convert_rejects_foreign_layouts():
  with pytest.raises(ValueError, match="not a BVSR-IK KCANet state_dict"):
    convert_lib.convert({"encoder.head.0.weight": np.zeros((64, 3, 3, 3), np.float32)})
  with pytest.raises(ValueError, match="state_dict"):
    convert_lib.convert([1, 2])
  # DataParallel prefixes and FMA-Net-style trainer wrappers are unwrapped.
  unwrap = convert_lib._unwrap  # pylint: disable=protected-access
  assert unwrap({"model_R_state_dict": {"module.a.weight": 1}}) == {"a.weight": 1}
  with pytest.raises(ValueError, match="not SpyNet"):
    convert_lib.convert_spynet({"params": {"conv.weight": np.zeros((2, 8, 7, 7), np.float32)}})


# -------------------------------------------------------------------------------------------------- fixture

@pytest.fixture(scope="module")
def fixture(shared):
  from inrsr.convert import pth  # pylint: disable=g-import-not-at-top
  folder = shared / "fixtures" / "bvsr_ik"
  sd = pth.load(folder / "bvsr_ik.pth")
  z = dict(np.load(folder / "bvsr_ik.npz"))
  config, params = convert_lib.convert(sd)
  return {"sd": sd, "z": z, "config": config, "params": params, "lrs": _nhwc(z["lrs"][0])}  # (T, h, w, 3) BGR


@pytest.fixture(scope="module")
def flows(fixture):
  """Official-order SpyNet calls: backward = spynet(frames 0..3, frames 1..4), forward = the reverse."""
  lrs = jnp.asarray(fixture["lrs"])
  ref = jnp.concatenate([lrs[:-1], lrs[1:]])
  supp = jnp.concatenate([lrs[1:], lrs[:-1]])
  fn = jax.jit(lambda p, a, b: spynet.SpyNet().apply({"params": p}, a, b, mutable=["intermediates"]))
  flow, state = fn(fixture["params"]["spynet"], ref, supp)
  return np.asarray(flow), jax.tree.map(np.asarray, state["intermediates"])


@pytest.fixture(scope="module")
def spc(fixture):
  """ISC on all five frames at once, with its sown intermediates."""
  fn = jax.jit(lambda p, x: bvsr_ik_layers.SPCNet().apply({"params": p}, x, mutable=["intermediates"]))
  (out, feat), state = fn(fixture["params"]["SPC"], jnp.asarray(fixture["lrs"]))
  return np.asarray(out), np.asarray(feat), {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}


def test_converted_config(fixture):
  cfg = fixture["config"]
  assert {k: v for k, v in cfg.items() if k != "name"} == {
      k: v for k, v in bvsr_ik.official_config().items() if k in cfg and k != "name"}
  # SpyNet alone, from the KCANet state_dict and from BasicSR's file layout.
  sp = convert_lib.convert_spynet(fixture["sd"])
  basicsr = {"params": {k[len("spynet."):]: v for k, v in fixture["sd"].items()
                        if k.startswith("spynet.basic_module")}}
  sp2 = convert_lib.convert_spynet(basicsr)
  jax.tree.map(np.testing.assert_array_equal, sp, fixture["params"]["spynet"])
  jax.tree.map(np.testing.assert_array_equal, sp2, fixture["params"]["spynet"])
  # A stray or missing key is an error.
  with pytest.raises(ValueError, match="does not use"):
    convert_lib.convert({**fixture["sd"], "extra.weight": np.zeros(3, np.float32)})
  broken = dict(fixture["sd"])
  del broken["fusion.main.2.3.conv2.bias"]
  with pytest.raises(ValueError, match="fusion.main.2.3.conv2.bias"):
    convert_lib.convert(broken)


def test_kernel_dictionary(fixture):
  z = fixture["z"]
  errs = {}
  for mod in ("SPC", "INRAlign_backward", "INRAlign_forward"):
    raw = bvsr_ik_layers.KernelDictionary().apply({"params": fixture["params"][mod]["inr_conv"]},
                                                  method=bvsr_ik_layers.KernelDictionary.raw)
    for s, atoms in zip(bvsr_ik_layers.kernel_sizes(13), raw):
      errs[f"{mod}.s{s}"] = _err(atoms, z[f"dict/{mod}.inr_conv.s{s}"])
  assert max(errs.values()) < 2e-5, errs  # sin(16 x) amplifies float32 rounding: about 5e-6 here


def test_spynet(fixture, flows):
  z = fixture["z"]
  flow, levels = flows
  assert _err(flow[:T - 1], _nhwc(z["hook/spynet"][0])) < TOL  # flows_backward (call 0)
  for l in range(6):
    assert _err(levels[f"level_{l}"][0][:T - 1], _nhwc(z[f"hook/spynet.basic_module.{l}"][0])) < TOL, l
  assert np.abs(flow[T - 1:]).max() > 0.1  # the forward flows are not trivial either


def test_spc_first_call(fixture, spc):
  z = fixture["z"]
  out, feat, hooks = spc
  i = T - 1  # the first SPC call is frame T-1 (backward loop)
  checks = {"feat_ext": "SPC.feat_ext", "unet_basis_select": "SPC.unet_basis_select#0",
            "unet_scale_select": "SPC.unet_scale_select#0", "scale_select": "SPC.scale_select",
            "basis_select": "SPC.basis_select", "sum": "SPC.sum", "out": "SPC#0.0"}
  for k, hook in checks.items():
    assert _err(hooks[f"hook_{k}"][i], _nhwc(z[f"hook/{hook}"][0, 0])) < TOL, k
  maps = np.moveaxis(z["hook/SPC.inr_conv"][0, 0], (0, 1), (2, 3))  # (7, 24, H, W) -> (H, W, 7, 24)
  assert _err(hooks["hook_inr_conv"][i], maps) < TOL
  assert _err(out[i], _nhwc(z["hook/SPC#0.0"][0, 0])) < TOL
  assert _err(feat[i], _nhwc(z["hook/SPC.feat_ext"][0, 0])) < TOL


def test_ita_first_calls(fixture, flows, spc):
  """INRAlign_backward on frame 3 and INRAlign_forward on frame 1, from the stored previous features."""
  z = fixture["z"]
  flow, _ = flows
  _, feat, _ = spc
  fn = jax.jit(lambda p, f, prev, fl: bvsr_ik_layers.INRAlign().apply({"params": p}, f, prev, fl, return_hooks=True))
  names = {"fusion1": "fusion1", "fusion2": "fusion2", "unet_basis_select": "unet_basis_select#0",
           "unet_scale_select": "unet_scale_select#0", "scale_select": "scale_select", "basis_select": "basis_select"}
  cases = {
      # backward step i = 3: lr_feat of frame 3, previous = backward_resblocks(frame 4), flows_backward[:, 3]
      "INRAlign_backward": (feat[3], _nhwc(z["hook/backward_resblocks"][0, 0]), flow[3]),
      # forward step i = 1: lr_feat_l[1] = frame 3's features (official quirk), previous = forward_resblocks(frame
      # 0), flows_forward[:, 0]
      "INRAlign_forward": (feat[T - 1 - 1], _nhwc(z["hook/forward_resblocks"][0, 0]), flow[T - 1]),
  }
  for mod, (f, prev, fl) in cases.items():
    out, hooks = fn(fixture["params"][mod], f[None], prev[None], fl[None])
    for k, hook in names.items():
      assert _err(hooks[k][0], _nhwc(z[f"hook/{mod}.{hook}"][0, 0])) < TOL, (mod, k)
    assert _err(out[0], _nhwc(z[f"hook/{mod}#0"][0, 0])) < TOL, mod
  # The quirk is real: frame 1's own features do not give the official fusion2.
  _, hooks = fn(fixture["params"]["INRAlign_forward"], feat[1][None], cases["INRAlign_forward"][1][None],
                flow[T - 1][None])
  assert _err(hooks["fusion2"][0], _nhwc(z["hook/INRAlign_forward.fusion2"][0, 0])) > 1e-2


def test_end_to_end(fixture):
  """The whole model on the fixture's RGB clip, one jit of the forward pass (about 20 s of CPU, mostly compiling):
  outputs, `lr_corrs` and the module outputs inside the run against the official ones. One test, so that pytest-xdist
  never compiles the model twice; every error is computed before the assertion, which names them all."""
  z = fixture["z"]
  model = bvsr_ik.from_config(fixture["config"])
  fn = jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["intermediates"]))
  out, state = fn(fixture["params"], jnp.asarray(z["lr_rgb"])[None])
  hooks = state["intermediates"]
  rgb = lambda a: _nhwc(a)[..., ::-1]  # official (..., C, H, W) BGR -> (..., H, W, C) RGB
  assert out["outputs"].shape == (1, T, 144, 144, 3) and out["lr_corrs"].shape == (1, T, 36, 36, 3)
  errs = {
      "outputs": _err(out["outputs"], rgb(z["outputs"])),
      "lr_corrs": _err(out["lr_corrs"], rgb(z["lr_corrs"])),
      # Module outputs inside the full run (BGR inside the model).
      "backward_resblocks": _err(hooks["hook_backward_resblocks"][0][0, T - 1],
                                 _nhwc(z["hook/backward_resblocks"][0, 0])),
      "forward_resblocks": _err(hooks["hook_forward_resblocks"][0][0, 0], _nhwc(z["hook/forward_resblocks"][0, 0])),
      "fusion": _err(hooks["hook_fusion"][0][0], _nhwc(z["hook/fusion"][0, 0])),
      "img_upsample": _err(hooks["hook_img_upsample"][0][0], _nhwc(z["hook/img_upsample"][0, 0])),
      "INRAlign_backward": _err(hooks["hook_INRAlign_backward_out"][0][0, 0],
                                _nhwc(z["hook/INRAlign_backward#0"][0, 0])),
      "INRAlign_forward": _err(hooks["hook_INRAlign_forward_out"][0][0, 0], _nhwc(z["hook/INRAlign_forward#0"][0, 0])),
      "flows_backward": _err(hooks["hook_flows_backward"][0][0], _nhwc(z["hook/spynet"][0])),
  }
  assert all(e < TOL for e in errs.values()), errs  # a NaN fails too


def test_stream_clip_matches_official(fixture):
  """Inference frame by frame (`bvsr_ik.stream_clip`: per-frame ISC, flows, propagation steps and upsampling) on
  the fixture's RGB clip gives the official outputs, frame for frame."""
  z = fixture["z"]
  model = bvsr_ik.from_config(fixture["config"])
  frames = list(np.asarray(z["lr_rgb"], np.float32))
  got = list(bvsr_ik.stream_clip(model, fixture["params"], frames))
  want = _nhwc(z["outputs"])[0][..., ::-1]
  assert len(got) == T and got[0].shape == (144, 144, 3)
  errs = [_err(g, w) for g, w in zip(got, want)]
  assert max(errs) < TOL, errs
