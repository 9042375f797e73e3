"""The fit loop: DCG warm-up, then joint diffusion training with EMA.

Stage 1 pre-trains the guidance (DCG) model with cross-entropy on its fused
logits (binary cross-entropy per label for multi-label targets). Stage 2
trains the denoiser on the dual-guidance objective and keeps training the DCG
model with one cross-entropy step per batch. One forward pass of each network
per batch: the DCG pass that gives the priors is the one the cross-entropy
step back-propagates through (the priors are detached), and the denoiser's
image features are shared by the fused, global and local paths.

The loop (:func:`fit_diffmic`) is a few named steps over one :class:`Progress`:
:meth:`Trainer.guidance_step`, :meth:`Trainer.denoiser_step` (its EMA update
included), :meth:`Trainer.end_epoch` (validation, best epoch, early
stopping); checkpoints (:class:`Checkpoint`), the progress bar and Ctrl-C are
handled around it.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._batching import (
    autocast,
    balanced_sample_weight,
    epoch_order,
    epoch_size,
    iter_batches,
)
from ._diffusion import NoiseSchedule, antithetic_timesteps
from ._distributed import (
    average_buffers,
    average_gradients,
    broadcast,
    epoch_generator,
    is_main,
    mean_across,
    shard_order,
    world,
)
from ._losses import classification_loss, gaussian_mmd
from ._networks import denoiser_input, init_from_guidance
from ._profiling import timed
from ._targets import known_entries, label_probabilities

__all__ = [
    "WARMUP_FRACTION",
    "Checkpoint",
    "ModelEMA",
    "Progress",
    "TrainConfig",
    "Trainer",
    "fit_diffmic",
    "warmup_cosine",
]

# Share of the steps over which the learning rates warm up linearly.
WARMUP_FRACTION = 0.05
GRAD_CLIP = 1.0


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`fit_diffmic` (see the estimator's docs)."""

    max_epochs: int
    guidance_epochs: int
    batch_size: int
    learning_rate: float
    guidance_learning_rate: float
    guidance_schedule: str  # "constant" (the paper's) or "cosine"
    mmd_weight: float  # 0: the fused path alone
    prediction_type: str
    ema_decay: float
    # Copy the trained DCG global encoder into the denoiser's encoder when the
    # diffusion stage starts ("guidance"); anything else leaves it as it is.
    denoiser_init: str = "scratch"
    augment: object = None  # a callable (batch, generator) -> batch, or None
    # Per-class weights (n_classes,), or per-label pos_weight multi-label; or None.
    class_weight: object = None
    # validate(dcg, denoiser) -> dict of validation metrics, "val_macro_f1"
    # among them; None trains without validation.
    validate: object = None
    early_stopping: bool = False
    n_iter_no_change: int = 10
    tol: float = 1e-4
    balanced_sampling: bool = False
    checkpoint: object = None  # a Checkpoint, or None
    compile: bool = False
    # Independent labels (an indicator y): sigmoid priors and binary
    # cross-entropy; class_weight then holds each label's pos_weight.
    multilabel: bool = False
    verbose: int = 0


@dataclass
class Progress:
    """Where a fit stands; what a checkpoint stores besides the weights."""

    epoch: int = 0  # epochs completed, both stages
    history: list = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int = 0  # diffusion epoch of best_state
    best_state: tuple | None = None  # (dcg, ema) state dicts of the best epoch
    stale: int = 0  # epochs without improvement


class ModelEMA:
    """Exponential moving average of a module's parameters.

    The decay ramps up as ``min(decay, (1 + k) / (10 + k))`` after ``k``
    updates so that short runs are not dominated by the random initialisation;
    buffers (BatchNorm statistics) are copied. ``decay=0`` keeps the raw weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, p in zip(self.module.parameters(), model.parameters()):
            shadow.lerp_(p.detach(), 1.0 - d)
        for shadow, b in zip(self.module.buffers(), model.buffers()):
            shadow.copy_(b)


class Checkpoint:
    """One resumable training checkpoint file, written after every epoch.

    The file is written with ``torch.save`` (to a temporary name, then renamed,
    so a crash never leaves half a file) and read back with
    ``weights_only=True``: tensors and plain containers only, no code.
    ``fingerprint`` identifies the settings and data and names the file
    (``checkpoint-<first 16 hex digits>.pt``), so that the fits of a grid
    search or a cross-validation sharing one directory, in sequence or in
    parallel, each resume from their own file. A file whose stored
    fingerprint differs is ignored, with a warning, and overwritten.
    """

    def __init__(self, directory, fingerprint: str):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, f"checkpoint-{fingerprint[:16]}.pt")
        self.fingerprint = fingerprint

    def load(self):
        if not os.path.isfile(self.path):
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            warnings.warn(
                f"Ignoring the unreadable checkpoint {self.path!r}: {exc}",
                UserWarning,
                stacklevel=4,
            )
            return None
        if saved.get("fingerprint") != self.fingerprint:
            warnings.warn(
                f"Ignoring the checkpoint {self.path!r}: it was written with "
                "other settings or data; training starts afresh.",
                UserWarning,
                stacklevel=4,
            )
            return None
        return saved

    def save(self, state: dict) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        torch.save({**state, "fingerprint": self.fingerprint}, tmp)
        os.replace(tmp, self.path)


def warmup_cosine(total_steps: int, warmup_fraction: float = WARMUP_FRACTION):
    """Learning-rate factor of each step: linear warm-up, then cosine to 0."""
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _constant(step: int) -> float:
    return 1.0


def weighted_mean(loss, weights=None):
    """Mean of per-row losses; with ``weights``, their weighted mean.

    Normalised by the sum of the weights (as ``cross_entropy`` does with
    ``weight``). Multi-label, ``loss`` and ``weights`` are per label
    ``(B, K)``: the rows' losses are the sums over their labels, and the
    weighted mean keeps that scale (``K`` times the mean over the elements).
    """
    if loss.dim() == 2:
        if weights is None:
            return loss.sum(-1).mean()
        return (weights * loss).sum() * loss.shape[1] / weights.sum().clamp_min(1e-12)
    if weights is None:
        return loss.mean()
    return (weights * loss).sum() / weights.sum().clamp_min(1e-12)


def row_weights(labels, class_weight, multilabel=False):
    """Weights of the denoiser loss's rows (None: all equal): each row's class
    weight; multi-label, a weight per label ``(B, K)``, the label's
    ``pos_weight`` on its positive rows and 1 on the others."""
    if class_weight is None:
        return None
    if multilabel:
        return 1 + (class_weight - 1) * labels
    return class_weight[labels]


def _state_copy(*modules):
    """Detached copies of the modules' state dicts (same device)."""
    return tuple(
        {k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules
    )


class Trainer:
    """The networks, optimisers and schedules of one fit, and its steps.

    Every random draw (batch order, augmentation, timesteps, noise) comes
    from ``generator``, in the order the steps make them.
    """

    def __init__(self, dcg, denoiser, *, n, n_classes, schedule, config, device):
        self.dcg, self.denoiser, self.config = dcg, denoiser, config
        self.schedule: NoiseSchedule = schedule
        self.device, self.n_classes = device, n_classes
        steps = math.ceil(epoch_size(n, config.batch_size) / config.batch_size)
        # foreach: one multi-tensor update instead of a Python loop over the
        # tensors (PyTorch's default on CUDA only). The DCG model: Adam with
        # amsgrad (the paper's), constant or a cosine over both stages.
        self.scheduled = config.guidance_schedule == "cosine"
        guidance_steps = steps * (config.guidance_epochs + config.max_epochs)
        self.guidance_opt = torch.optim.Adam(
            dcg.parameters(),
            lr=config.guidance_learning_rate,
            amsgrad=True,
            foreach=True,
        )
        self.guidance_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.guidance_opt,
            warmup_cosine(guidance_steps) if self.scheduled else _constant,
        )
        self.optimizer = torch.optim.Adam(
            denoiser.parameters(), lr=config.learning_rate, foreach=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(max(1, steps * config.max_epochs))
        )
        self.ema = ModelEMA(denoiser, config.ema_decay)
        self.class_weight = None
        if config.class_weight is not None:
            self.class_weight = torch.as_tensor(
                config.class_weight, dtype=torch.float32
            ).to(device)
        self.eye = torch.eye(n_classes, device=device)

    # ---------------------------------------------------------- state --
    def parts(self) -> dict:
        """Everything with a state dict that a checkpoint stores, by name."""
        parts = {
            "dcg": self.dcg,
            "denoiser": self.denoiser,
            "ema": self.ema.module,
            "guidance_opt": self.guidance_opt,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }
        if self.scheduled:  # a constant rate's scheduler holds nothing
            parts["guidance_scheduler"] = self.guidance_scheduler
        return parts

    def state(self, generator, progress: Progress) -> dict:
        return {
            **{name: part.state_dict() for name, part in self.parts().items()},
            "ema_updates": self.ema.updates,
            "generator": generator.get_state(),
            # Shallow: torch.save copies the tensors of best_state anyway.
            "progress": {f.name: getattr(progress, f.name) for f in fields(progress)},
        }

    def restore(self, saved: dict, generator) -> Progress:
        for name, part in self.parts().items():
            part.load_state_dict(saved[name])
        self.ema.updates = int(saved["ema_updates"])
        generator.set_state(saved["generator"])
        return Progress(**saved["progress"])

    # ---------------------------------------------------------- steps --
    def start_diffusion(self) -> None:
        """At the first diffusion epoch: the denoiser's encoder from the DCG
        model's trained global encoder, with ``denoiser_init="guidance"``."""
        if self.config.denoiser_init != "guidance":
            return
        init_from_guidance(self.ema.module, self.dcg)
        if init_from_guidance(self.denoiser, self.dcg) == 0:
            warnings.warn(
                "denoiser_init='guidance' found no tensor of the guidance "
                "model's global encoder in the denoiser's encoder; the "
                "denoiser starts from scratch.",
                UserWarning,
                stacklevel=4,
            )

    def guidance_step(self, x, target):
        """One cross-entropy step of the DCG model; its outputs and loss."""
        with autocast(self.device):
            guide, details = self.dcg(x, return_details=True)
        ce = classification_loss(
            guide.fused.float(),
            target,
            self.class_weight,
            multilabel=self.config.multilabel,
        )
        self.guidance_opt.zero_grad(set_to_none=True)
        with timed("dcg backward"):
            ce.backward()
            average_gradients(self.dcg.parameters())
        with timed("optimiser"):
            self.guidance_opt.step()
            self.guidance_scheduler.step()
        return guide, details, ce.item()

    def denoiser_step(self, x, target, guide, details, generator) -> dict:
        """One step of the denoiser on the detached priors, and its EMA."""
        config, schedule, multilabel = (
            self.config,
            self.schedule,
            self.config.multilabel,
        )
        b = len(target)
        priors = [label_probabilities(g.detach().float(), multilabel) for g in guide]
        known = None
        if multilabel:
            # An unknown label (NaN) is diffused from the prior's own value, so
            # the chain learns "keep the prior" there, and left out of the loss.
            target, known = known_entries(target)
            y0 = torch.where(known, target, priors[0])
        else:
            y0 = self.eye[target]
        t = antithetic_timesteps(b, schedule.n_timesteps, generator).to(self.device)
        eps = torch.randn(b, self.n_classes, generator=generator).to(self.device)
        kind = config.prediction_type
        with autocast(self.device), timed("denoiser encoder"):
            features = self.denoiser.encode(denoiser_input(self.denoiser, x, details))
        with autocast(self.device), timed("label head"):
            y_t = schedule.q_sample(y0, priors[0], t, eps)
            out = self.denoiser.head(features, y_t, priors[0], t).float()
            per_row = schedule.training_loss(
                out, y0, priors[0], t, eps, kind, multilabel
            )
            weights = row_weights(target, self.class_weight, multilabel)
            if known is not None:
                per_row = torch.where(known, per_row, 0.0)
                weights = None if weights is None else weights * known
            fused = weighted_mean(per_row, weights)
            mmd = torch.zeros((), device=self.device)
            if config.mmd_weight > 0:
                # The global and local paths share the noise draw; MMD compares
                # the distributions of output and target.
                for prior in priors[1:]:
                    y_t_path = schedule.q_sample(y0, prior, t, eps)
                    out_path = self.denoiser.head(features, y_t_path, prior, t)
                    out_path, goal = schedule.training_pair(
                        out_path.float(), y0, prior, t, eps, kind, multilabel
                    )
                    if known is not None:  # the known coordinates only
                        out_path = torch.where(known, out_path, 0.0)
                        goal = torch.where(known, goal, 0.0)
                    mmd = mmd + gaussian_mmd(goal, out_path)
            loss = fused + config.mmd_weight * mmd
        self.optimizer.zero_grad(set_to_none=True)
        with timed("denoiser backward"):
            loss.backward()
            average_gradients(self.denoiser.parameters())
        with timed("optimiser"):
            nn.utils.clip_grad_norm_(self.denoiser.parameters(), GRAD_CLIP)
            self.optimizer.step()
            self.scheduler.step()
        with timed("ema"):
            self.ema.update(self.denoiser)
        return {
            "denoiser_loss": fused.item(),
            "mmd_loss": mmd.item(),
            "diffusion_loss": loss.item(),
        }

    def run_epoch(self, epoch, images, y_all, preprocess, generator, sample_weight):
        """One epoch of both stages' steps; the epoch's mean losses."""
        config = self.config
        diffusion = epoch >= config.guidance_epochs
        self.dcg.train()
        self.denoiser.train()
        order = epoch_order(len(images), config.batch_size, generator, sample_weight)
        # In a process group: this rank's share of each batch, and draws of
        # its own (skdiffmic._distributed); in one process, as they are.
        rows, batch_size = shard_order(order, config.batch_size)
        draws = epoch_generator(generator)
        sums, n_batches = {"guidance_loss": 0.0}, 0
        for pos, x, _ in iter_batches(
            images, rows, batch_size, preprocess, self.device
        ):
            if config.augment is not None:
                with timed("augment"):
                    x = config.augment(x, draws)
            target = y_all[pos].to(self.device)
            guide, details, ce = self.guidance_step(x, target)
            sums["guidance_loss"] += ce
            n_batches += 1
            if diffusion:
                losses = self.denoiser_step(x, target, guide, details, draws)
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + value
        if world()[1] > 1:
            average_buffers(self.dcg, self.denoiser)
            for shadow, b in zip(self.ema.module.buffers(), self.denoiser.buffers()):
                shadow.copy_(b)
        means = {k: v / max(1, n_batches) for k, v in sums.items()}
        return mean_across(means, self.device)

    def end_epoch(self, record, progress: Progress):
        """After a diffusion epoch: validate, keep the best, count stale epochs.

        Returns the state of the epoch's weights (kept for Ctrl-C), and
        whether early stopping ends the fit.
        """
        config = self.config
        state = _state_copy(self.dcg, self.ema.module)
        if config.validate is None:
            return state, False
        with timed("validation"):
            self.dcg.eval()
            # Rank 0 validates; every rank takes its scores and so its choice.
            scores = config.validate(self.dcg, self.ema.module) if is_main() else None
            record.update(broadcast(scores))
        score = record["val_macro_f1"]
        if progress.best_score is None or score > progress.best_score + config.tol:
            progress.best_score = score
            progress.best_epoch = record["epoch"] - config.guidance_epochs
            progress.best_state = state
            progress.stale = 0
        else:
            progress.stale += 1
        stop = config.early_stopping and progress.stale >= config.n_iter_no_change
        return state, stop


def fit_diffmic(
    dcg: nn.Module,
    denoiser: nn.Module,
    images,
    y: np.ndarray,
    *,
    n_classes: int,
    schedule: NoiseSchedule,
    preprocess,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
):
    """Train ``dcg`` and ``denoiser`` in place.

    Parameters
    ----------
    images : ArrayImages, PathImages or ArrayFeatures
        Training rows (``len`` and ``load(indices)``).
    y : ndarray of shape (n,) or (n, n_classes)
        Class indices in ``[0, n_classes)``, or (``config.multilabel``) the
        0/1 indicator of the labels.

    Returns
    -------
    ema : ModelEMA
        The moving average of the denoiser, used for prediction.
    history : list of dict
        One record per epoch (see the estimator's ``history_``).
    result : dict
        ``n_epochs`` (diffusion epochs completed) and ``best_epoch`` (the one
        whose weights the models hold on return: the best by validation
        macro-F1 when validating, else the last completed).
    """
    dtype = torch.float32 if config.multilabel else torch.long
    y_all = torch.as_tensor(y, dtype=dtype)
    sample_weight = (
        balanced_sample_weight(y_all, n_classes) if config.balanced_sampling else None
    )
    trainer = Trainer(
        dcg,
        denoiser,
        n=len(images),
        n_classes=n_classes,
        schedule=schedule,
        config=config,
        device=device,
    )
    n_guidance = config.guidance_epochs
    total_epochs = n_guidance + config.max_epochs
    saved = config.checkpoint.load() if config.checkpoint is not None else None
    progress = Progress() if saved is None else trainer.restore(saved, generator)
    last_state = None
    if progress.epoch > n_guidance:
        last_state = _state_copy(dcg, trainer.ema.module)
    if config.compile:
        # In place, so state dicts keep their keys; undone before returning.
        dcg.compile()
        denoiser.compile()
    interrupted = False
    bar = tqdm(
        total=total_epochs,
        initial=progress.epoch,
        disable=not config.verbose or not is_main(),
        desc="DiffMIC",
        unit="epoch",
    )
    try:
        for epoch in range(progress.epoch, total_epochs):
            start = time.perf_counter()
            if epoch == n_guidance:
                trainer.start_diffusion()
            stage = "guidance" if epoch < n_guidance else "diffusion"
            losses = trainer.run_epoch(
                epoch, images, y_all, preprocess, generator, sample_weight
            )
            record = {"epoch": epoch + 1, "stage": stage, **losses}
            record["time"] = time.perf_counter() - start
            stop = False
            if stage == "diffusion":
                last_state, stop = trainer.end_epoch(record, progress)
            progress.history.append(record)
            progress.epoch = epoch + 1
            bar.set_postfix(_postfix(record))
            bar.update(1)
            if config.checkpoint is not None and is_main():
                config.checkpoint.save(trainer.state(generator, progress))
            if stop:
                break
    except KeyboardInterrupt:
        if last_state is None:
            raise
        interrupted = True
        warnings.warn(
            f"Training interrupted after {progress.epoch - n_guidance} diffusion "
            "epoch(s); keeping the best completed epoch.",
            UserWarning,
            stacklevel=3,
        )
    finally:
        bar.close()
        for module in (dcg, denoiser):
            module._compiled_call_impl = None  # plain modules to predict and pickle
    # The models hold the last epoch's weights unless training was cut short
    # mid-epoch, or validation picked an earlier epoch.
    state = progress.best_state or (last_state if interrupted else None)
    if state is not None:
        dcg.load_state_dict(state[0])
        trainer.ema.module.load_state_dict(state[1])
    completed = max(0, progress.epoch - n_guidance)
    result = {"n_epochs": completed, "best_epoch": progress.best_epoch or completed}
    return trainer.ema, progress.history, result


def _postfix(record) -> dict:
    """The progress bar's summary of an epoch's record."""
    postfix = {"stage": record["stage"], "ce": f"{record['guidance_loss']:.4f}"}
    if "diffusion_loss" in record:
        postfix["loss"] = f"{record['diffusion_loss']:.4f}"
    if "val_macro_f1" in record:
        postfix["val_f1"] = f"{record['val_macro_f1']:.3f}"
    return postfix
