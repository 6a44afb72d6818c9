"""Official HIIF checkpoints (hello-jinwoo/HIIF `train.py` format) -> (model config, flax params).

The file is `{'model': {'name': 'hiif', 'args': {...}, 'sd': state_dict}, 'optimizer': ..., 'epoch': ...}`
(read it with `inrsr.convert.pth.load`). Sizes come from the state_dict's shapes; the encoder's name (and, for
the full EDSR, its res_scale, which no shape records) from `args['encoder_spec']`. Keys saved from a
DataParallel model (`module.` prefix) are accepted. EDSR's MeanShift keys are unused by the model and dropped.
"""

from __future__ import annotations

import re

import numpy as np

from inrsr.convert import common

WHAT = "HIIF"


def _layer_norm(sd: dict, prefix: str) -> dict:
  return {"scale": np.asarray(common.require(sd, f"{prefix}.weight", WHAT), np.float32),
          "bias": np.asarray(common.require(sd, f"{prefix}.bias", WHAT), np.float32)}


def _model_spec(checkpoint) -> dict:
  if not isinstance(checkpoint, dict):
    raise ValueError(f"expected an official HIIF checkpoint dict, got {type(checkpoint).__name__}")
  spec = checkpoint.get("model", checkpoint)
  if not isinstance(spec, dict) or "sd" not in spec:
    raise ValueError("not an official HIIF checkpoint: expected {'model': {'name': 'hiif', 'args', 'sd'}, ...}; "
                     f"top-level keys are {sorted(map(str, checkpoint))}")
  name = spec.get("name", "hiif")
  if name != "hiif":
    raise ValueError(f"checkpoint model name is {name!r}, not 'hiif'")
  return spec


def convert(checkpoint: dict) -> tuple[dict, dict]:
  """An official HIIF checkpoint dict -> (model_config, params) for `inrsr.models.hiif.HIIF`.

  Args:
    checkpoint: the loaded .pth (`{'model': {'name': 'hiif', 'args', 'sd'}, ...}`) or its 'model' entry.

  Returns:
    model_config: {"name": "hiif", "encoder", "encoder_args", "hidden_dim", "heads", "n_attn_blocks",
      "n_hi_layers", "mlp_hidden"} (plain Python values; `hiif.from_config` accepts it).
    params: the flax params pytree (NumPy float32 arrays), to be used as `{"params": params}`.

  Raises:
    ValueError: the dict is not an official HIIF checkpoint or a key or shape is not as expected.
  """
  spec = _model_spec(checkpoint)
  sd = {re.sub(r"^module\.", "", str(k)): v for k, v in spec["sd"].items()}
  foreign = sorted(k for k in sd if not re.match(r"(encoder|freq|fc_layers\.\d+|conv\d+)\.", k))
  if foreign:
    raise ValueError(f"state_dict keys {foreign[:5]} are not in the official HIIF layout")
  args = spec.get("args") or {}
  enc_spec = args.get("encoder_spec") or {"name": "edsr-baseline", "args": {}}
  enc_name = enc_spec.get("name", "edsr-baseline")
  if enc_name not in ("edsr-baseline", "edsr"):
    raise ValueError(f"HIIF encoder {enc_name!r} is not supported (only 'edsr-baseline' and 'edsr')")
  enc_args = enc_spec.get("args") or {}
  if enc_args.get("no_upsampling", True) is not True:
    raise ValueError("HIIF encoder_spec has no_upsampling=False; the official HIIF uses no_upsampling=True")
  enc_params, enc_fields = common.edsr_params(sd, "encoder")
  default_res_scale = 0.1 if enc_name == "edsr" else 1.0
  res_scale = float(enc_args.get("res_scale", default_res_scale))
  if res_scale != 1.0:
    enc_fields["res_scale"] = res_scale

  freq_w = common.require(sd, "freq.weight", WHAT)
  hidden_dim = int(freq_w.shape[0])
  if freq_w.shape[1] != enc_fields["n_feats"]:
    raise ValueError(f"freq.weight {freq_w.shape} does not take the encoder's {enc_fields['n_feats']} channels")
  n_hi = common.count_indexed(sd, r"fc_layers\.(\d+)\.fc1\.weight")
  if n_hi == 0:
    raise ValueError("state_dict has no fc_layers.0.fc1.weight: not a HIIF checkpoint in the official layout")
  mlp_hidden = int(common.require(sd, "fc_layers.0.fc1.weight", WHAT).shape[0])
  n_attn = common.count_indexed(sd, r"conv(\d+)\.qkv_proj\.weight")
  if n_attn == 0:
    raise ValueError("state_dict has no conv0.qkv_proj.weight: not a HIIF checkpoint in the official layout")
  head_dim = int(common.require(sd, "conv0.kln.weight", WHAT).shape[0])
  if hidden_dim % head_dim:
    raise ValueError(f"conv0.kln.weight has {head_dim} channels, which do not divide hidden_dim={hidden_dim}")
  heads = hidden_dim // head_dim
  if "blocks" in args and int(args["blocks"]) != heads:
    raise ValueError(f"args blocks={args['blocks']} disagrees with the state_dict's {heads} heads")

  params = {"enc": enc_params, "freq": common.conv(sd, "freq", WHAT)}
  expect_in = 4 * hidden_dim + 2 + 2
  for d in range(n_hi):
    p = f"fc_layers.{d}"
    layer = {"norm": _layer_norm(sd, f"{p}.norm"), "fc1": common.dense(sd, f"{p}.fc1", WHAT),
             "fc2": common.dense(sd, f"{p}.fc2", WHAT)}
    in_dim, out_dim = layer["fc1"]["kernel"].shape[0], layer["fc2"]["kernel"].shape[1]
    want_out = 3 if d == n_hi - 1 else hidden_dim
    if in_dim != expect_in or out_dim != want_out or layer["fc1"]["kernel"].shape[1] != mlp_hidden:
      raise ValueError(f"{p}: Linear sizes {in_dim} -> {mlp_hidden} -> {out_dim} are not HIIF's "
                       f"{expect_in} -> {mlp_hidden} -> {want_out}")
    params[f"fc_layers_{d}"] = layer
    expect_in = hidden_dim + 2
  for i in range(n_attn):
    p = f"conv{i}"
    block = {"qkv_proj": common.dense(sd, f"{p}.qkv_proj", WHAT), "kln": _layer_norm(sd, f"{p}.kln"),
             "vln": _layer_norm(sd, f"{p}.vln"), "proj1": common.dense(sd, f"{p}.proj1", WHAT),
             "proj2": common.dense(sd, f"{p}.proj2", WHAT)}
    if block["qkv_proj"]["kernel"].shape != (hidden_dim, 3 * hidden_dim):
      raise ValueError(f"{p}.qkv_proj has shape {block['qkv_proj']['kernel'].shape[::-1]}, expected "
                       f"({3 * hidden_dim}, {hidden_dim})")
    params[f"attn_{i}"] = block

  config = {"name": "hiif", "encoder": enc_name, "encoder_args": dict(enc_fields), "hidden_dim": hidden_dim,
            "heads": heads, "n_attn_blocks": n_attn, "n_hi_layers": n_hi, "mlp_hidden": mlp_hidden}
  return config, params
