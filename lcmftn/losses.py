"""Generator and discriminator losses of every trainable system (LCMFTN paper §3.3, DESIGN §3).

* ``lcmftn`` / ``lcmftn-nocmft`` (eq. 9–11): ``λ1·L1 + λ2·Σ_f MSE(VGG_f(Y), VGG_f(G(X)))``,
  f = VGG-19 conv layers 1, 3, 5, 9, 13 counted from 1 (= relu1_1, relu2_1, relu3_1, relu4_1,
  relu5_1). NOTE: the paper writes ``||·||₂``; we use the mean squared error per layer (the
  element-count normalisation keeps λ2 = 2e-2 meaningful at any image size).
* ``pix2pix-ref`` (Isola et al.): ``λ_adv·GAN + pix2pix_lambda_l1·L1`` (100 in pix2pix).
* ``tcvc`` (Thasarathan et al.): ``λ_adv·GAN + λ_content·content + λ_style·style + tcvc_lambda_l1·L1``
  with content = mean L1 of VGG features (relu1_1..relu5_1) and style = L1 between their Gram
  matrices (1, 1, 1000, 10 in TCVC).
* ``baseline_loss="ours"`` trains the GAN baselines with the LCMFTN loss plus the adversarial
  term (the paper's "Pix2Pix (with ref/our loss)" and "TCVC (our loss)").
* GAN: the non-saturating BCE-with-logits loss on PatchGAN maps; D loss = ½(BCE(real, 1) + BCE(fake, 0)).

VGG-19 weights (``LossConfig.vgg_weights``), recorded by :func:`vgg_source`:
  ``"torchvision"`` — torchvision's IMAGENET1K_V1 (needs torchvision and its cache or a network);
  a local path or ``s3://`` URI — a torchvision-layout state dict (``features.N.weight``), as
  ``.pth``/``.pt`` (loaded with ``weights_only=True``) or ``.safetensors``;
  ``"random"`` — seeded random init, for offline smoke runs only (logged as a warning);
  ``"none"`` — no VGG; only allowed when every VGG term has weight 0.
The VGG feature stack is built here in plain torch (no torchvision import) with torchvision's
module indices, so ``vgg19().state_dict()`` files load unchanged.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

VGG_OPTIONS = '"torchvision", a local path or s3:// URI of a torchvision-layout VGG-19 state dict, "random" or "none"'
# torchvision vgg19 ("E") feature config; "M" = max-pool.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Conv layer numbers (1-based) used by the paper (1, 3, 5, 9, 13) -> the ReLU after each.
PAPER_VGG_CONV_LAYERS = (1, 3, 5, 9, 13)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_VGG_SEED = 0


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and the VGG-19 source (see module docstring)."""

    lambda_l1: float = 10.0
    """LCMFTN λ1 (L1 colour loss)."""
    lambda_vgg: float = 2e-2
    """LCMFTN λ2 (VGG-19 perceptual loss); 0 = off (then no VGG is needed)."""
    vgg_weights: str = "torchvision"
    """"torchvision" | local path / s3:// URI of a torchvision-layout state dict | "random" | "none"."""
    lambda_adv: float = 1.0
    """Adversarial weight of the GAN baselines (pix2pix-ref, tcvc)."""
    lambda_content: float = 1.0
    """TCVC content (VGG feature L1) weight."""
    lambda_style: float = 1000.0
    """TCVC style (Gram matrix L1) weight."""
    tcvc_lambda_l1: float = 10.0
    """TCVC L1 weight."""
    pix2pix_lambda_l1: float = 100.0
    """Pix2Pix L1 weight."""
    baseline_loss: str = "original"
    """GAN baselines: "original" (their papers' losses) or "ours" (LCMFTN loss + adversarial)."""
    gate_loss: str = "off"
    """``lcmftn-ours`` only (issue 12, "never worse than a warp"): "off" | "penalty" (λ_gate ·
    mean(gate · 1[|base − truth| < τ])) | "bce" (λ_gate · BCE(gate logit, 1[|base − truth| ≥ τ])
    over the changed region) | "better" (λ_gate · BCE(gate logit, 1[|T − truth| + τ/4 < |base −
    truth|]) over the changed region: open where the correction beats the base); computed by the model's ``auxiliary_losses`` hook
    (``lcmftn.models.ours.gate_loss_term``). "off" leaves the loss exactly as before."""
    lambda_gate: float = 10.0
    """Weight of the gate term (same scale as λ1 = 10); used only when ``gate_loss`` is not "off"."""
    gate_tau: float = 0.1
    """Colour distance (max over RGB, [0, 1] units) under which the warp counts as right."""


# ----------------------------------------------------------------------------- VGG-19


def _relu_indices(conv_layers: Sequence[int]) -> list[int]:
    """torchvision ``features`` indices of the ReLUs after the given 1-based conv layers."""
    idx, conv, out = 0, 0, {}
    for v in VGG19_CFG:
        if v == "M":
            idx += 1
            continue
        conv += 1
        out[conv] = idx + 1  # conv at idx, ReLU at idx + 1
        idx += 2
    bad = [c for c in conv_layers if c not in out]
    if bad:
        raise ValueError(f"VGG-19 has conv layers 1..16, got {bad}")
    return [out[c] for c in conv_layers]


class VGG19Features(nn.Module):
    """VGG-19 ``features`` up to the deepest requested ReLU, frozen, ImageNet-normalised input.

    ``forward(x [B,3,H,W] in [0,1]) -> list of feature maps`` at the requested layers.
    State-dict keys match torchvision: ``features.0.weight``, ``features.0.bias``, ...
    """

    def __init__(self, conv_layers: Sequence[int] = PAPER_VGG_CONV_LAYERS):
        super().__init__()
        self.taps = _relu_indices(conv_layers)
        layers: list[nn.Module] = []
        c_in = 3
        for v in VGG19_CFG:
            if len(layers) > max(self.taps):
                break
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c_in = int(v)
        self.features = nn.Sequential(*layers[: max(self.taps) + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always frozen

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                feats.append(x)
        return feats

    def load_torchvision_state_dict(self, state: dict[str, Tensor], source: str) -> None:
        """Load ``features.N.*`` tensors (extra keys such as ``classifier.*`` are ignored)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"VGG-19 weights {source}: missing tensors {missing[:4]}"
                             f"{' ...' if len(missing) > 4 else ''} (expected torchvision's vgg19 layout)")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(f"VGG-19 weights {source}: {k} has shape {tuple(state[k].shape)}, "
                                 f"expected {tuple(v.shape)}")
        self.load_state_dict({k: state[k].float() for k in own})


def _read_state_dict(uri: str) -> dict[str, Tensor]:
    if uri.startswith("s3://"):
        from lcmftn.integrations import storage  # lazy: boto3/pyarrow S3 only when asked

        data = storage.read_bytes(uri)
    else:
        path = Path(uri.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise ValueError(f"VGG-19 weights file {str(path)!r} does not exist; "
                             f"loss.vgg_weights must be {VGG_OPTIONS}")
        data = path.read_bytes()
    try:
        if uri.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"VGG-19 weights {uri!r}: cannot read as a state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"VGG-19 weights {uri!r}: expected a state dict, got {type(state).__name__}")
    return state


def _torchvision_vgg19_state() -> dict[str, Tensor]:
    try:
        from torchvision.models import VGG19_Weights, vgg19
    except ImportError as exc:
        raise ValueError(
            "loss.vgg_weights='torchvision' needs torchvision, which is not installed. "
            f"Set loss.vgg_weights to {VGG_OPTIONS} (or loss.lambda_vgg=0)."
        ) from exc
    try:
        return vgg19(weights=VGG19_Weights.IMAGENET1K_V1).state_dict()
    except Exception as exc:  # noqa: BLE001 - typically no network
        raise ValueError(
            f"loss.vgg_weights='torchvision': cannot load IMAGENET1K_V1 weights ({exc}). "
            f"Without a network, set loss.vgg_weights to {VGG_OPTIONS}."
        ) from exc


def build_vgg(weights: str, conv_layers: Sequence[int] = PAPER_VGG_CONV_LAYERS) -> VGG19Features:
    """A frozen VGG-19 feature extractor from ``weights`` (see module docstring)."""
    vgg = VGG19Features(conv_layers)
    if weights == "none":
        raise ValueError(f"a VGG loss term has weight > 0 but loss.vgg_weights='none'; set it to {VGG_OPTIONS}, "
                         "or set the VGG loss weights to 0")
    if weights == "random":
        log.warning("VGG-19 perceptual loss uses a RANDOM (not pretrained) backbone, seed %d; "
                    "for offline smoke runs only", RANDOM_VGG_SEED)
        gen = torch.Generator().manual_seed(RANDOM_VGG_SEED)
        with torch.no_grad():
            for m in vgg.features:
                if isinstance(m, nn.Conv2d):  # torchvision's VGG init: kaiming normal, fan_out
                    std = (2.0 / (m.out_channels * 9)) ** 0.5
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                    m.bias.zero_()
        return vgg
    if weights == "torchvision":
        vgg.load_torchvision_state_dict(_torchvision_vgg19_state(), "torchvision IMAGENET1K_V1")
        return vgg
    if not weights:
        raise ValueError(f"loss.vgg_weights is empty; set it to {VGG_OPTIONS}")
    vgg.load_torchvision_state_dict(_read_state_dict(weights), repr(weights))
    log.info("VGG-19 weights loaded from %s", weights)
    return vgg


def vgg_source(cfg: LossConfig, system: str = "lcmftn") -> str:
    """Human-readable description of the VGG-19 weights a run uses (logged to MLflow)."""
    if not _needs_vgg(system, cfg):
        return "none (no VGG loss term)"
    w = cfg.vgg_weights
    if w == "random":
        return f"random init (seed {RANDOM_VGG_SEED}), NOT pretrained - smoke runs only"
    if w == "torchvision":
        return "torchvision VGG19_Weights.IMAGENET1K_V1"
    if w == "none":
        return "none (invalid: a VGG loss term has weight > 0)"
    return f"state dict file {w}"


# ----------------------------------------------------------------------------- loss pieces


def gram_matrix(x: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, C, C], normalised by C*H*W."""
    B, C, H, W = x.shape
    f = x.reshape(B, C, H * W)
    return f @ f.transpose(1, 2) / (C * H * W)


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """½(BCE(D(real), 1) + BCE(D(fake), 0)) on PatchGAN logit maps."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)


def _loss_family(system: str) -> str | None:
    """The system's loss family (``SystemSpec.loss``); None when unknown or not trainable."""
    from lcmftn.models.registry import REGISTRY

    sp = REGISTRY.get(system)
    return sp.loss if sp is not None else None


def discriminator_condition(system: str, s_p: Tensor, c_p: Tensor, s_n: Tensor) -> Tensor:
    """What D sees besides the image (``SystemSpec.d_condition``): pix2pix-ref cat(S_n, S_p, C_p);
    tcvc cat(S_n, C_p)."""
    from lcmftn.models.registry import GAN_SYSTEMS, REGISTRY

    sp = REGISTRY.get(system)
    if sp is None or not sp.gan:
        raise ValueError(f"system {system!r} has no discriminator (GAN systems: {', '.join(GAN_SYSTEMS)})")
    inputs = {"s_p": s_p, "c_p": c_p, "s_n": s_n}
    return torch.cat([inputs[k] for k in sp.d_condition], 1)


def _needs_vgg(system: str, cfg: LossConfig) -> bool:
    family = _loss_family(system)
    if family == "content_style" and cfg.baseline_loss == "original":
        return cfg.lambda_content > 0 or cfg.lambda_style > 0
    if family == "pix2pix" and cfg.baseline_loss == "original":
        return False
    return cfg.lambda_vgg > 0


class GeneratorLoss(nn.Module):
    """``loss(pred, target, fake_logits=None) -> (total, parts)``; parts are floats for logging.

    ``fake_logits`` (D on the prediction) adds the adversarial term for GAN systems; without it
    (e.g. validation) that term is left out.
    """

    def __init__(self, system: str, cfg: LossConfig):
        super().__init__()
        if cfg.baseline_loss not in ("original", "ours"):
            raise ValueError(f"loss.baseline_loss must be 'original' or 'ours', got {cfg.baseline_loss!r}")
        from lcmftn.models.registry import REGISTRY

        self.system, self.cfg = system, cfg
        sp = REGISTRY.get(system)
        if sp is None or sp.loss is None:
            raise ValueError(f"system {system!r} is not trainable; no loss")
        self.gan, self.family = sp.gan, sp.loss
        self.mode = "ours" if sp.loss == "ours" else f"{system}:{cfg.baseline_loss}"
        needs_vgg = _needs_vgg(system, cfg)
        if needs_vgg and cfg.vgg_weights == "none":
            terms = ("loss.lambda_content, loss.lambda_style" if sp.loss == "content_style" and cfg.baseline_loss == "original"
                     else "loss.lambda_vgg")
            raise ValueError(f"{system}: a VGG loss term has weight > 0 ({terms}) but loss.vgg_weights='none'; "
                             f"set loss.vgg_weights to {VGG_OPTIONS}, or set {terms} to 0")
        self.vgg = build_vgg(cfg.vgg_weights) if needs_vgg else None
        self.source = vgg_source(cfg, system)

    def forward(self, pred: Tensor, target: Tensor, fake_logits: Tensor | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        if pred.shape != target.shape:
            raise ValueError(f"loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        cfg = self.cfg
        pred, target = pred.float(), target.float()
        terms: dict[str, tuple[float, Tensor]] = {}
        if self.family == "ours" or cfg.baseline_loss == "ours":
            terms["l1"] = (cfg.lambda_l1, F.l1_loss(pred, target))
            if self.vgg is not None:
                fp, ft = self._features(pred, target)
                terms["vgg"] = (cfg.lambda_vgg, sum(F.mse_loss(a, b) for a, b in zip(fp, ft, strict=True)))
        elif self.family == "pix2pix":  # original pix2pix loss
            terms["l1"] = (cfg.pix2pix_lambda_l1, F.l1_loss(pred, target))
        else:  # tcvc:original
            terms["l1"] = (cfg.tcvc_lambda_l1, F.l1_loss(pred, target))
            if self.vgg is not None:
                fp, ft = self._features(pred, target)
                terms["content"] = (cfg.lambda_content,
                                    sum(F.l1_loss(a, b) for a, b in zip(fp, ft, strict=True)) / len(fp))
                terms["style"] = (cfg.lambda_style, sum(
                    F.l1_loss(gram_matrix(a), gram_matrix(b)) for a, b in zip(fp, ft, strict=True)) / len(fp))
        if self.gan and fake_logits is not None:
            terms["adv"] = (cfg.lambda_adv, gan_generator_loss(fake_logits.float()))
        total = sum(w * v for w, v in terms.values() if w != 0)
        if not isinstance(total, Tensor):  # every weight is 0
            total = pred.sum() * 0.0
        return total, {k: float(v.detach()) for k, (_, v) in terms.items()}

    def _features(self, pred: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        fp = self.vgg(pred)
        with torch.no_grad():
            ft = self.vgg(target)
        return fp, ft


def build_generator_loss(system: str, cfg: LossConfig) -> GeneratorLoss:
    """The generator loss of ``system`` (an ``nn.Module``: move it with ``.to(device)``)."""
    return GeneratorLoss(system, cfg)
