"""Layout conversions shared by the official-checkpoint converters (PyTorch -> flax.linen).

Besides the layer conversions: what the LIIF-family converters (LIIF, CLIT) share, the official checkpoint
{'model': {'name', 'args', 'sd'}, ...} (`official_spec`), its EDSR / RDN encoder (`encoder`, `rdn_params`,
`encoder_prefixes`) and the final checks that every key is used and every shape fits (`check_unused`,
`check_shapes`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

# EDSR's MeanShift keys, in the state_dict but unused (the model normalises its input itself).
IGNORED = re.compile(r"encoder\.(sub_mean|add_mean)\.(weight|bias)$")
# The official encoder_spec names and the args each takes.
ENCODER_ARG_KEYS = {"edsr-baseline": {"n_resblocks", "n_feats", "res_scale", "scale", "no_upsampling", "rgb_range"},
                    "rdn": {"G0", "RDNkSize", "RDNconfig", "scale", "no_upsampling"}}
ENCODER_ARG_KEYS["edsr"] = ENCODER_ARG_KEYS["edsr-baseline"]


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch conv weight (O, I, kh, kw) -> flax kernel (kh, kw, I, O)."""
  if w.ndim != 4:
    raise ValueError(f"expected a 4-D conv weight (O, I, kh, kw), got shape {w.shape}")
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)), np.float32)


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """PyTorch Linear weight (out, in) -> flax Dense kernel (in, out)."""
  if w.ndim != 2:
    raise ValueError(f"expected a 2-D Linear weight (out, in), got shape {w.shape}")
  return np.ascontiguousarray(w.T, np.float32)


def require(sd: dict, key: str, what: str) -> np.ndarray:
  """sd[key], or a ValueError saying which key of which layout is missing."""
  if key not in sd:
    raise ValueError(f"state_dict has no {key!r}: not a {what} checkpoint in the official layout")
  return np.asarray(sd[key])


def conv(sd: dict, prefix: str, what: str) -> dict:
  """Flax params {"kernel", "bias"} of a PyTorch Conv2d at `prefix`."""
  return {"kernel": conv_kernel(require(sd, f"{prefix}.weight", what)),
          "bias": np.asarray(require(sd, f"{prefix}.bias", what), np.float32)}


def dense(sd: dict, prefix: str, what: str) -> dict:
  """Flax params {"kernel", "bias"} of a PyTorch Linear at `prefix`."""
  return {"kernel": dense_kernel(require(sd, f"{prefix}.weight", what)),
          "bias": np.asarray(require(sd, f"{prefix}.bias", what), np.float32)}


def count_indexed(sd: dict, pattern: str) -> int:
  """Number of distinct i in keys matching `pattern` (a regex with one `(\\d+)` group)."""
  rx = re.compile(pattern)
  found = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
  return max(found) + 1 if found else 0


def edsr_params(sd: dict, prefix: str = "encoder") -> tuple[dict, dict]:
  """Flax params and fields of `inrsr.models.edsr.EDSR` from an official EDSR-baseline state_dict.

  Args:
    sd: the state_dict (numpy arrays, PyTorch layout).
    prefix: the encoder's key prefix ("encoder" in LIIF, HIIF and CLIT checkpoints).

  Returns:
    (params, fields): fields = {"n_resblocks", "n_feats"} read from the shapes. MeanShift keys are ignored.
  """
  what = "EDSR-baseline"
  n_blocks = count_indexed(sd, rf"{re.escape(prefix)}\.body\.(\d+)\.body\.0\.weight")
  if n_blocks == 0:
    raise ValueError(f"state_dict has no {prefix}.body.0.body.0.weight: not an {what} encoder")
  n_feats = require(sd, f"{prefix}.head.0.weight", what).shape[0]
  params = {"head": conv(sd, f"{prefix}.head.0", what), "body_out": conv(sd, f"{prefix}.body.{n_blocks}", what)}
  for i in range(n_blocks):
    params[f"body_{i}_conv1"] = conv(sd, f"{prefix}.body.{i}.body.0", what)
    params[f"body_{i}_conv2"] = conv(sd, f"{prefix}.body.{i}.body.2", what)
  return params, {"n_resblocks": n_blocks, "n_feats": int(n_feats)}


def official_spec(checkpoint, name: str, what: str) -> tuple[dict, dict]:
  """The model args and state_dict of an official {'model': {'name', 'args', 'sd'}, ...} checkpoint.

  Args:
    checkpoint: the loaded `.pth`.
    name: the model name the file must give (e.g. "liif").
    what: the model as errors name it (e.g. "LIIF").

  Returns:
    (args, state_dict).

  Raises:
    ValueError: saying what the layout lacks or which model it holds.
  """
  if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
    got = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise ValueError(f"expected an official {what} checkpoint {{'model': {{'name', 'args', 'sd'}}, ...}}, got {got}")
  spec = checkpoint["model"]
  missing = sorted({"name", "args", "sd"} - set(spec))
  if missing:
    raise ValueError(f"checkpoint['model'] lacks {missing}: expected {{'name': '{name}', 'args': ..., 'sd': ...}}")
  if spec["name"] != name:
    raise ValueError(f"checkpoint['model']['name'] is {spec['name']!r}; this converter reads only '{name}'")
  if not isinstance(spec["args"], dict) or not isinstance(spec["sd"], dict):
    raise ValueError("checkpoint['model']['args'] and ['sd'] must be dicts (model args and a state_dict)")
  return spec["args"], spec["sd"]


def rdn_params(sd: dict) -> tuple[dict, dict]:
  """Flax params and fields of `inrsr.models.rdn.RDN` from an official RDN state_dict (prefix `encoder.`).

  Returns:
    (params, fields): fields = {"D", "C", "G", "G0", "kernel_size"} read from the shapes.
  """
  what = "RDN"
  d = count_indexed(sd, r"encoder\.RDBs\.(\d+)\.")
  c = count_indexed(sd, r"encoder\.RDBs\.0\.convs\.(\d+)\.")
  if d == 0 or c == 0:
    raise ValueError("state_dict has no encoder.RDBs.0.convs.0.conv.0.weight: not an RDN encoder in the official "
                     "layout (expected encoder.RDBs.{i}.convs.{j}.conv.0.*)")
  g = int(require(sd, "encoder.RDBs.0.convs.0.conv.0.weight", what).shape[0])
  sfe1 = require(sd, "encoder.SFENet1.weight", what)
  fields = {"D": d, "C": c, "G": g, "G0": int(sfe1.shape[0]), "kernel_size": int(sfe1.shape[-1])}
  params = {"SFENet1": conv(sd, "encoder.SFENet1", what), "SFENet2": conv(sd, "encoder.SFENet2", what),
            "GFF_0": conv(sd, "encoder.GFF.0", what), "GFF_1": conv(sd, "encoder.GFF.1", what)}
  for i in range(d):
    for j in range(c):
      params[f"RDB_{i}_conv_{j}"] = conv(sd, f"encoder.RDBs.{i}.convs.{j}.conv.0", what)
    params[f"RDB_{i}_LFF"] = conv(sd, f"encoder.RDBs.{i}.LFF", what)
  return params, fields


def encoder(args: dict, sd: dict, what: str) -> tuple[str, dict, dict]:
  """The encoder of an official LIIF-family checkpoint, from its `encoder_spec` arg and the `encoder.*` keys.

  The official 'edsr' (32 blocks, 256 wide) has the layout of 'edsr-baseline' and becomes "edsr-baseline" with
  its sizes; `res_scale` (not visible in shapes) comes from the args, with the official factory's default (0.1
  for 'edsr', 1 for 'edsr-baseline').

  Args:
    args: the checkpoint's model args.
    sd: its state_dict.
    what: the model as errors name it.

  Returns:
    (inrsr encoder name "edsr-baseline" or "rdn", the encoder's flax params, its fields).

  Raises:
    ValueError: an unsupported encoder, unknown encoder args, or an encoder with an upsampler.
  """
  enc_spec = args.get("encoder_spec") or {}
  enc_name, enc_args = enc_spec.get("name"), dict(enc_spec.get("args") or {})
  if enc_name not in ENCODER_ARG_KEYS:
    raise ValueError(f"encoder {enc_name!r} is not supported; expected one of {sorted(ENCODER_ARG_KEYS)}")
  if sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name]):
    raise ValueError(f"unknown {enc_name} args {sorted(set(enc_args) - ENCODER_ARG_KEYS[enc_name])}")
  if not enc_args.get("no_upsampling", False):
    raise ValueError(f"encoder {enc_name!r} has an upsampler (no_upsampling is not True); {what} uses features")
  if enc_name == "rdn":
    return "rdn", *rdn_params(sd)
  params, fields = edsr_params(sd, "encoder")
  fields["res_scale"] = float(enc_args.get("res_scale", 0.1 if enc_name == "edsr" else 1.0))
  return "edsr-baseline", params, fields


def encoder_prefixes(name: str, fields: dict) -> set:
  """Module prefixes (before `.weight`/`.bias`) of every `encoder.*` state_dict entry an encoder uses."""
  if name == "rdn":
    out = {"encoder.SFENet1", "encoder.SFENet2", "encoder.GFF.0", "encoder.GFF.1"}
    out |= {f"encoder.RDBs.{i}.LFF" for i in range(fields["D"])}
    return out | {f"encoder.RDBs.{i}.convs.{j}.conv.0" for i in range(fields["D"]) for j in range(fields["C"])}
  out = {"encoder.head.0", f"encoder.body.{fields['n_resblocks']}"}
  return out | {f"encoder.body.{i}.body.{j}" for i in range(fields["n_resblocks"]) for j in (0, 2)}


def check_unused(sd: dict, prefixes: set, what: str) -> None:
  """ValueError naming the state_dict keys outside `prefixes` (`.weight`/`.bias` of each) and `IGNORED`.

  Args:
    sd: the state_dict.
    prefixes: module prefixes of every entry the converted model uses.
    what: the model as the error names it (e.g. "edsr-baseline LIIF").
  """
  used = {f"{p}.{leaf}" for p in prefixes for leaf in ("weight", "bias")}
  extra = sorted(k for k in sd if k not in used and not IGNORED.match(k))
  if extra:
    raise ValueError(f"state_dict has keys a {what} does not use: {extra[:8]}"
                     + (f" and {len(extra) - 8} more" if len(extra) > 8 else ""))


def check_shapes(model, params: dict, what: str, inputs=None) -> None:
  """ValueError naming every param whose presence or shape differs from what `model` expects.

  Args:
    model: the flax module built from the inferred config.
    params: the converted params.
    what: the model as the error names it (e.g. "LIIF").
    inputs: `jax.ShapeDtypeStruct`s `model.init` takes; default a LIIF-family model's (lr, coords, cells).
  """
  if inputs is None:
    lr = jax.ShapeDtypeStruct((1, 4, 4, 3), jnp.float32)
    q = jax.ShapeDtypeStruct((1, 2, 2), jnp.float32)
    inputs = (lr, q, q)
  expected = jax.eval_shape(model.init, jax.random.key(0), *inputs)["params"]
  want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
  bad = [f"{k}: expected {want.get(k)}, got {got.get(k)}" for k in sorted(set(want) | set(got))
         if want.get(k) != got.get(k)]
  if bad:
    raise ValueError(f"checkpoint does not match the {what} layout inferred from it ({len(bad)} params): "
                     + "; ".join(bad[:8]))
