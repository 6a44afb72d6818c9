"""Official BVSR-IK state_dicts (QZ1-boy/BVSR-IK `model_KCA.py`, class KCANet) -> inrsr config and flax params.

Choices:
  * Input: the bare `KCANet.state_dict()` (720 keys for the released model). A `module.` prefix (DataParallel)
    is stripped, and a dict holding the state_dict under 'model_R_state_dict' (FMA-Net's trainer format, which
    BVSR-IK's missing train.py probably shared), 'state_dict', 'model' or 'params' is unwrapped.
  * Every size comes from the state_dict (`dim`, block counts, ISC / ITA widths, U-Net depth per level, heads,
    FFN expansion, atoms, INR width, R, SpyNet levels), so reduced configs convert too. `w_min`/`w_max` only set
    the frequencies' initial values and keep their defaults; the learned frequencies are loaded.
  * Each atom's frequency is one shared torch Parameter listed twice (`layers.1.w0` and `layers.3.w0`); the
    two must agree. `spynet.mean`/`spynet.std` must be the ImageNet constants the port hard-codes.
  * Any other key the model does not use, and any shape that differs from the model built from the inferred
    config, is a ValueError naming it.
  * `convert_spynet` reads SpyNet weights alone: BasicSR's `spynet_sintel_final-3d2a1287.pth`
    ({'params': {'basic_module.{l}.basic_module.{j}.weight', ...}}), with or without a `spynet.` prefix.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from inrsr.convert import common
from inrsr.models import bvsr_ik, spynet

WHAT = "BVSR-IK KCANet"
WRAPPERS = ("model_R_state_dict", "state_dict", "model", "params")


class _Reader:
  """Reads torch tensors by key and remembers which keys were used."""

  def __init__(self, sd: dict, what: str):
    self.sd, self.what, self.used = sd, what, set()

  def get(self, key: str) -> np.ndarray:
    self.used.add(key)
    return common.require(self.sd, key, self.what)

  def conv(self, prefix: str, bias: bool = True) -> dict:
    out = {"kernel": common.conv_kernel(self.get(f"{prefix}.weight"))}
    if bias:
      out["bias"] = np.asarray(self.get(f"{prefix}.bias"), np.float32)
    return out

  def count(self, pattern: str) -> int:
    return common.count_indexed(self.sd, pattern)


def _unwrap(checkpoint) -> dict:
  if not isinstance(checkpoint, dict):
    raise ValueError(f"expected a state_dict (dict of tensors), got {type(checkpoint).__name__}")
  for key in WRAPPERS:
    if key in checkpoint and isinstance(checkpoint[key], dict):
      return _unwrap(checkpoint[key])
  if checkpoint and all(k.startswith("module.") for k in checkpoint):
    checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
  return checkpoint


def _rbwic(r: _Reader, prefix: str) -> tuple[dict, int]:
  n = r.count(rf"{re.escape(prefix)}\.main\.2\.(\d+)\.conv1\.weight")
  params = {"conv_in": r.conv(f"{prefix}.main.0")}
  for i in range(n):
    params[f"block_{i}"] = {"conv1": r.conv(f"{prefix}.main.2.{i}.conv1"),
                            "conv2": r.conv(f"{prefix}.main.2.{i}.conv2")}
  return params, n


def _rt_block(r: _Reader, prefix: str) -> dict:
  attn, ffn = f"{prefix}.recurr_attn", f"{prefix}.ffn1"
  return {"recurr_attn": {"temperature": np.asarray(r.get(f"{attn}.temperature"), np.float32).reshape(-1),
                          "to_qkv": r.conv(f"{attn}.to_qkv", bias=False),
                          "to_qkv_h": r.conv(f"{attn}.to_qkv_h", bias=False),
                          "project_out": r.conv(f"{attn}.project_out", bias=False)},
          "ffn1": {k: r.conv(f"{ffn}.{k}", bias=False) for k in ("project_in", "dwconv", "project_out")}}


def _unet(r: _Reader, prefix: str, num_res: int) -> dict:
  params = {f"feat_extract_{k}": r.conv(f"{prefix}.feat_extract.{k}.main.0", bias=False) for k in range(5)}
  for name in ("up1", "up2"):
    w = np.asarray(r.get(f"{prefix}.{name}.main.0.weight"), np.float32)  # (in, out, kh, kw)
    params[name] = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 0, 1))}
  for part, levels in (("Encoder", 3), ("Decoder", 2)):
    for i in range(levels):
      for j in range(num_res):
        params[f"{part}_{i}_{j}"] = _rt_block(r, f"{prefix}.{part}.{i}.layers.{j}")
  return params


def _dictionary(r: _Reader, prefix: str, num_atoms: int) -> dict:
  params = {}
  for n in range(num_atoms):
    p = f"{prefix}.kernelINR_list.{n}.layers"
    w0 = np.asarray(r.get(f"{p}.1.w0"), np.float32).reshape(())
    if f"{p}.3.w0" in r.sd:
      w0b = np.asarray(r.get(f"{p}.3.w0"), np.float32).reshape(())
      if w0b != w0:
        raise ValueError(f"{p}.1.w0 = {w0} and {p}.3.w0 = {w0b} differ: the official atom shares one frequency")
    params[f"atoms_{n}"] = {
        "dense_0": {"kernel": common.dense_kernel(r.get(f"{p}.0.weight")),
                    "bias": np.asarray(r.get(f"{p}.0.bias"), np.float32)},
        "w0": w0,
        "dense_1": {"kernel": common.dense_kernel(r.get(f"{p}.2.weight")),
                    "bias": np.asarray(r.get(f"{p}.2.bias"), np.float32)},
        "dense_2": {"kernel": common.dense_kernel(r.get(f"{p}.4.weight"))}}
  return params


def _spynet(r: _Reader, prefix: str) -> tuple[dict, int]:
  levels = r.count(rf"{re.escape(prefix)}basic_module\.(\d+)\.basic_module\.0\.weight")
  if levels == 0:
    raise ValueError(f"state_dict has no {prefix}basic_module.0.basic_module.0.weight: not SpyNet "
                     "(expected {prefix}basic_module.{l}.basic_module.{0,2,4,6,8}.{weight,bias})")
  params = {f"basic_module_{l}": {f"conv_{j}": r.conv(f"{prefix}basic_module.{l}.basic_module.{2 * j}")
                                  for j in range(5)} for l in range(levels)}
  for name, want in (("mean", spynet.IMAGENET_MEAN), ("std", spynet.IMAGENET_STD)):
    key = f"{prefix}{name}"
    if key in r.sd:
      got = np.asarray(r.get(key), np.float32).reshape(-1)
      if not np.allclose(got, np.asarray(want, np.float32)):
        raise ValueError(f"{key} = {got.tolist()}; the port's SpyNet uses the ImageNet {name} {list(want)}")
  return params, levels


def _check(sd: dict, used: set, params: dict, model, shape=(1, 2, 8, 8, 3), *args) -> None:
  extra = sorted(k for k in sd if k not in used)
  if extra:
    raise ValueError(f"state_dict has keys the {type(model).__name__} does not use: {extra[:8]}"
                     + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
  common.check_shapes(model, params, type(model).__name__,
                      [jax.ShapeDtypeStruct(s, jnp.float32) for s in ((shape,) + args)])


def _kernel_branch(r: "_Reader", prefix: str, unet_num_res: int, num_atoms: int) -> dict:
  """The kernel-prediction branch SPC and both INRAlign modules share: the two U-Nets, the scale and basis
  selections, the atom dictionary and the sum."""
  out = {u: _unet(r, f"{prefix}.{u}", unet_num_res) for u in ("unet_basis_select", "unet_scale_select")}
  out["scale_select"] = r.conv(f"{prefix}.scale_select")
  out["basis_select"] = r.conv(f"{prefix}.basis_select")
  out["inr_conv"] = _dictionary(r, f"{prefix}.inr_conv", num_atoms)
  out["sum"] = r.conv(f"{prefix}.sum")
  return out


def convert(state_dict: dict) -> tuple[dict, dict]:
  """An official KCANet state_dict -> (inrsr model config, flax params).

  Args:
    state_dict: the loaded `.pth` (`inrsr.convert.pth.load`), a bare `KCANet.state_dict()` (or one of the
      wrappers in the module docstring).

  Returns:
    (config, params): config is a plain dict of `inrsr.models.bvsr_ik.KCANet` fields plus "name": "bvsr_ik";
    params is the flax params pytree (float32 NumPy arrays) for `model.apply({"params": params}, lrs)`.

  Raises:
    ValueError: not a KCANet state_dict, unexpected keys, or shapes that do not fit together.
  """
  sd = _unwrap(state_dict)
  if "SPC.feat_ext.main.0.weight" not in sd or "backward_resblocks.main.0.weight" not in sd:
    some = sorted(sd)[:4]
    raise ValueError(f"not a {WHAT} state_dict in the official layout (no SPC.feat_ext.main.0.weight / "
                     f"backward_resblocks.main.0.weight); its first keys are {some}")
  r = _Reader(sd, WHAT)
  num_atoms = r.count(r"SPC\.inr_conv\.kernelINR_list\.(\d+)\.layers\.0\.weight")
  unet_num_res = r.count(r"SPC\.unet_basis_select\.Encoder\.0\.layers\.(\d+)\.recurr_attn\.temperature")
  attn = "SPC.unet_basis_select.Encoder.0.layers.0"
  ffn_out = sd.get(f"{attn}.ffn1.project_out.weight")
  groups = int(np.shape(sd.get("SPC.scale_select.weight", np.zeros((0,))))[0])
  if num_atoms == 0 or unet_num_res == 0 or ffn_out is None or groups == 0:
    raise ValueError(f"{WHAT} state_dict lacks SPC.inr_conv.kernelINR_list.*, SPC.unet_basis_select.Encoder.0.*"
                     " or SPC.scale_select.weight")

  params = {}
  spc = {}
  spc["feat_ext"], spc_blocks = _rbwic(r, "SPC.feat_ext")
  params["SPC"] = {**spc, **_kernel_branch(r, "SPC", unet_num_res, num_atoms)}
  params["spynet"], levels = _spynet(r, "spynet.")
  ita_blocks = 0
  for name in ("INRAlign_forward", "INRAlign_backward"):
    ita = {}
    ita["fusion1"], ita_blocks = _rbwic(r, f"{name}.fusion1")
    ita["fusion2"], _ = _rbwic(r, f"{name}.fusion2")
    params[name] = {**ita, **_kernel_branch(r, name, unet_num_res, num_atoms)}
  params["backward_resblocks"], num_blocks = _rbwic(r, "backward_resblocks")
  params["forward_resblocks"], _ = _rbwic(r, "forward_resblocks")
  params["fusion"], fusion_blocks = _rbwic(r, "fusion")
  params["upsample1"] = r.conv("upsample1.upsample_conv")
  params["upsample2"] = r.conv("upsample2.upsample_conv")
  params["conv_hr"] = r.conv("conv_hr")
  params["conv_last"] = r.conv("conv_last")

  dim = int(sd["backward_resblocks.main.0.weight"].shape[0])
  config = {
      "name": "bvsr_ik",
      "dim": dim,
      "num_blocks": num_blocks,
      "fusion_blocks": fusion_blocks,
      "hr_dim": int(sd["conv_hr.weight"].shape[0]),
      "spc_channels": int(sd["SPC.feat_ext.main.0.weight"].shape[0]),
      "spc_blocks": spc_blocks,
      "spc_unet_base": int(sd["SPC.scale_select.weight"].shape[1]),
      "ita_channels": int(sd["INRAlign_forward.fusion1.main.0.weight"].shape[0]),
      "ita_blocks": ita_blocks,
      "unet_num_res": unet_num_res,
      "num_heads": int(np.size(sd[f"{attn}.recurr_attn.temperature"])),
      "ffn_expansion": float(ffn_out.shape[1]) / float(ffn_out.shape[0]),
      "num_atoms": num_atoms,
      "inr_hidden": int(sd["SPC.inr_conv.kernelINR_list.0.layers.0.weight"].shape[0]),
      "max_kernel_size": 2 * (groups - 1) + 1,
      "spynet_levels": levels,
  }
  model = bvsr_ik.from_config(config)
  _check(sd, r.used, params, model)
  return config, params


def convert_spynet(checkpoint: dict) -> dict:
  """SpyNet weights (BasicSR file or the `spynet.*` part of a KCANet state_dict) -> params of `spynet.SpyNet`.

  Put them into a KCANet with `params["spynet"] = convert_spynet(...)`.
  """
  sd = _unwrap(checkpoint)
  prefix = "spynet." if any(k.startswith("spynet.") for k in sd) else ""
  sub = {k: v for k, v in sd.items() if k.startswith(prefix)}
  r = _Reader(sub, "SpyNet")
  params, levels = _spynet(r, prefix)
  _check(sub, r.used, params, spynet.SpyNet(num_levels=levels), (1, 32, 32, 3), (1, 32, 32, 3))
  return params
