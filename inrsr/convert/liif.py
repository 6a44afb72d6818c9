"""Official LIIF checkpoints (yinboc/liif `train_liif.py` format) -> inrsr LIIF config and flax params.

Choices:
  * Sizes come from the state_dict, never from presets: EDSR's blocks and width, RDN's D (number of
    `encoder.RDBs.{i}`), C (number of `encoder.RDBs.0.convs.{j}`), G (out-channels of the first dense conv), G0
    and the SFENet kernel size, and the MLP's hidden widths. `res_scale` (not visible in shapes) comes from the
    encoder args, with the official factory's default (1 for 'edsr-baseline', 0.1 for 'edsr').
  * The official 'edsr' encoder (32 blocks, 256 wide) has the same layout as 'edsr-baseline' and becomes
    encoder "edsr-baseline" with its sizes and res_scale.
  * EDSR's unused MeanShift keys (`encoder.sub_mean.*`, `encoder.add_mean.*`) are dropped; any other key the
    model does not use, and any shape that differs from the model built from the inferred config, is a
    ValueError naming it.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from inrsr.convert import common
from inrsr.models import liif

IGNORED = re.compile(r"encoder\.(sub_mean|add_mean)\.(weight|bias)$")
ENCODER_ARG_KEYS = {"edsr-baseline": {"n_resblocks", "n_feats", "res_scale", "scale", "no_upsampling", "rgb_range"},
                    "rdn": {"G0", "RDNkSize", "RDNconfig", "scale", "no_upsampling"}}
ENCODER_ARG_KEYS["edsr"] = ENCODER_ARG_KEYS["edsr-baseline"]


def _spec(checkpoint) -> tuple[dict, dict]:
  """The checkpoint's model args and state_dict, or a ValueError saying what the layout lacks."""
  if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
    got = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ValueError(f"expected an official LIIF checkpoint {{'model': {{'name', 'args', 'sd'}}, ...}}, got {got}")
  spec = checkpoint["model"]
  missing = sorted({"name", "args", "sd"} - set(spec))
  if missing:
    raise ValueError(f"checkpoint['model'] lacks {missing}: expected {{'name': 'liif', 'args': ..., 'sd': ...}}")
  if spec["name"] != "liif":
    raise ValueError(f"checkpoint['model']['name'] is {spec['name']!r}; this converter reads only 'liif'")
  if not isinstance(spec["args"], dict) or not isinstance(spec["sd"], dict):
    raise ValueError("checkpoint['model']['args'] and ['sd'] must be dicts (model args and a state_dict)")
  return spec["args"], spec["sd"]


def _rdn(sd: dict) -> tuple[dict, dict]:
  """Flax params and fields of `inrsr.models.rdn.RDN` from an official RDN state_dict."""
  what = "RDN"
  d = common.count_indexed(sd, r"encoder\.RDBs\.(\d+)\.")
  c = common.count_indexed(sd, r"encoder\.RDBs\.0\.convs\.(\d+)\.")
  if d == 0 or c == 0:
    raise ValueError("state_dict has no encoder.RDBs.0.convs.0.conv.0.weight: not an RDN encoder "
                     "in the official layout (expected encoder.RDBs.{i}.convs.{j}.conv.0.*)")
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


def _check_shapes(model: liif.LIIF, params: dict) -> None:
  """ValueError naming every param whose presence or shape differs from what `model` expects."""
  lr = jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
  q = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
  expected = jax.eval_shape(model.init, jax.random.key(0), lr, q, q)["params"]
  want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  bad = [f"{k}: expected {want.get(k)}, got {got.get(k)}" for k in sorted(set(want) | set(got))
         if want.get(k) != got.get(k)]
  if bad:
    raise ValueError(f"checkpoint does not match the LIIF layout inferred from it ({len(bad)} params): "
                     + "; ".join(bad[:8]))


def convert(checkpoint: dict) -> tuple[dict, dict]:
  """An official LIIF checkpoint -> (inrsr model config, flax params).

  Args:
    checkpoint: the loaded `.pth` (`inrsr.convert.pth.load`): {'model': {'name': 'liif', 'args', 'sd'}, ...}.

  Returns:
    (config, params): config is a plain dict of `inrsr.models.liif.LIIF` fields plus "name": "liif"; params is
    the flax params pytree (float32 NumPy arrays) for `model.apply({"params": params}, ...)`.

  Raises:
    ValueError: not a LIIF checkpoint, an unsupported encoder or an encoder with an upsampler, missing or
      unexpected keys, or shapes that do not fit together.
  """
  args, sd = _spec(checkpoint)
  unknown = sorted(set(args) - {"encoder_spec", "imnet_spec", "local_ensemble", "feat_unfold", "cell_decode"})
  if unknown:
    raise ValueError(f"unknown LIIF args {unknown}; expected encoder_spec, imnet_spec and the three flags")
  enc_spec = args.get("encoder_spec") or {}
  enc_name, enc_args = enc_spec.get("name"), dict(enc_spec.get("args") or {})
  if enc_name not in ENCODER_ARG_KEYS:
    raise ValueError(f"encoder {enc_name!r} is not supported; expected one of {sorted(ENCODER_ARG_KEYS)}")
  if sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name]):
    raise ValueError(f"unknown {enc_name} args {sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name])}")
  if not enc_args.get("no_upsampling", False):
    raise ValueError(f"encoder {enc_name!r} has an upsampler (no_upsampling is not True); LIIF uses features")
  if enc_name == "rdn":
    enc_params, enc_fields = _rdn(sd)
  else:
    enc_params, enc_fields = common.edsr_params(sd, "encoder")
    enc_fields["res_scale"] = float(enc_args.get("res_scale", 0.1 if enc_name == "edsr" else 1.0))

  n_linear = common.count_indexed(sd, r"imnet\.layers\.(\d+)\.weight")
  if n_linear == 0 or n_linear % 2 != 1:
    raise ValueError("state_dict has no imnet.layers.{0,2,...}.weight ending on a Linear: not LIIF's MLP")
  linears = [common.dense(sd, f"imnet.layers.{j}", "LIIF MLP") for j in range(0, n_linear, 2)]
  hidden = [int(p["kernel"].shape[1]) for p in linears[:-1]]
  imnet_args = (args.get("imnet_spec") or {}).get("args") or {}
  if "hidden_list" in imnet_args and list(imnet_args["hidden_list"]) != hidden:
    raise ValueError(f"imnet args hidden_list {imnet_args['hidden_list']} differs from the weights' {hidden}")

  config = {"name": "liif", "encoder": "rdn" if enc_name == "rdn" else "edsr-baseline", "encoder_args": enc_fields,
            "hidden_list": hidden}
  for flag in ("local_ensemble", "feat_unfold", "cell_decode"):
    config[flag] = bool(args.get(flag, True))
  params = {"encoder_net": enc_params, **{f"imnet_{j}": p for j, p in enumerate(linears)}}

  used = {f"{p}.{leaf}" for p in _used_prefixes(config, enc_fields, len(linears)) for leaf in ("weight", "bias")}
  extra = sorted(k for k in sd if k not in used and not IGNORED.match(k))
  if extra:
    raise ValueError(f"state_dict has keys a {config['encoder']} LIIF does not use: {extra[:8]}"
                     + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))
  _check_shapes(liif.from_config(config), params)
  return config, params


def _used_prefixes(config: dict, f: dict, n_linear: int) -> set:
  """Module prefixes (before `.weight`/`.bias`) of every state_dict entry the converted model uses."""
  out = {f"imnet.layers.{2 * j}" for j in range(n_linear)}
  if config["encoder"] == "rdn":
    out |= {"encoder.SFENet1", "encoder.SFENet2", "encoder.GFF.0", "encoder.GFF.1"}
    out |= {f"encoder.RDBs.{i}.LFF" for i in range(f["D"])}
    out |= {f"encoder.RDBs.{i}.convs.{j}.conv.0" for i in range(f["D"]) for j in range(f["C"])}
  else:
    out |= {"encoder.head.0", f"encoder.body.{f['n_resblocks']}"}
    out |= {f"encoder.body.{i}.body.{j}" for i in range(f["n_resblocks"]) for j in (0, 2)}
  return out
