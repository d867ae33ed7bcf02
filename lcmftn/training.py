"""Train and validation steps for every trainable system, and a single-process training loop.

Pure PyTorch: the Ray worker (``workflows.train``) and the plain loop here
(:func:`train_single_process`, for machines without Ray/MLflow such as the lent GPU box) call
the same :func:`build_train_state`, :func:`train_step` and :func:`run_epoch`, so a GPU run and a
DDP run differ only in how the modules are wrapped and where metrics go.

Per system (DESIGN §3):
- ``lcmftn``, ``lcmftn-nocmft``: ``λ1·L1 + λ2·Σ_f ||VGG_f(Y) − VGG_f(G(X))||`` (paper eq. 9).
- ``pix2pix-ref``: conditional GAN + L1 (Isola et al.), or "our loss" added to the GAN term when
  the loss config asks for it; D lr = G lr.
- ``tcvc``: adversarial + content + style(1000) + L1(10); the previous colour frame is replaced by
  a blank (all-zero) image with probability ``cfg.tcvc_blank_prob`` (0.5) in training; D lr = G lr/10.

Mixed precision: bf16 autocast on CUDA (``cfg.mixed_precision="auto"``), fp32 on CPU. Losses
are computed in fp32 on the cast-back prediction. bf16 needs no gradient scaler.

Batch shapes: B = batch, S = image_size_px; ``s_p``/``s_n`` ``[B,1,S,S]``, ``c_p``/``c_n``
``[B,3,S,S]``, all float in [0, 1].
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lcmftn import checkpoint as ckpt_io
from lcmftn import losses
from lcmftn.data.augment import augment_pair_batch
from lcmftn.evaluation import EvalClip, EvalTotals, evaluate_sequences, sample_grid
from lcmftn.models import registry
from lcmftn.recipes import TrainConfig, flatten_config

log = logging.getLogger(__name__)

TRAIN_STATE_FILE = "train_state.pt"
MODEL_SUBDIR = "model"


@dataclass
class TrainState:
    """Modules, optimisers, losses and counters of one training process."""

    cfg: TrainConfig
    device: torch.device
    generator: nn.Module  # possibly DDP-wrapped
    discriminator: nn.Module | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    g_loss: Callable[..., tuple[torch.Tensor, dict[str, float]]]
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps completed (this process)
    epoch_step: int = 0  # steps completed in the current epoch (a mid-epoch checkpoint's place)
    generator_rng: torch.Generator = field(default_factory=torch.Generator)

    @property
    def bare_generator(self) -> nn.Module:
        return unwrap(self.generator)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP/FSDP-style wrapper (``.module``), or the module itself."""
    return getattr(module, "module", module)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.mixed_precision == "off":
        return None
    if cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _autocast(cfg: TrainConfig, device: torch.device):
    dtype = autocast_dtype(cfg, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def build_train_state(cfg: TrainConfig, device: torch.device | str = "cpu",
                      wrap: Callable[[nn.Module], nn.Module] | None = None) -> TrainState:
    """Build G (and D for GAN systems), Adam optimisers with the paper's betas and the loss.

    ``wrap`` is applied to each trainable module after it is moved to ``device`` (Ray passes
    ``ray.train.torch.prepare_model`` for DDP). Seeds torch from ``cfg.seed``.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    # Denormal floats (tiny attention weights, Adam's second moments) run ~100x slower on x86
    # CPUs; flushing them to zero made a cosine-kernel CPU step 0.55 -> 0.16 s. Per thread: this
    # is the thread that runs the loop (Ray Train's worker thread included).
    torch.set_flush_denormal(True)
    overrides = registry.parse_generator_overrides(cfg.system, cfg.generator)
    if cfg.e_i_weights:  # LCMFTN only
        overrides["e_i_weights"] = cfg.e_i_weights
    generator = registry.build_generator(cfg.system, cfg.model_size, **overrides).to(device)
    if not getattr(generator, "trainable", True):
        raise ValueError(f"system {cfg.system!r} has nothing to train")
    discriminator = registry.build_discriminator(cfg.system, cfg.model_size)
    if discriminator is not None:
        discriminator = discriminator.to(device)
    if cfg.loss.gate_loss != "off" and not getattr(generator, "uses_auxiliary_losses", lambda _: False)(cfg.loss):
        raise ValueError(f"loss.gate_loss={cfg.loss.gate_loss!r} needs a system with a gate "
                         f"(lcmftn-ours), not {cfg.system!r}; set loss.gate_loss=off")
    g_loss = losses.build_generator_loss(cfg.system, cfg.loss)
    if isinstance(g_loss, nn.Module):
        g_loss = g_loss.to(device)
    o = cfg.optim
    opt_g = torch.optim.Adam(generator.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                             weight_decay=o.weight_decay)
    opt_d = None
    if discriminator is not None:
        ratio = o.d_lr_ratio if o.d_lr_ratio >= 0 else registry.spec(cfg.system).d_lr_ratio
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=o.lr * ratio,
                                 betas=(o.beta1, o.beta2))
    if wrap is not None:
        # NOTE: only G is wrapped (DDP). D runs twice per D step (real, fake) and once inside the
        # G step, which DDP's one-forward-one-backward reducer does not allow; its gradients are
        # averaged by hand instead (``_average_gradients``) and its initial weights broadcast.
        generator = wrap(generator)
        if discriminator is not None:
            _broadcast_parameters(discriminator)
    rank = torch.distributed.get_rank() if _distributed() else 0
    rng = torch.Generator().manual_seed(cfg.seed + 17 + 1000 * rank)
    return TrainState(cfg, device, generator, discriminator, opt_g, opt_d, g_loss,
                      generator_rng=rng)


def _distributed() -> bool:
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _broadcast_parameters(module: nn.Module) -> None:
    if _distributed():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t.data, src=0)


def _average_gradients(module: nn.Module) -> None:
    """All-reduce (mean) the gradients of a module that is not DDP-wrapped."""
    if not _distributed():
        return
    world = torch.distributed.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)


def move_batch(batch: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}


def _blank_reference(state: TrainState, c_p: torch.Tensor) -> torch.Tensor:
    """TCVC training: replace C_p by a blank image with probability ``tcvc_blank_prob``."""
    p = state.cfg.tcvc_blank_prob
    if p <= 0:
        return c_p
    keep = (torch.rand(c_p.shape[0], generator=state.generator_rng) >= p).to(c_p)
    return c_p * keep.view(-1, 1, 1, 1)  # blank = zeros


def train_step(state: TrainState, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """One optimiser step (D first for GAN systems); returns float losses for logging."""
    cfg, device = state.cfg, state.device
    if cfg.palette_aug > 0 or cfg.lineart_aug > 0:
        # seeded by (run seed, step, rank): a resumed run draws the same transforms
        rank = torch.distributed.get_rank() if _distributed() else 0
        batch = augment_pair_batch(batch, cfg.palette_aug, cfg.lineart_aug, (cfg.seed, state.step, rank))
    b = move_batch(batch, device)
    s_p, c_p, s_n, c_n = b["s_p"], b["c_p"], b["s_n"], b["c_n"]
    if registry.spec(cfg.system).blank_reference:
        c_p = _blank_reference(state, c_p)
    state.generator.train()
    out: dict[str, float] = {}

    # Auxiliary terms from the model's intermediates (e.g. lcmftn-ours' gate, loss.gate_loss):
    # only when the model asks for them under this loss config; otherwise the step is unchanged.
    hook = getattr(state.bare_generator, "uses_auxiliary_losses", None)
    use_aux = bool(hook is not None and hook(cfg.loss))
    with _autocast(cfg, device):
        if use_aux:
            # through the (possibly DDP-) wrapped module, so every gradient is synchronised
            model_parts = state.generator(s_p, c_p, s_n, return_parts=True)
            pred = model_parts["out"]
        else:
            pred = state.generator(s_p, c_p, s_n)
    pred = pred.float()

    if state.discriminator is not None:
        # 1. Discriminator on (condition, real) vs (condition, fake.detach()).
        state.discriminator.train()
        state.opt_d.zero_grad(set_to_none=True)
        with _autocast(cfg, device):
            cond = losses.discriminator_condition(cfg.system, s_p, c_p, s_n)
            real_logits = state.discriminator(cond, c_n)
            fake_logits = state.discriminator(cond, pred.detach())
        d_loss = losses.discriminator_loss(real_logits.float(), fake_logits.float())
        d_loss.backward()
        _average_gradients(state.discriminator)
        state.opt_d.step()
        out["loss_d"] = float(d_loss.detach())

    state.opt_g.zero_grad(set_to_none=True)
    ctx: dict[str, Any] = {}
    if state.discriminator is not None:
        with _autocast(cfg, device):
            ctx["fake_logits"] = state.discriminator(cond, pred).float()
    total, parts = state.g_loss(pred, c_n, **ctx)
    if use_aux:
        for name, (weight, value) in state.bare_generator.auxiliary_losses(model_parts, c_n, cfg.loss).items():
            parts[name] = float(value.detach())
            if weight != 0:
                total = total + weight * value.float()
    if not torch.isfinite(total):
        raise FloatingPointError(f"non-finite generator loss at step {state.step}: {parts}")
    total.backward()
    if cfg.optim.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(state.generator.parameters(), cfg.optim.grad_clip_norm)
    state.opt_g.step()
    state.step += 1
    out["loss"] = float(total.detach())
    out.update({f"loss_{k}": float(v) for k, v in parts.items()})
    return out


@torch.no_grad()
def predict(state: TrainState, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Generator output for a pair batch (eval mode, no blanking), fp32 on CPU."""
    b = move_batch(batch, state.device)
    gen = state.bare_generator
    gen.eval()
    with _autocast(state.cfg, state.device):
        pred = gen(b["s_p"], b["c_p"], b["s_n"])
    return pred.float().clamp(0, 1).cpu()


@dataclass
class EpochStats:
    """What one epoch did on this process."""

    steps: int
    samples: int
    seconds: float
    mean_losses: dict[str, float]

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def run_epoch(state: TrainState, batches: Iterable[Mapping[str, torch.Tensor]],
              max_steps: int = 0, on_step: Callable[[int, dict[str, float]], None] | None = None,
              before_step: Callable[[int], None] | None = None) -> EpochStats:
    """Train over ``batches`` (at most ``max_steps`` steps when > 0); ``on_step(step, losses)``
    after every step. ``before_step(step)`` is a test hook (fault injection)."""
    sums: dict[str, float] = {}
    steps = samples = 0
    t0 = time.perf_counter()
    for batch in batches:
        if max_steps and steps >= max_steps:
            break
        if before_step is not None:
            before_step(state.step)
        losses_now = train_step(state, batch)
        state.epoch_step += 1
        steps += 1
        samples += int(batch["s_n"].shape[0])
        for k, v in losses_now.items():
            sums[k] = sums.get(k, 0.0) + v
        if on_step is not None:
            on_step(state.step, losses_now)
    if state.device.type == "cuda":
        torch.cuda.synchronize(state.device)
    seconds = time.perf_counter() - t0
    return EpochStats(steps, samples, seconds, {k: v / max(steps, 1) for k, v in sums.items()})


def validate(state: TrainState, sequences: Sequence[EvalClip], batch_size: int = 8) -> EvalTotals:
    """Paper-protocol totals for this process's share of the validation sequences."""
    gen = state.bare_generator
    gen.eval()
    totals = evaluate_sequences(gen, sequences, state.device, batch_size=batch_size,
                                autocast_dtype=autocast_dtype(state.cfg, state.device))
    gen.train()
    return totals


def first_pairs(sequences: Sequence[EvalClip]) -> dict[str, torch.Tensor]:
    """Frames 0 -> 1 of each sequence as a pair batch ``{"s_p", "c_p", "s_n", "c_n"}``."""
    return {"s_p": torch.stack([s.lineart[0] for s in sequences]),
            "c_p": torch.stack([s.color[0] for s in sequences]),
            "s_n": torch.stack([s.lineart[1] for s in sequences]),
            "c_n": torch.stack([s.color[1] for s in sequences])}


ATTENTION_SHIFT_PX = (4, -4)


@torch.no_grad()
def attention_metrics(state: TrainState, sequences: Sequence[EvalClip], pairs: int = 4,
                      shift_px: tuple[int, int] = ATTENTION_SHIFT_PX) -> dict[str, float]:
    """CMFT attention diagnostics (``lcmftn.models.diagnostics``) of the current generator on the
    first ``pairs`` validation sequences, as ``attn/...`` metrics: per level the entropy (÷ log M)
    and max weight on the real pairs (frame 0 -> frame 1), and, where the true offset is known in
    the attention's frame (LCMFTN; not ``lcmftn-ours``, which attends over the warped reference),
    the attended-position error and hit rate on a pair whose S_n is S_p rolled by ``shift_px``.
    {} for systems without CMFT."""
    from lcmftn.models.diagnostics import attention_diagnostics
    from lcmftn.models.lcmftn import LCMFTN
    from lcmftn.models.ours import LCMFTNOurs

    gen = state.bare_generator
    seqs = list(sequences)[:pairs]
    if not seqs or not (isinstance(gen, LCMFTNOurs) or (isinstance(gen, LCMFTN) and gen.cfg.use_cmft)):
        return {}
    pair = move_batch(first_pairs(seqs), state.device)
    s_p, c_p, s_n = pair["s_p"], pair["c_p"], pair["s_n"]
    was_training = gen.training
    gen.eval()
    try:
        out = {f"attn/{k}": v for k, v in attention_diagnostics(gen, s_p, c_p, s_n).items()
               if not k.endswith("/positions")}
        if isinstance(gen, LCMFTN):
            rolled = torch.roll(s_p, shifts=shift_px, dims=(-2, -1))
            known = attention_diagnostics(gen, s_p, c_p, rolled, shift_px=shift_px)
            out.update({f"attn/shift/{k}": v for k, v in known.items()
                        if k.endswith(("err_expected_px", "err_argmax_px", "hit_rate"))})
    finally:
        gen.train(was_training)
    return out


def sample_grid_for(state: TrainState, sequences: Sequence[EvalClip], rows: int) -> Any:
    """S_p | C_p | S_n | prediction | GT for the first ``rows`` validation sequences (k = 1)."""
    seqs = list(sequences)[:rows]
    if not seqs:
        return None
    batch = first_pairs(seqs)
    pred = predict(state, batch)
    return sample_grid(batch["s_p"], batch["c_p"], batch["s_n"], pred, batch["c_n"], rows)


# ----------------------------------------------------------------------------- checkpoints


def model_config_dict(state: TrainState) -> dict[str, Any]:
    """Generator config as saved in ``meta.json`` (what ``build_generator_from_config`` reads)."""
    gen = state.bare_generator
    cfg = getattr(gen, "config", None)
    # NOTE: no fallback to the registry preset: it would drop overrides (e.g. e_i_weights) and
    # write a meta.json that does not describe the saved weights.
    if cfg is None or not hasattr(cfg, "__dataclass_fields__"):
        raise TypeError(f"{type(gen).__name__} has no dataclass .config; cannot save a checkpoint")
    return asdict(cfg)


def save_training_checkpoint(state: TrainState, directory: str | Path,
                             extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``directory/model/`` (lcmftn.checkpoint: model.safetensors + meta.json, what
    colorize loads) and ``directory/train_state.pt`` (optimisers, D, counters) for resuming."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta_extra = {"epoch": state.epoch, "step": state.step, "recipe": state.cfg.recipe,
                  "image_size_px": state.cfg.image_size_px,
                  "train_config": flatten_config(state.cfg), **dict(extra or {})}
    ckpt_io.save_checkpoint(directory / MODEL_SUBDIR, state.bare_generator, state.cfg.system,
                            model_config_dict(state), extra=meta_extra)
    train_state = {
        "epoch": state.epoch, "step": state.step, "epoch_step": state.epoch_step,
        "opt_g": state.opt_g.state_dict(),
        "rng": state.generator_rng.get_state(),
    }
    if state.discriminator is not None:
        train_state["discriminator"] = unwrap(state.discriminator).state_dict()
        train_state["opt_d"] = state.opt_d.state_dict()
    tmp = directory / (TRAIN_STATE_FILE + ".tmp")
    torch.save(train_state, tmp)
    tmp.replace(directory / TRAIN_STATE_FILE)
    tmp = directory / "progress.json.tmp"
    tmp.write_text(json.dumps({"epoch": state.epoch, "step": state.step,
                               "epoch_step": state.epoch_step}))
    tmp.replace(directory / "progress.json")
    return directory


def load_training_checkpoint(state: TrainState, directory: str | Path) -> None:
    """Restore generator, discriminator, optimisers and counters from ``directory``."""
    directory = Path(directory)
    model, meta = ckpt_io.load_checkpoint(directory / MODEL_SUBDIR, map_location="cpu")
    # weights_only=True: tensors and plain containers only, nothing executable is unpickled.
    ts = torch.load(directory / TRAIN_STATE_FILE, map_location=state.device, weights_only=True)
    # model/ and train_state.pt are written one after the other: a save cut off between the two
    # leaves weights and optimiser/counters of different steps. Refuse instead of mixing them.
    model_step = meta["extra"].get("step")
    if model_step is not None and int(model_step) != int(ts["step"]):
        raise ckpt_io.CheckpointError(
            f"checkpoint {directory}: {MODEL_SUBDIR}/ is from step {model_step} but "
            f"{TRAIN_STATE_FILE} from step {int(ts['step'])} (an interrupted save?)")
    state.bare_generator.load_state_dict(model.state_dict())
    state.opt_g.load_state_dict(ts["opt_g"])
    if state.discriminator is not None and "discriminator" in ts:
        unwrap(state.discriminator).load_state_dict(ts["discriminator"])
        state.opt_d.load_state_dict(ts["opt_d"])
    state.generator_rng.set_state(ts["rng"])
    state.epoch, state.step = int(ts["epoch"]), int(ts["step"])
    state.epoch_step = int(ts.get("epoch_step", 0))  # 0: an end-of-epoch checkpoint


# ----------------------------------------------------------------------------- plain loop


@dataclass
class TrainSummary:
    epochs: int
    steps: int
    history: list[dict[str, float]]
    checkpoint_dir: Path | None


def epoch_batches(make_loader: Callable[[int], Iterable[Any]], steps: int) -> Iterator[Any]:
    """Batches of one epoch: one pass of ``make_loader(0)`` when ``steps`` is 0, else exactly
    ``steps`` batches, re-iterating ``make_loader(1)``, ``make_loader(2)``, ... (fresh shuffles)
    when one pass is shorter. Raises ``ValueError`` when a pass yields no batch at all."""
    rep = 0
    produced = 0
    while True:
        empty = True
        for batch in make_loader(rep):
            empty = False
            yield batch
            produced += 1
            if steps and produced >= steps:
                return
        if empty:
            raise ValueError("the training data gave no batch (fewer pairs than the batch size?)")
        if not steps:
            return
        rep += 1


def scheduled_batches(make_pass: Callable[[int, int], Iterable[Any]],
                      pass_batches: Callable[[int], int], steps: int,
                      skip: int = 0) -> Iterator[Any]:
    """Batches of one epoch from passes of known lengths, resumable.

    ``make_pass(rep, skip)`` yields pass ``rep``'s batches without its first ``skip``;
    ``pass_batches(rep)`` is that pass's length. One pass when ``steps`` is 0, else exactly
    ``steps`` batches over passes 0, 1, ... (fresh shuffles). ``skip``: batches of this epoch
    already trained on (a mid-epoch checkpoint), skipped without being read."""
    if pass_batches(0) < 1:
        raise ValueError("the training data gave no batch (fewer pairs than the batch size?)")
    total = steps or pass_batches(0)
    rep, inner = 0, skip
    while inner and inner >= pass_batches(rep):
        if pass_batches(rep) < 1:
            raise ValueError(f"pass {rep} of the training data gives no batch")
        inner -= pass_batches(rep)
        rep += 1
    produced = skip
    while produced < total:
        before = produced
        for batch in make_pass(rep, inner):
            yield batch
            produced += 1
            if produced >= total:
                return
        if produced == before:
            raise ValueError(f"pass {rep} of the training data gave no batch")
        rep, inner = rep + 1, 0


def _loader(dataset: Any, cfg: TrainConfig, epoch: int, num_workers: int = 0):
    if not isinstance(dataset, torch.utils.data.Dataset):
        return dataset  # already an iterable of batches (e.g. synthetic tensors)

    def make(rep: int):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch * 1000 + rep)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1000 + rep)
        return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size_per_worker,
                                           shuffle=True, drop_last=True, generator=g,
                                           num_workers=num_workers)

    return epoch_batches(make, cfg.steps_per_epoch)


def train_single_process(cfg: TrainConfig, train_data: Any,
                         val_data: Sequence[EvalClip] | None = None, *,
                         device: torch.device | str | None = None,
                         checkpoint_dir: str | Path | None = None,
                         on_epoch: Callable[[dict[str, float]], None] | None = None,
                         on_step: Callable[[int, dict[str, float]], None] | None = None,
                         num_loader_workers: int = 0) -> TrainSummary:
    """Train without Ray: the same state/step/epoch code as the Ray worker.

    ``train_data`` is a torch ``Dataset`` of pair dicts or an iterable of batches; ``val_data``
    the evaluation sequences (``lcmftn.evaluation.load_eval_clips``). When
    ``checkpoint_dir`` holds a checkpoint the run resumes from it, and a checkpoint is written
    there after every epoch.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state = build_train_state(cfg, device)
    if checkpoint_dir and (Path(checkpoint_dir) / TRAIN_STATE_FILE).is_file():
        load_training_checkpoint(state, checkpoint_dir)
        log.info("resumed from %s at epoch %d", checkpoint_dir, state.epoch)
    history = []
    while state.epoch < cfg.epochs:
        stats = run_epoch(state, _loader(train_data, cfg, state.epoch, num_loader_workers),
                          cfg.steps_per_epoch, on_step=on_step)
        state.epoch += 1
        state.epoch_step = 0
        row = {"epoch": state.epoch, "step": state.step, "samples_per_s": stats.samples_per_s,
               **stats.mean_losses}
        last = state.epoch == cfg.epochs
        if val_data and (state.epoch % cfg.val.every_epochs == 0 or last):
            row.update({f"val/{k}": v for k, v in validate(state, val_data).metrics().items()})
        history.append(row)
        if checkpoint_dir:
            save_training_checkpoint(state, checkpoint_dir)
        if on_epoch is not None:
            on_epoch(row)
        log.info(format_epoch_line(row, cfg.epochs))
    return TrainSummary(state.epoch, state.step, history,
                        Path(checkpoint_dir) if checkpoint_dir else None)


def format_epoch_line(row: Mapping[str, float], epochs: int) -> str:
    """``epoch 3/12 step 150 loss 0.4210 val PSNR 24.31 (copy-ref 19.80) 41.2 samples/s``."""
    text = f"epoch {int(row['epoch'])}/{epochs} step {int(row['step'])} loss {row.get('loss', math.nan):.4f}"
    if "val/psnr" in row:
        text += f" val PSNR {row['val/psnr']:.2f} SSIM {row.get('val/ssim', math.nan):.3f}"
        if "val/copyref_psnr" in row:
            text += f" (copy-ref {row['val/copyref_psnr']:.2f})"
    text += f" {row.get('samples_per_s', 0.0):.1f} samples/s"
    return text
