"""Official LIT/CLIT checkpoints (jaroslaw1007/CLIT `train.py` format) -> inrsr CLIT config and flax params.

Choices:
  * Sizes come from the state_dict, never from presets: the encoder's (EDSR blocks and width; RDN's D, C, G, G0,
    kernel size), `base_dim` (out-channels of `conv_ch`), the number of stages (number of `imnets.{i}`), the
    heads and bias width (`pb_encoder.proj`), the MLP's hidden widths, and the radius r (from the first MLP
    layer's input width `base_dim * (2r + 1)**2 + 2`). Values only the args hold (`posenc_scale`, the MLP
    activation, `is_cell`, `res_scale`) come from the args with the official classes' defaults.
  * The official class has separate `imnet_num` and `conv_num`; every config sets them equal and the forward
    pass needs one of each per stage, so a checkpoint where they differ is a ValueError.
  * Only the 'sinusoid' position encoder of the released configs is supported ('learn', 'dpb' and the complex
    form are ValueErrors). Its frequencies are not in the state_dict; the model recomputes them.
  * EDSR's unused MeanShift keys are dropped; the RNG `state`, the optimiser and the epoch are ignored; any other
    key the model does not use, and any shape that differs from the model built from the inferred config, is a
    ValueError naming it.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np

from inrsr.convert import common
from inrsr.models import clit

IGNORED = re.compile(r"encoder\.(sub_mean|add_mean)\.(weight|bias)$")
ARG_KEYS = {"encoder_spec", "imnet_spec", "pb_spec", "pe_spec", "base_dim", "head", "r", "imnet_num", "conv_num",
            "is_cell", "local_attn", "verbose"}  # pe_spec: an unused argument of the first released clit.py
ENCODER_ARG_KEYS = {"edsr-baseline": {"n_resblocks", "n_feats", "res_scale", "scale", "no_upsampling", "rgb_range"},
                    "rdn": {"G0", "RDNkSize", "RDNconfig", "scale", "no_upsampling"}}
ENCODER_ARG_KEYS["edsr"] = ENCODER_ARG_KEYS["edsr-baseline"]
WHAT = "CLIT"


def _spec(checkpoint) -> tuple[dict, dict]:
  """The checkpoint's model args and state_dict, or a ValueError saying what the layout lacks."""
  if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
    got = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ValueError(f"expected an official CLIT checkpoint {{'model': {{'name', 'args', 'sd'}}, ...}}, got {got}")
  spec = checkpoint["model"]
  missing = sorted({"name", "args", "sd"} - set(spec))
  if missing:
    raise ValueError(f"checkpoint['model'] lacks {missing}: expected {{'name': 'clit', 'args': ..., 'sd': ...}}")
  if spec["name"] != "clit":
    raise ValueError(f"checkpoint['model']['name'] is {spec['name']!r}; this converter reads only 'clit'")
  if not isinstance(spec["args"], dict) or not isinstance(spec["sd"], dict):
    raise ValueError("checkpoint['model']['args'] and ['sd'] must be dicts (model args and a state_dict)")
  return spec["args"], spec["sd"]


def _rdn(sd: dict) -> tuple[dict, dict]:
  """Flax params and fields of `inrsr.models.rdn.RDN` from an official RDN state_dict (prefix `encoder.`)."""
  what = "RDN"
  d = common.count_indexed(sd, r"encoder\.RDBs\.(\d+)\.")
  c = common.count_indexed(sd, r"encoder\.RDBs\.0\.convs\.(\d+)\.")
  if d == 0 or c == 0:
    raise ValueError("state_dict has no encoder.RDBs.0.convs.0.conv.0.weight: not an RDN encoder in the official "
                     "layout (expected encoder.RDBs.{i}.convs.{j}.conv.0.*)")
  g = int(common.require(sd, "encoder.RDBs.0.convs.0.conv.0.weight", what).shape[0])
  sfe1 = common.require(sd, "encoder.SFENet1.weight", what)
  fields = {"D": d, "C": c, "G": g, "G0": int(sfe1.shape[0]), "kernel_size": int(sfe1.shape[-1])}
  params = {"SFENet1": common.conv(sd, "encoder.SFENet1", what), "SFENet2": common.conv(sd, "encoder.SFENet2", what),
            "GFF_0": common.conv(sd, "encoder.GFF.0", what), "GFF_1": common.conv(sd, "encoder.GFF.1", what)}
  for i in range(d):
    for j in range(c):
      params[f"RDB_{i}_conv_{j}"] = common.conv(sd, f"encoder.RDBs.{i}.convs.{j}.conv.0", what)
    params[f"RDB_{i}_LFF"] = common.conv(sd, f"encoder.RDBs.{i}.LFF", what)
  return params, fields


def _encoder_prefixes(name: str, f: dict) -> set:
  if name == "rdn":
    out = {"encoder.SFENet1", "encoder.SFENet2", "encoder.GFF.0", "encoder.GFF.1"}
    out |= {f"encoder.RDBs.{i}.LFF" for i in range(f["D"])}
    out |= {f"encoder.RDBs.{i}.convs.{j}.conv.0" for i in range(f["D"]) for j in range(f["C"])}
    return out
  out = {"encoder.head.0", f"encoder.body.{f['n_resblocks']}"}
  return out | {f"encoder.body.{i}.body.{j}" for i in range(f["n_resblocks"]) for j in (0, 2)}


def _check_shapes(model: clit.CLIT, params: dict) -> None:
  """ValueError naming every param whose presence or shape differs from what `model` expects."""
  lr = jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
  q = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
  expected = jax.eval_shape(model.init, jax.random.key(0), lr, q, q)["params"]
  want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  bad = [f"{k}: expected {want.get(k)}, got {got.get(k)}" for k in sorted(set(want) | set(got))
         if want.get(k) != got.get(k)]
  if bad:
    raise ValueError(f"checkpoint does not match the CLIT layout inferred from it ({len(bad)} params): "
                     + "; ".join(bad[:8]))


def convert(checkpoint: dict) -> tuple[dict, dict]:
  """An official LIT/CLIT checkpoint -> (inrsr model config, flax params).

  Args:
    checkpoint: the loaded `.pth` (`inrsr.convert.pth.load`): {'model': {'name': 'clit', 'args', 'sd'}, ...}.

  Returns:
    (config, params): config is a plain dict of `inrsr.models.clit.CLIT` fields plus "name": "clit"; params is
    the flax params pytree (float32 NumPy arrays) for `model.apply({"params": params}, ...)`.

  Raises:
    ValueError: not a CLIT checkpoint, an unsupported encoder or position encoder, missing or unexpected keys,
      or shapes that do not fit together.
  """
  args, sd = _spec(checkpoint)
  unknown = sorted(set(args) - ARG_KEYS)
  if unknown:
    raise ValueError(f"unknown CLIT args {unknown}; expected a subset of {sorted(ARG_KEYS)}")

  # Encoder.
  enc_spec = args.get("encoder_spec") or {}
  enc_name, enc_args = enc_spec.get("name"), dict(enc_spec.get("args") or {})
  if enc_name not in ENCODER_ARG_KEYS:
    raise ValueError(f"encoder {enc_name!r} is not supported; expected one of {sorted(ENCODER_ARG_KEYS)}")
  if sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name]):
    raise ValueError(f"unknown {enc_name} args {sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name])}")
  if not enc_args.get("no_upsampling", False):
    raise ValueError(f"encoder {enc_name!r} has an upsampler (no_upsampling is not True); CLIT uses features")
  if enc_name == "rdn":
    enc_params, enc_fields = _rdn(sd)
  else:
    enc_params, enc_fields = common.edsr_params(sd, "encoder")
    enc_fields["res_scale"] = float(enc_args.get("res_scale", 0.1 if enc_name == "edsr" else 1.0))
  encoder = "rdn" if enc_name == "rdn" else "edsr-baseline"

  # Widths and stages.
  conv_ch = common.conv(sd, "conv_ch", WHAT)
  base_dim = int(conv_ch["kernel"].shape[-1])
  if "base_dim" in args and int(args["base_dim"]) != base_dim:
    raise ValueError(f"args base_dim {args['base_dim']} differs from conv_ch's {base_dim} channels")
  n_imnets = common.count_indexed(sd, r"imnets\.(\d+)\.")
  n_convs = common.count_indexed(sd, r"conv_vs\.(\d+)\.")
  if n_imnets == 0 or n_convs == 0:
    raise ValueError("state_dict has no imnets.0.* or conv_vs.0.*: not a CLIT checkpoint in the official layout")
  if n_imnets != n_convs:
    raise ValueError(f"checkpoint has {n_imnets} imnets but {n_convs} conv stages (imnet_num != conv_num); "
                     "every stage needs one of each")
  local_attn = bool(args.get("local_attn", True))
  if local_attn != ("conv_qs.0.weight" in sd):
    raise ValueError(f"args local_attn={local_attn} but conv_qs.0.weight is "
                     f"{'present' if 'conv_qs.0.weight' in sd else 'absent'}")

  # Position bias.
  pos_bias = "pb_encoder.proj.weight" in sd
  if pos_bias != (local_attn and bool(args.get("pb_spec"))):
    raise ValueError("pb_encoder.proj.* must be present exactly when local_attn is on and a pb_spec is given")
  head = int(args.get("head", 8))
  posenc_scale, posenc_dims = 10.0, 64
  if pos_bias:
    pb = args["pb_spec"]
    pb_args = dict(pb.get("args") or {})
    if pb.get("name") != "posenc":
      raise ValueError(f"pb_spec name {pb.get('name')!r} is not supported; expected 'posenc'")
    if pb_args.get("posenc_type") != "sinusoid" or pb_args.get("complex_transform", False):
      raise ValueError(f"position bias {pb_args.get('posenc_type')!r} (complex_transform="
                       f"{pb_args.get('complex_transform', False)}) is not supported; expected the real 'sinusoid'")
    proj = common.dense(sd, "pb_encoder.proj", WHAT)
    posenc_dims, head_pb = (int(v) for v in proj["kernel"].shape)
    if "head" in args and int(args["head"]) != head_pb:
      raise ValueError(f"args head {args['head']} differs from pb_encoder.proj's {head_pb} outputs")
    head = head_pb
    if int(pb_args.get("enc_dims", posenc_dims)) != posenc_dims:
      raise ValueError(f"pb_spec enc_dims {pb_args['enc_dims']} differs from pb_encoder.proj's input {posenc_dims}")
    posenc_scale = float(pb_args.get("posenc_scale", 6))  # the official PositionEncoder default is 6
  if base_dim % head:
    raise ValueError(f"base_dim {base_dim} is not a multiple of head {head}")

  # MLPs.
  imnet = args.get("imnet_spec") or {}
  imnet_args = dict(imnet.get("args") or {})
  if imnet.get("name", "mlp") != "mlp":
    raise ValueError(f"imnet {imnet.get('name')!r} is not supported; expected 'mlp'")
  act = imnet_args.get("act", "relu")
  act = "none" if act is None else str(act).lower()
  if act not in clit.ACTIVATIONS:
    raise ValueError(f"imnet act {act!r} is not supported; expected gelu, relu or None")
  stride = 1 if act == "none" else 2
  n_linear = common.count_indexed(sd, r"imnets\.0\.layers\.(\d+)\.weight")
  idx = list(range(0, n_linear, stride))
  if n_linear == 0 or (n_linear - 1) % stride:
    raise ValueError("state_dict's imnets.0.layers.* do not form the official MLP (Linear, act, ..., Linear)")
  imnets, hidden = {}, None
  for i in range(n_imnets):
    linears = [common.dense(sd, f"imnets.{i}.layers.{j}", WHAT) for j in idx]
    widths = [int(p["kernel"].shape[1]) for p in linears[:-1]]
    if hidden is not None and widths != hidden:
      raise ValueError(f"imnets.{i} has hidden widths {widths}, imnets.0 has {hidden}")
    hidden = widths
    imnets[f"imnets_{i}"] = {f"layers_{k}": p for k, p in enumerate(linears)}
  if "hidden_list" in imnet_args and [int(h) for h in imnet_args["hidden_list"]] != hidden:
    raise ValueError(f"imnet args hidden_list {imnet_args['hidden_list']} differs from the weights' {hidden}")
  out_dim = int(imnets["imnets_0"][f"layers_{len(idx) - 1}"]["kernel"].shape[1])
  if out_dim != 3:
    raise ValueError(f"imnets output {out_dim} channels; CLIT predicts RGB (3)")
  is_cell = bool(args.get("is_cell", True))
  in_dim = int(imnets["imnets_0"]["layers_0"]["kernel"].shape[0])
  area, rem = divmod(in_dim - (2 if is_cell else 0), base_dim)
  side = int(round(math.sqrt(area))) if area > 0 else 0
  if rem or side * side != area or side % 2 != 1:
    raise ValueError(f"imnets input width {in_dim} is not base_dim * (2r + 1)**2 + {2 if is_cell else 0} "
                     f"with base_dim {base_dim} (is_cell={is_cell})")
  r = (side - 1) // 2
  if local_attn:
    if "r" in args and int(args["r"]) != r:
      raise ValueError(f"args r {args['r']} differs from the MLP input width's r = {r}")
  elif r != 0:
    raise ValueError(f"local_attn is off but the MLP input width {in_dim} implies r = {r} (expected 0)")
  else:
    r = int(args.get("r", 3))  # unused without local attention

  config = {"name": "clit", "encoder": encoder, "encoder_args": enc_fields, "base_dim": base_dim, "head": head,
            "r": r, "num_stages": n_imnets, "cell_decode": is_cell, "local_attn": local_attn, "pos_bias": pos_bias,
            "posenc_scale": posenc_scale, "posenc_dims": posenc_dims, "hidden_list": hidden, "act": act}
  params = {"encoder_net": enc_params, "conv_ch": conv_ch, **imnets}
  used = {"conv_ch", *(f"imnets.{i}.layers.{j}" for i in range(n_imnets) for j in idx)}
  for i in range(n_imnets):
    params[f"conv_vs_{i}"] = common.conv(sd, f"conv_vs.{i}", WHAT)
    used.add(f"conv_vs.{i}")
    if local_attn:
      params[f"conv_qs_{i}"] = common.conv(sd, f"conv_qs.{i}", WHAT)
      params[f"conv_ks_{i}"] = common.conv(sd, f"conv_ks.{i}", WHAT)
      used |= {f"conv_qs.{i}", f"conv_ks.{i}"}
  if pos_bias:
    params["pb_proj"] = common.dense(sd, "pb_encoder.proj", WHAT)
    used.add("pb_encoder.proj")
  used |= _encoder_prefixes(encoder, enc_fields)
  used = {f"{p}.{leaf}" for p in used for leaf in ("weight", "bias")}
  extra = sorted(k for k in sd if k not in used and not IGNORED.match(k))
  if extra:
    raise ValueError(f"state_dict has keys a {encoder} CLIT does not use: {extra[:8]}"
                     + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
  _check_shapes(clit.from_config(config), params)
  return config, params
