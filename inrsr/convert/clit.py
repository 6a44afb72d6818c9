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

from inrsr.convert import common
from inrsr.models import clit

ARG_KEYS = {"encoder_spec", "imnet_spec", "pb_spec", "pe_spec", "base_dim", "head", "r", "imnet_num", "conv_num",
            "is_cell", "local_attn", "verbose"}  # pe_spec: an unused argument of the first released clit.py
WHAT = "CLIT"


def _stages(args: dict, sd: dict) -> tuple[dict, int, int, bool]:
  """`conv_ch`'s params, base_dim (its out-channels), the number of stages and local_attn, checked against args."""
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
  return conv_ch, base_dim, n_imnets, local_attn


def _position_bias(args: dict, sd: dict, local_attn: bool, base_dim: int) -> tuple[dict | None, dict]:
  """The position bias's `pb_proj` params (None without one) and the fields head, posenc_scale, posenc_dims."""
  pos_bias = "pb_encoder.proj.weight" in sd
  if pos_bias != (local_attn and bool(args.get("pb_spec"))):
    raise ValueError("pb_encoder.proj.* must be present exactly when local_attn is on and a pb_spec is given")
  fields = {"head": int(args.get("head", 8)), "posenc_scale": 10.0, "posenc_dims": 64}
  proj = None
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
    if int(pb_args.get("enc_dims", posenc_dims)) != posenc_dims:
      raise ValueError(f"pb_spec enc_dims {pb_args['enc_dims']} differs from pb_encoder.proj's input {posenc_dims}")
    # The official PositionEncoder's posenc_scale default is 6.
    fields.update(head=head_pb, posenc_dims=posenc_dims, posenc_scale=float(pb_args.get("posenc_scale", 6)))
  if base_dim % fields["head"]:
    raise ValueError(f"base_dim {base_dim} is not a multiple of head {fields['head']}")
  return proj, fields


def _mlps(args: dict, sd: dict, n_imnets: int) -> tuple[dict, list, str, list]:
  """Every stage's MLP params {"imnets_i": {"layers_k"}}, the hidden widths, the activation and the Linear indices."""
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
  return imnets, hidden, act, idx


def _radius(args: dict, in_dim: int, base_dim: int, is_cell: bool, local_attn: bool) -> int:
  """The attention radius r, from the first MLP layer's input width `base_dim * (2r + 1)**2 (+ 2 with cells)`."""
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
  return r


def _stage_convs(sd: dict, n_imnets: int, local_attn: bool) -> tuple[dict, set]:
  """Each stage's value (and with local attention query and key) convs, and their state_dict prefixes."""
  params, used = {}, set()
  for i in range(n_imnets):
    params[f"conv_vs_{i}"] = common.conv(sd, f"conv_vs.{i}", WHAT)
    used.add(f"conv_vs.{i}")
    if local_attn:
      params[f"conv_qs_{i}"] = common.conv(sd, f"conv_qs.{i}", WHAT)
      params[f"conv_ks_{i}"] = common.conv(sd, f"conv_ks.{i}", WHAT)
      used |= {f"conv_qs.{i}", f"conv_ks.{i}"}
  return params, used


def convert(checkpoint: dict) -> tuple[dict, dict]:
  """An official LIT/CLIT checkpoint -> (inrsr model config, flax params).

  Args:
    checkpoint: the loaded `.pth` (`inrsr.convert.pth.load`), {'model': {'name': 'clit', 'args', 'sd'}, ...}.

  Returns:
    (config, params): the fields of `inrsr.models.clit.CLIT` with "name": "clit" (a plain dict), and the flax
    params (a pytree of float32 NumPy arrays, `model.apply({"params": params}, ...)`).

  Raises:
    ValueError: not a CLIT checkpoint, an unsupported encoder or position encoder, missing or unexpected keys, or
      shapes that do not fit together.
  """
  args, sd = common.official_spec(checkpoint, "clit", WHAT)
  unknown = sorted(set(args) - ARG_KEYS)
  if unknown:
    raise ValueError(f"unknown CLIT args {unknown}; expected a subset of {sorted(ARG_KEYS)}")
  encoder, enc_params, enc_fields = common.encoder(args, sd, WHAT)
  conv_ch, base_dim, n_imnets, local_attn = _stages(args, sd)
  proj, pb_fields = _position_bias(args, sd, local_attn, base_dim)
  imnets, hidden, act, idx = _mlps(args, sd, n_imnets)
  is_cell = bool(args.get("is_cell", True))
  r = _radius(args, int(imnets["imnets_0"]["layers_0"]["kernel"].shape[0]), base_dim, is_cell, local_attn)

  config = {"name": "clit", "encoder": encoder, "encoder_args": enc_fields, "base_dim": base_dim,
            "head": pb_fields["head"], "r": r, "num_stages": n_imnets, "cell_decode": is_cell,
            "local_attn": local_attn, "pos_bias": proj is not None, "posenc_scale": pb_fields["posenc_scale"],
            "posenc_dims": pb_fields["posenc_dims"], "hidden_list": hidden, "act": act}
  convs, used = _stage_convs(sd, n_imnets, local_attn)
  params = {"encoder_net": enc_params, "conv_ch": conv_ch, **imnets, **convs}
  used |= {"conv_ch", *(f"imnets.{i}.layers.{j}" for i in range(n_imnets) for j in idx)}
  if proj is not None:
    params["pb_proj"] = proj
    used.add("pb_encoder.proj")
  common.check_unused(sd, used | common.encoder_prefixes(encoder, enc_fields), f"{encoder} CLIT")
  common.check_shapes(clit.from_config(config), params, WHAT)
  return config, params
