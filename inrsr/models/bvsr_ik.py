"""BVSR-IK (blind video x4 SR with implicit kernels): the official `KCANet` in flax.linen, NHWC.

Source: QZ1-boy/BVSR-IK @ 466f42a, `model_KCA.py` (class `KCANet`); facts in `../shared/bvsr_ik.md`. The released
code is followed where it and the paper disagree (the code's parameter count, 9,304,445, is the paper's 9.30M):

  * Channel order. The official model runs on BGR frames (cv2 I/O) and its SpyNet normalises BGR with the
    ImageNet mean/std in that order. `KCANet.__call__` takes and returns RGB and flips the channels at the
    boundary; `KCANet.forward_bgr` is the official computation on BGR (used to check against the official
    outputs). The flip is exact, so the two are the same model.
  * Implicit kernel dictionary (`KernelDictionary`, the code's `SizeGroupINRConvCord`): N atoms, each its own
    MLP Linear(2, 360) -> sin(w_n x) -> Linear(360, 360) -> sin(w_n x) -> Linear(360, 1, no bias), one learnable
    frequency w_n per atom shared by both sines, initialised linspace(w_min, w_max, N) = 2, 4, ..., 16 (not
    random), PyTorch default init (no SIREN init). Each atom is sampled on an s x s 'ij' grid over [0, 1]^2 for
    s = 3, 5, ..., 13 and scaled by the constant 9 / s^2 (the paper's "random masks" are this constant). The
    dictionary does not depend on the input: it is computed once per module per forward (the official code
    recomputes it on every call; same values).
  * Atom filtering: every input channel c is cross-correlated (zero padding s // 2) with every atom n (channel
    c * N + n); a zero "null" group is prepended, giving R = 1 + max_kernel_size // 2 groups (the paper's
    "1x1 delta atom" is this zero map plus the identity skip). The atoms are combined by a learned 1x1 conv over
    all R * C * N channels (bias) of `maps * mu * omega` plus the input, not by Eq. 3's plain sum; mu = softmax
    over R of a 3x3 conv, omega = an unconstrained 3x3 conv (N channels, repeated over C).
  * "Recurrent Transformer" U-Nets (`UNet`, the code's identical UNet_Spatial / UNet_Tempal): RT blocks are
    Restormer transposed channel attention with q, k, v = chunk3(dwconv3x3(F) + dwconv3x3(h)) (depthwise 3x3,
    no bias; the paper says 3x3 conv), L2-normalised q, k over pixels, learnable temperature (init 1), a dense
    1x1 output projection (the paper says depthwise), then `F1 = F + A`, `F_out = F1 + GDFN(F1)` (expansion 0.5,
    exact GELU, no bias), `h_out = h + A`; no LayerNorm. Convs in the U-Net use reflect padding, no bias, ReLU;
    the up-convs are ConvTranspose k4 s2 p1 (no bias) + ReLU. The deepest encoder's F output is discarded (its
    FFN parameters exist but get no gradient), as in the code. The hidden state is not carried across time.
  * ISC (`SPCNet`): features = ResidualBlocksWithInputConv(3 -> 16, 5 blocks) of the raw frame (the code
    computes them twice on the same frame; once here), both U-Nets take (feat, feat), the atoms filter the raw
    frame (3 channels), and the output is the corrected frame I^ = combiner + frame.
  * ITA (`INRAlign`): x_w = flow_warp(previous feature, flow) (bilinear, zeros padding, align_corners=True);
    fusion1(x_w) and fusion2(lr_feat) (ResidualBlocksWithInputConv -> 32, 3 blocks) feed both U-Nets as
    (current, warped); the atoms filter x_w (64 channels) and the output is combiner + x_w.
  * Flow: SpyNet on the raw (padded) LR frames, not the corrected ones: backward flow i = spynet(ref=frame i,
    supp=frame i + 1), forward flow i = spynet(frame i + 1, frame i).
  * Propagation (BasicVSR style): backward pass t = T-1 .. 0, forward pass t = 0 .. T-1; each step warps and
    aligns the carried 64-channel feature with ITA (not at the first step of a pass, where it is zeros) and
    applies ResidualBlocksWithInputConv(16 + 64 -> 64, 11 blocks) to cat[lr_feat, feature].
  * Official quirk, kept (`official_feature_order=True`): the forward pass reads `lr_feat_l[i]`, a list the
    code fills in the backward loop and never reverses, so forward step t uses the ISC features of frame
    T-1-t (for ITA's fusion2 and the forward resblocks). False uses frame t's own features.
  * Upsampling: fusion ResidualBlocksWithInputConv(128 -> 64, 10 blocks), LeakyReLU(0.1), two
    conv3x3 + PixelShuffle(2) + LeakyReLU (torch channel order c * 4 + i * 2 + j), conv_hr + LeakyReLU,
    conv_last, plus bilinear x4 (align_corners=False) of the corrected frame I^.
  * Departure, off by default (`skip_phase="grid"`): the skip interpolates I^ on the grid the blind recipes
    subsample (`[::4, ::4]`: LR pixel j is HR pixel 4j), not centre-aligned (LR pixel j at HR 4j + 1.5). The
    official skip leaves the network to learn that 1.5 HR px shift; bicubic aligned to the grid scores 2 dB above
    the centred one on blurred Vid4. Pair it with the grid-phase correction target (`data.clean_phase="grid"`),
    or the correction loss pulls I^ back by the same shift.
  * Inputs are replicate-padded to a multiple of 4 and outputs cropped back, as the code's `pad_spatial`.
  * All sizes are fields with the official values as defaults (the code hard-codes most of them); the official
    paper-vs-code notes are in `../shared/bvsr_ik.md` sections 2 and 8. All convs and matmuls use HIGHEST
    precision; every layer uses PyTorch's default init.
  * `stop_flow_gradient` (default False, as the released model has SpyNet in `parameters()`) stops gradients into
    SpyNet; whether the authors froze it is unknown (their train.py is missing).
  * `flow="zero"` (a departure, for training without the pretrained SpyNet weights): no flow network, every
    warp is the identity, so ITA aligns with its atoms and U-Nets alone; default "spynet".

Training (`training_loss`; the official train.py is missing, so this follows the paper's Eq. 8 and the
released `utils.py`/config): L = Charb(SR, HR) + correction_weight * Charb(I^, I^DN) over all T frames, with
the `utils.py` Charbonnier mean(sqrt(d^2 + eps) + eps), eps = 1e-4 (`charbonnier_eps`), weight 0.2
(`corrected_loss_weight` of the config). I^DN is the clean bicubic LR (`lrs_clean` of `inrsr.data.clips`).

Port notes (no effect on the outputs):
  * ISC runs on all T frames in one batched call, SpyNet on both flow directions in one call, and the upsampling
    on all frames at once; the propagation steps after the first of each pass run in `nn.scan` (one compiled
    step per pass). This keeps the compiled program small; the full forward still takes about a minute to
    compile on 2 CPU cores, and a training step (forward + backward) several minutes.
  * Inference (`stream_clip`, behind `inrsr.infer.inference.upscale_clip_frames`) runs the same computation in pieces
    of one frame instead (ISC, each flow, each propagation step, each frame's upsampling: small jitted programs,
    compiled once per frame size), so a clip of any length holds LR-sized states and one frame's activations;
    training keeps the batched `__call__`.
  * Depthwise convs (the q/k/v projections, the GDFN's) are XLA's grouped convolution on GPU and TPU and, on
    CPU, a sum over the 3x3 taps of shifted inputs (`bvsr_ik_layers.depthwise_conv`; the same sums in another
    order), since XLA:CPU runs grouped convolutions and their gradients several times slower.
  * q, k normalisation has torch's zero gradient where a channel's norm is 0 (a dead ReLU channel would
    otherwise give NaN gradients).
  * `init_params(model, key)` draws fresh parameters with `model.init`'s distributions from a trace only;
    `model.init` itself runs the whole model (many minutes on a CPU).
  * Intermediate values are sown under `intermediates` (pass `mutable=["intermediates"]`) for checking against
    the official forward hooks; ITA's per-step values come out of the scan stacked over steps.

The layers (residual blocks, U-Nets, kernel dictionary, ISC, ITA, depthwise convs) are in
`inrsr.models.bvsr_ik_layers`; this module has `KCANet`, its frame-by-frame inference, loss, config and
initialisation.

Checked against the official code (`../shared/fixtures/bvsr_ik`, seeded weights, Vid4 calendar crop, 5 x 36 x 36):
max abs error 2.4e-7 on `outputs`, 1.2e-7 on `lr_corrs`, <= 1.4e-6 on every module hook, 5.5e-6 on the kernel
dictionary (tests/unit/bvsr_ik_test.py).
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from inrsr.models import spynet as spynet_lib
from inrsr.models.bvsr_ik_layers import (INRAlign, ResBlocksInputConv, SPCNet, atom_frequencies, grid_bilinear,
                                         kernel_branch_fields, lrelu, pixel_shuffle)
from inrsr.models.spynet import conv


class KCANet(nn.Module):
  """BVSR-IK: RGB clip (B, T, h, w, 3) in [0, 1] -> {"outputs": (B, T, 4h, 4w, 3), "lr_corrs": (B, T, h, w, 3)}.

  Attributes (official values as defaults; see the module docstring):
    dim: propagation / fusion channels (64).
    num_blocks: residual blocks per propagation branch (11).
    fusion_blocks: residual blocks of the fusion before upsampling (10).
    hr_dim: channels after the second pixel shuffle and of conv_hr (64).
    spc_channels, spc_blocks: ISC feature channels and residual blocks (16, 5).
    spc_unet_base: ISC U-Net base channels (16).
    ita_channels, ita_blocks: ITA fusion / U-Net channels and fusion residual blocks (32, 3).
    unet_num_res: RT blocks per U-Net encoder / decoder level (1).
    num_heads: attention heads (1).
    ffn_expansion: GDFN expansion (0.5).
    num_atoms: dictionary atoms N (8).
    inr_hidden: atom MLP width (360).
    max_kernel_size: largest atom size; R = max_kernel_size // 2 + 1 groups with the null group (13 -> 7).
    w_min, w_max: atom frequency init range (2, 16).
    scale: SR factor; only 4 (two pixel shuffles) exists.
    spynet_levels: SpyNet pyramid levels (6, as the pretrained weights).
    official_feature_order: keep the official forward-pass feature order quirk (see the module docstring).
    stop_flow_gradient: no gradient into SpyNet.
    flow: "spynet" (the official flow) or "zero" (no flow network; identity warps, a departure).
    correction_weight: weight of the correction loss in `training_loss` (0.2; 0 is the paper's "w/o L_C").
    charbonnier_eps: eps of the official Charbonnier loss, mean(sqrt(d^2 + eps) + eps) (1e-4).
    skip_phase: "centre" (the official bilinear skip, align_corners=False) or "grid" (LR pixel j at HR pixel 4j,
      the `[::4]` subsampling's grid; a departure, see the module docstring).
  """

  dim: int = 64
  num_blocks: int = 11
  fusion_blocks: int = 10
  hr_dim: int = 64
  spc_channels: int = 16
  spc_blocks: int = 5
  spc_unet_base: int = 16
  ita_channels: int = 32
  ita_blocks: int = 3
  unet_num_res: int = 1
  num_heads: int = 1
  ffn_expansion: float = 0.5
  num_atoms: int = 8
  inr_hidden: int = 360
  max_kernel_size: int = 13
  w_min: float = 2.0
  w_max: float = 16.0
  scale: int = 4
  spynet_levels: int = 6
  official_feature_order: bool = True
  stop_flow_gradient: bool = False
  flow: str = "spynet"
  correction_weight: float = 0.2
  charbonnier_eps: float = 1e-4
  skip_phase: str = "centre"

  batch_keys = ("lrs",)

  def setup(self):
    if self.scale != 4:
      raise ValueError(f"scale={self.scale}: BVSR-IK upsamples with two fixed x2 pixel shuffles; only 4 exists")
    if self.flow not in ("spynet", "zero"):
      raise ValueError(f"flow={self.flow!r} must be 'spynet' or 'zero'")
    if self.skip_phase not in ("centre", "grid"):
      raise ValueError(f"skip_phase={self.skip_phase!r} must be 'centre' or 'grid'")
    common = kernel_branch_fields(self)
    self.SPC = SPCNet(channels=self.spc_channels, num_blocks=self.spc_blocks, unet_base=self.spc_unet_base,
                      **common)
    self.spynet = spynet_lib.SpyNet(num_levels=self.spynet_levels)
    ita = dict(channels=self.dim, base=self.ita_channels, num_blocks=self.ita_blocks, **common)
    self.INRAlign_forward = INRAlign(**ita)
    self.INRAlign_backward = INRAlign(**ita)
    self.backward_resblocks = ResBlocksInputConv(self.dim, self.num_blocks)
    self.forward_resblocks = ResBlocksInputConv(self.dim, self.num_blocks)
    self.fusion = ResBlocksInputConv(self.dim, self.fusion_blocks)
    self.upsample1 = conv(self.dim * 4, 3, in_features=self.dim)
    self.upsample2 = conv(self.hr_dim * 4, 3, in_features=self.dim)
    self.conv_hr = conv(self.hr_dim, 3, in_features=self.hr_dim)
    self.conv_last = conv(3, 3, in_features=self.hr_dim)

  def example_inputs(self) -> tuple:
    return (jnp.zeros((1, 2, 8, 8, 3), jnp.float32),)

  def __call__(self, lrs: jax.Array) -> dict[str, jax.Array]:
    """RGB clip (B, T, h, w, 3) in [0, 1] -> RGB {"outputs", "lr_corrs"} (the official model on BGR, flipped)."""
    out = self.forward_bgr(lrs[..., ::-1])
    return {k: v[..., ::-1] for k, v in out.items()}

  def forward_bgr(self, lrs: jax.Array) -> dict[str, jax.Array]:
    """The official forward on a BGR clip (B, T, h, w, 3) -> BGR {"outputs", "lr_corrs"}."""
    b, t, h_in, w_in, c = _check_clip(lrs)
    state = self._propagate_bgr(lrs)
    features, lr_hat = state["features"], state["lr_hat"]
    h, w = lr_hat.shape[2:4]
    out = self._upsample_bgr(features.reshape(b * t, h, w, -1), lr_hat.reshape(b * t, h, w, c))
    out = out.reshape(b, t, 4 * h, 4 * w, c)
    return {"outputs": out[:, :, :4 * h_in, :4 * w_in], "lr_corrs": lr_hat[:, :, :h_in, :w_in]}

  def dictionaries(self) -> dict[str, list[jax.Array]]:
    """The three implicit kernel dictionaries, {"isc", "backward", "forward"}: they do not depend on the input, so
    a clip computes them once (`stream_clip`) instead of in every frame's ISC and propagation step."""
    return {"isc": self.SPC.dictionary(), "backward": self.INRAlign_backward.dictionary(),
            "forward": self.INRAlign_forward.dictionary()}

  def isc(self, frames: jax.Array, atoms: list[jax.Array] | None = None) -> tuple[jax.Array, jax.Array]:
    """ISC of padded BGR frames (N, h', w', 3) -> (I^ (N, h', w', 3), features (N, h', w', spc_channels)).

    `atoms`: `dictionaries()["isc"]`, or None to compute them.
    """
    return self.SPC(frames, self.SPC.dictionary() if atoms is None else atoms)

  def flow_between(self, ref: jax.Array, supp: jax.Array) -> jax.Array:
    """The flow from padded BGR frames `ref` to `supp` (N, h', w', 3) -> (N, h', w', 2) (zeros for flow="zero")."""
    if self.flow == "zero":
      return jnp.zeros(ref.shape[:3] + (2,), ref.dtype)
    return self.spynet(ref, supp)

  def propagation_step(self, direction: str, lr_feat: jax.Array, carry: jax.Array | None = None,
                       flow: jax.Array | None = None, atoms: list[jax.Array] | None = None) -> jax.Array:
    """One step of the backward or forward pass: the new (N, h', w', dim) feature.

    Args:
      direction: "backward" or "forward" (static).
      lr_feat: ISC features of the frame this step reads (N, h', w', spc_channels).
      carry: the previous step's feature, None at the first step of a pass (no alignment, zeros).
      flow: the flow that warps `carry` onto this frame (ignored without `carry`).
      atoms: `dictionaries()[direction]`, or None to compute them.

    Returns:
      The step's feature, as the corresponding frame of `__call__`'s passes.
    """
    resblocks = self.backward_resblocks if direction == "backward" else self.forward_resblocks
    if carry is None:
      return resblocks(jnp.concatenate([lr_feat, jnp.zeros(lr_feat.shape[:3] + (self.dim,), lr_feat.dtype)], -1))
    align = self.INRAlign_backward if direction == "backward" else self.INRAlign_forward
    atoms = align.dictionary() if atoms is None else atoms
    return resblocks(jnp.concatenate([lr_feat, align(lr_feat, carry, flow, atoms)], -1))

  def reconstruct(self, features: jax.Array, lr_hat: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The upsampling of N frames: (N, h', w', 2 dim) and (N, h', w', 3) -> RGB (N, 4h, 4w, 3).

    Args:
      features: the backward and forward features of N frames (`propagation_step`'s, concatenated).
      lr_hat: their corrected frames I^ (BGR, `isc`'s).
      size: (h, w) of the input before padding (static): the output is cropped to (4h, 4w).

    Returns:
      (N, 4h, 4w, 3) RGB, as `__call__`'s "outputs" for those frames.
    """
    h_in, w_in = size
    return self._upsample_bgr(features, lr_hat)[:, :4 * h_in, :4 * w_in, ::-1]

  def _propagate_bgr(self, lrs: jax.Array) -> dict[str, jax.Array]:
    """The recurrences of a BGR clip, every frame at once: {"features": (B, T, h', w', 2 dim), "lr_hat"}."""
    b, t, h_in, w_in, c = lrs.shape
    pad_h, pad_w = (4 - h_in % 4) % 4, (4 - w_in % 4) % 4
    lrs = jnp.pad(lrs, ((0, 0), (0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    h, w = h_in + pad_h, w_in + pad_w

    # Flows between neighbours, both directions in one SpyNet call.
    if t > 1 and self.flow == "zero":
      flows_backward = flows_forward = jnp.zeros((b, t - 1, h, w, 2), lrs.dtype)
    elif t > 1:
      first = lrs[:, :-1].reshape(-1, h, w, c)
      second = lrs[:, 1:].reshape(-1, h, w, c)
      flows = self.spynet(jnp.concatenate([first, second]), jnp.concatenate([second, first]))
      if self.stop_flow_gradient:
        flows = jax.lax.stop_gradient(flows)
      flows_backward = flows[:b * (t - 1)].reshape(b, t - 1, h, w, 2)
      flows_forward = flows[b * (t - 1):].reshape(b, t - 1, h, w, 2)
      self.sow("intermediates", "hook_flows_backward", flows_backward)
      self.sow("intermediates", "hook_flows_forward", flows_forward)

    # ISC on every frame at once (the dictionary once).
    lr_hat, lr_feat = self.SPC(lrs.reshape(b * t, h, w, c), self.SPC.dictionary())
    lr_hat = lr_hat.reshape(b, t, h, w, c)
    lr_feat = lr_feat.reshape(b, t, h, w, -1)

    # Backward pass t = T-1 .. 0, then forward pass t = 0 .. T-1. The first step of each pass has no
    # alignment; the others run in an nn.scan (one compiled step per pass, parameters shared).
    zeros = jnp.zeros((b, h, w, self.dim), lrs.dtype)
    time_major = lambda a: jnp.moveaxis(a, 1, 0)
    first = self.backward_resblocks(jnp.concatenate([lr_feat[:, t - 1], zeros], -1))
    backward = first[:, None]
    if t > 1:
      order = np.arange(t - 2, -1, -1)
      xs = (time_major(lr_feat[:, order]), time_major(flows_backward[:, order]))
      _, (feats, hooks) = _scan(KCANet._backward_step)(self, first, xs, self.INRAlign_backward.dictionary())
      backward = jnp.concatenate([jnp.moveaxis(feats[::-1], 0, 1), backward], 1)  # frames 0 .. T-1
      self._sow_hooks("INRAlign_backward", hooks)
    self.sow("intermediates", "hook_backward_resblocks", backward)

    order = np.arange(t - 1, -1, -1) if self.official_feature_order else np.arange(t)
    first = self.forward_resblocks(jnp.concatenate([lr_feat[:, order[0]], zeros], -1))
    forward = first[:, None]
    if t > 1:
      xs = (time_major(lr_feat[:, order[1:]]), time_major(flows_forward))
      _, (feats, hooks) = _scan(KCANet._forward_step)(self, first, xs, self.INRAlign_forward.dictionary())
      forward = jnp.concatenate([forward, jnp.moveaxis(feats, 0, 1)], 1)
      self._sow_hooks("INRAlign_forward", hooks)
    self.sow("intermediates", "hook_forward_resblocks", forward)
    return {"features": jnp.concatenate([backward, forward], -1), "lr_hat": lr_hat}

  def _upsample_bgr(self, x: jax.Array, lr_hat: jax.Array) -> jax.Array:
    """The upsampling of N frames: features (N, h, w, 2 dim), I^ (N, h, w, 3) BGR -> (N, 4h, 4w, 3) BGR."""
    h, w = lr_hat.shape[1:3]
    x = self.fusion(x)
    self.sow("intermediates", "hook_fusion", x)
    x = lrelu(x)
    x = lrelu(pixel_shuffle(self.upsample1(x), 2))
    x = lrelu(pixel_shuffle(self.upsample2(x), 2))
    x = lrelu(self.conv_hr(x))
    x = self.conv_last(x)
    if self.skip_phase == "grid":
      base = grid_bilinear(lr_hat, 4)
    else:
      base = spynet_lib.resize_bilinear(lr_hat, (4 * h, 4 * w), scale_factor=4.0)
    self.sow("intermediates", "hook_img_upsample", base)
    return x + base

  @nn.nowrap
  def training_loss(self, outputs: dict[str, jax.Array], batch: dict) -> tuple[jax.Array, jax.Array]:
    """Charb(SR, batch["rgb"]) + correction_weight * Charb(I^, batch["lrs_clean"]), over all frames.

    Args:
      outputs: `__call__`'s {"outputs": (B, T, 4h, 4w, 3), "lr_corrs": (B, T, h, w, 3)}.
      batch: a `clips` batch with "rgb" (the HR frames) and "lrs_clean" (the correction target I^DN).

    Returns:
      (loss, the SR frames).
    """
    sr = charbonnier(outputs["outputs"], batch["rgb"], self.charbonnier_eps)
    if not self.correction_weight:
      return sr, outputs["outputs"]
    corr = charbonnier(outputs["lr_corrs"], batch["lrs_clean"], self.charbonnier_eps)
    return sr + self.correction_weight * corr, outputs["outputs"]

  def _backward_step(self, carry, xs, atoms):
    feat, flow = xs
    aligned, hooks = self.INRAlign_backward(feat, carry, flow, atoms, return_hooks=True)
    new = self.backward_resblocks(jnp.concatenate([feat, aligned], -1))
    return new, (new, hooks)

  def _forward_step(self, carry, xs, atoms):
    feat, flow = xs
    aligned, hooks = self.INRAlign_forward(feat, carry, flow, atoms, return_hooks=True)
    new = self.forward_resblocks(jnp.concatenate([feat, aligned], -1))
    return new, (new, hooks)

  def _sow_hooks(self, prefix: str, hooks: dict) -> None:
    """Sow an ITA's per-step values, (steps, B, ...) in the order the pass visits the frames."""
    for k, v in hooks.items():
      self.sow("intermediates", f"hook_{prefix}_{k}", v)


def _check_clip(lrs: jax.Array) -> tuple[int, ...]:
  """The shape (B, T, h, w, 3) of a clip, or a ValueError."""
  if lrs.ndim != 5 or lrs.shape[-1] != 3:
    raise ValueError(f"expected lrs (B, T, h, w, 3), got shape {lrs.shape}")
  return lrs.shape


def _scan(step):
  """nn.scan over a propagation step method: parameters shared across steps, atoms broadcast."""
  return nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=(0, nn.broadcast),
                 out_axes=0)


@functools.lru_cache(maxsize=8)
def _frame_programs(model: KCANet) -> dict:
  """The jitted per-frame pieces of `stream_clip` (shapes of one frame; compiled once per frame size)."""
  def program(method):
    return jax.jit(lambda params, *args: model.apply({"params": params}, *args, method=method))

  # Both passes run one program (one trace per arity): it reads the backward pass's parameter names, and the
  # forward pass's parameters are handed in under them (`_step_params`).
  return {"dictionaries": program(KCANet.dictionaries), "isc": program(KCANet.isc),
          "flow": program(KCANet.flow_between),
          "step": program(lambda m, *a: m.propagation_step("backward", *a))}


def _step_params(params, direction: str) -> dict:
  """The parameters of one pass's propagation step, under the backward pass's names (`_frame_programs`)."""
  return {"INRAlign_backward": params[f"INRAlign_{direction}"],
          "backward_resblocks": params[f"{direction}_resblocks"]}


@functools.lru_cache(maxsize=16)
def _reconstruct_program(model: KCANet, size: tuple[int, int]):
  return jax.jit(lambda params, features, lr_hat: model.apply({"params": params}, features, lr_hat, size,
                                                              method=KCANet.reconstruct))


def stream_clip(model: KCANet, params, frames: Sequence[np.ndarray]):
  """`model` on an RGB clip at inference, frame by frame: the HR frames one at a time, in order.

  The same computation as `__call__` on the whole clip (which batches the frames, for training), in pieces of
  one frame: the backward pass runs T-1 .. 0 (ISC, the flow to the next frame, one propagation step each), then
  the forward pass 0 .. T-1, each of its steps followed by that frame's upsampling. Between steps only LR-sized
  arrays are held: the corrected frames I^, the ISC features and the backward features of the frames not yet
  upsampled, and the forward carry (each frame is padded when read); the activations are one frame's, whatever
  T is. The three kernel dictionaries are computed once for the clip (`KCANet.dictionaries`).

  Args:
    model: a KCANet (batch of one clip).
    params: its parameters.
    frames: T RGB frames (h, w, 3) float32 in [0, 1], all the same size.

  Yields:
    T RGB frames (4h, 4w, 3) float32 (not clipped), equal to `__call__`'s "outputs" up to float32 rounding.
  """
  h_in, w_in = frames[0].shape[:2]
  pad = ((0, (4 - h_in % 4) % 4), (0, (4 - w_in % 4) % 4), (0, 0))
  lr = lambda i: jnp.asarray(np.pad(np.asarray(frames[i], np.float32)[..., ::-1], pad, mode="edge")[None])
  run = _frame_programs(model)
  reconstruct = _reconstruct_program(model, (int(h_in), int(w_in)))
  t = len(frames)
  atoms = run["dictionaries"](params)  # once a clip
  step_params = {d: _step_params(params, d) for d in ("backward", "forward")}
  lr_hat, lr_feat, backward = [None] * t, [None] * t, [None] * t
  following = None  # the frame after i (the backward pass's flow target)
  for i in range(t - 1, -1, -1):
    frame = lr(i)
    lr_hat[i], lr_feat[i] = run["isc"](params, frame, atoms["isc"])
    if i == t - 1:
      backward[i] = run["step"](step_params["backward"], lr_feat[i])
    else:
      backward[i] = run["step"](step_params["backward"], lr_feat[i], backward[i + 1],
                                run["flow"](params, frame, following), atoms["backward"])
    backward[i].block_until_ready()  # one frame in flight: asynchronous dispatch would queue every frame's work
    following = frame
  order = list(range(t - 1, -1, -1)) if model.official_feature_order else list(range(t))
  carry = previous = None
  for i in range(t):
    frame = lr(i)
    if carry is None:
      carry = run["step"](step_params["forward"], lr_feat[order[i]])
    else:
      carry = run["step"](step_params["forward"], lr_feat[order[i]], carry, run["flow"](params, frame, previous),
                          atoms["forward"])
    previous = frame
    out = reconstruct(params, jnp.concatenate([backward[i], carry], -1), lr_hat[i])
    lr_feat[order[i]] = backward[i] = lr_hat[i] = None  # each is read once
    yield np.asarray(out[0])


def charbonnier(pred: jax.Array, target: jax.Array, eps: float = 1e-4) -> jax.Array:
  """The official `utils.CharbonnierLoss`: mean(sqrt((pred - target)^2 + eps) + eps) (scalar)."""
  d = pred.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.sqrt(d * d + eps) + eps)


MODEL_FIELDS = tuple(f for f in KCANet.__dataclass_fields__ if f not in ("parent", "name"))


def from_config(config) -> KCANet:
  """Build a KCANet from a config's `model` section (fields as in `KCANet`; unknown fields are an error)."""
  keys = set(config.keys()) - {"name"}
  unknown = sorted(keys - set(MODEL_FIELDS))
  if unknown:
    raise ValueError(f"unknown bvsr_ik model config fields {unknown}; expected a subset of {MODEL_FIELDS}")
  return KCANet(**{k: config[k] for k in MODEL_FIELDS if k in keys})


def official_config() -> ml_collections.ConfigDict:
  """The released model's fields (9,304,445 parameters)."""
  return ml_collections.ConfigDict({"name": "bvsr_ik", **{f: getattr(KCANet(), f) for f in MODEL_FIELDS}})


def param_count(model: KCANet, shape: Sequence[int] = (1, 2, 8, 8, 3)) -> int:
  """Number of parameters of `model`, computed with `jax.eval_shape` (no allocation)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(tuple(shape), jnp.float32))
  return sum(int(x.size) for x in jax.tree.leaves(shapes["params"]))


def init_params(model: KCANet, key: jax.Array) -> dict:
  """Fresh parameters drawn like `model.init` (PyTorch default init), in seconds instead of minutes.

  `model.init` runs the whole forward pass, op by op (many minutes on a CPU) or compiled together with one PRNG
  kernel per parameter (several minutes). Here the tree comes from `jax.eval_shape` (a trace only) and every
  parameter from one uniform draw: weights and biases U(+-1/sqrt(fan_in)) with torch's fan_in (a ConvTranspose
  weight (in, out, k, k) has fan_in = out * k * k), attention temperatures 1, atom frequencies
  linspace(w_min, w_max, N). Same distributions as `model.init`, not the same values.
  """
  shapes = jax.eval_shape(model.init, key, *model.example_inputs())["params"]
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  sizes = [int(np.prod(s.shape)) for _, s in leaves]
  uniform = np.asarray(jax.random.uniform(key, (sum(sizes),), jnp.float32, -1.0, 1.0))
  freqs = atom_frequencies(model.num_atoms, model.w_min, model.w_max)
  flat = {tuple(getattr(k, "key", k) for k in path): s.shape for path, s in leaves}
  out, offset = [], 0
  for (path, s), n in zip(leaves, sizes):
    names = tuple(getattr(k, "key", k) for k in path)
    leaf, parent = names[-1], names[-2]
    if leaf == "temperature":
      value = np.ones(s.shape, np.float32)
    elif leaf == "w0":
      value = np.full(s.shape, freqs[int(parent.rsplit("_", 1)[1])], np.float32)
    else:
      kernel = s.shape if leaf == "kernel" else flat[names[:-1] + ("kernel",)]
      if parent in ("up1", "up2"):  # ConvTranspose4x4
        fan_in = kernel[0] * kernel[1] * kernel[-1]
      else:
        fan_in = int(np.prod(kernel[:-1]))
      value = (uniform[offset:offset + n] / np.sqrt(fan_in)).reshape(s.shape).astype(np.float32)
    offset += n
    out.append(jnp.asarray(value))
  return jax.tree_util.tree_unflatten(treedef, out)
