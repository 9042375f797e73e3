"""The fit loop: DCG warm-up, then joint diffusion training with EMA.

Stage 1 pre-trains the guidance (DCG) model with cross-entropy on its fused
logits (binary cross-entropy per label for multi-label targets). Stage 2
trains the denoiser on the dual-guidance objective and keeps training the DCG
model with one cross-entropy step per batch. One forward pass
of each network per batch: the DCG pass that gives the priors is the one the
cross-entropy step back-propagates through (the priors are detached), and the
denoiser's image features are shared by the fused, global and local paths.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._diffusion import NoiseSchedule, antithetic_timesteps
from ._losses import classification_loss, gaussian_mmd
from ._networks import denoiser_input, init_from_guidance
from ._profiling import timed
from ._targets import label_probabilities, label_sample_weight

__all__ = [
    "Batch",
    "Checkpoint",
    "ModelEMA",
    "TrainConfig",
    "autocast",
    "fit_diffmic",
    "iter_batches",
]


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`fit_diffmic` (see the estimator's docs)."""

    max_epochs: int
    guidance_epochs: int
    batch_size: int
    learning_rate: float
    guidance_learning_rate: float
    mmd_weight: float
    guidance: str
    ema_decay: float
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
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    prediction_type: str = "epsilon"
    # Rows of the diffusion loss weigh 1 + focal_weight * (1 - p_true), p_true
    # the fused prior's probability of the true class (DiffMIC-v2's focal term).
    focal_weight: float = 0.0
    # Copy the trained DCG global encoder into the denoiser's encoder when the
    # diffusion stage starts.
    denoiser_init: str = "scratch"
    # Train the denoiser on out-of-fold priors from this many copies of the
    # DCG model (see CrossFitGuidance); None: the DCG model's own priors.
    prior_folds: int | None = None
    # Standard deviation of Gaussian noise on the DCG logits that become the
    # denoiser's training priors (0: the priors as they are).
    prior_noise: float = 0.0
    # Train the denoiser on the priors of a frozen copy of the DCG model taken
    # when the diffusion stage starts, while the DCG model trains on.
    prior_snapshot: bool = False
    # The DCG model's learning rate over the whole fit: "constant" (the
    # paper's) or "cosine" (the denoiser's warm-up and cosine decay, spread
    # over the guidance and diffusion epochs together).
    guidance_schedule: str = "constant"
    # Independent labels (an indicator y): sigmoid priors and binary
    # cross-entropy; class_weight then holds each label's pos_weight.
    multilabel: bool = False
    verbose: int = 0


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


def autocast(device: torch.device):
    """bf16 autocast on CUDA when supported; a no-op context elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=enabled
    )


class Batch(NamedTuple):
    """One mini-batch: row positions, network input on the device, CPU rows."""

    pos: np.ndarray
    x: torch.Tensor
    raw: torch.Tensor


def iter_batches(images, indices, batch_size, preprocess, device):
    """Yield a :class:`Batch` for each slice of ``indices``.

    ``raw`` is what ``images.load`` returned (CPU, before ``preprocess``). The
    next batch is loaded (files decoded) in a background thread while the
    caller works on the current one.
    """
    indices = np.asarray(indices)
    cuda = device.type == "cuda"
    slices = [
        indices[start : start + batch_size]
        for start in range(0, len(indices), batch_size)
    ]
    with ThreadPoolExecutor(1, thread_name_prefix="skdiffmic-prefetch") as ahead:
        pending = ahead.submit(images.load, slices[0]) if slices else None
        for k, pos in enumerate(slices):
            with timed("decode"):
                raw = pending.result()
            if k + 1 < len(slices):
                pending = ahead.submit(images.load, slices[k + 1])
            yield _to_network(pos, raw, preprocess, device, cuda)


def _to_network(pos, raw, preprocess, device, cuda) -> Batch:
    """A loaded batch on the device, preprocessed, in the networks' layout."""
    with timed("to device"):
        batch = raw
        if cuda:
            batch = batch.pin_memory().to(device, non_blocking=True)
        batch = preprocess(batch)
        if batch.dim() == 4:  # images: the networks' memory format
            batch = batch.contiguous(memory_format=torch.channels_last)
    return Batch(pos, batch, raw)


def _epoch_size(n, batch_size):
    """Images seen per epoch: all but a trailing batch of one.

    BatchNorm cannot train on one sample, so a last batch of one is dropped
    (that image is seen again in the next epoch's shuffle).
    """
    return n - 1 if n > 1 and n % batch_size == 1 else n


def balanced_sample_weight(y: torch.Tensor, n_classes: int = 0) -> torch.Tensor:
    """Per-row drawing weights, inversely proportional to the row's class size
    (``balanced_sampling``: every class drawn about equally often); for an
    indicator ``y`` (multi-label), :func:`skdiffmic._targets.label_sample_weight`."""
    if y.dim() == 2:
        weights = label_sample_weight(y.cpu().numpy())
        return torch.as_tensor(weights, dtype=torch.float64)
    counts = torch.bincount(y, minlength=n_classes).double()
    return (1.0 / counts.clamp_min(1))[y]


def _epoch_order(n, batch_size, generator, sample_weight=None):
    """Shuffled indices for one epoch (see :func:`_epoch_size`).

    With ``sample_weight``, ``n`` rows are drawn with replacement in proportion
    to it (class-balanced sampling).
    """
    if sample_weight is None:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.multinomial(sample_weight, n, True, generator=generator)
    return order.numpy()[: _epoch_size(n, batch_size)]


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


def guidance_optimizer(dcg: nn.Module, learning_rate: float, factor=None):
    """The DCG model's optimiser and its learning-rate scheduler.

    Adam with amsgrad (the paper's), one multi-tensor update (``foreach``) on
    every device. The scheduler multiplies ``learning_rate`` by
    ``factor(step)``: 1 throughout by default (``guidance_schedule=
    "constant"``, the paper's), or the warm-up and cosine decay of
    :func:`_lr_lambda` (``"cosine"``, as the denoiser's and the CNN
    baseline's). Its cross-fitting copies get the same.
    """
    optimizer = torch.optim.Adam(
        dcg.parameters(), lr=learning_rate, amsgrad=True, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor or _constant_lr)
    return optimizer, scheduler


def _constant_lr(step: int) -> float:
    return 1.0


def stratified_folds(y: torch.Tensor, k: int, generator) -> torch.Tensor:
    """A fold in ``[0, k)`` for each row, each class spread evenly over them
    (for an indicator ``y``, label sets: the rows shuffled and dealt out)."""
    if y.dim() == 2:
        return torch.randperm(len(y), generator=generator) % k
    fold = torch.empty(len(y), dtype=torch.long)
    for c in torch.unique(y):
        rows = torch.nonzero(y == c).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        fold[rows] = torch.arange(len(rows)) % k
    return fold


class CrossFitGuidance:
    """Out-of-fold priors for the denoiser: ``k`` copies of the DCG model.

    The rows are split into ``k`` stratified folds. Copy ``j`` starts from the
    DCG model's initial weights and trains, step for step with it (same
    batches, loss and learning rate), on the rows outside fold ``j`` only. In
    the diffusion stage each row's priors come from the copy that never
    trained on it, in evaluation mode as at prediction. The denoiser thus
    learns to correct priors that err the way the DCG model's do on new
    images, instead of in-sample priors that are already right. The copies
    are dropped after the fit; prediction uses the DCG model itself.
    """

    def __init__(
        self,
        dcg,
        y,
        k,
        learning_rate,
        generator,
        multilabel=False,
        factor=None,
    ):
        # The folds draw from a generator of their own, so that the rest of
        # the fit (batch order, augmentation, noise) draws what it would
        # without cross-fitting.
        folds = torch.Generator().manual_seed(generator.initial_seed() + 1)
        self.fold = stratified_folds(y, k, folds)
        self.models = [copy.deepcopy(dcg) for _ in range(k)]
        pairs = [guidance_optimizer(m, learning_rate, factor) for m in self.models]
        self.optimizers = [opt for opt, _ in pairs]
        self.schedulers = [sched for _, sched in pairs]
        # A constant rate's schedulers hold nothing worth resuming.
        self.scheduled = factor is not None
        self.multilabel = multilabel

    def parts(self) -> dict:
        """The copies and their optimisers, by name (for checkpoints)."""
        parts = {}
        for j, (model, opt) in enumerate(zip(self.models, self.optimizers)):
            parts[f"fold_dcg{j}"] = model
            parts[f"fold_guidance_opt{j}"] = opt
            if self.scheduled:
                parts[f"fold_guidance_scheduler{j}"] = self.schedulers[j]
        return parts

    def step(self, x, target, pos, class_weight, device, priors: bool):
        """One cross-entropy step of each copy on its rows of the batch; with
        ``priors``, the batch's out-of-fold logits (fused, global, local)."""
        fold = self.fold[pos].to(device)
        out = None
        for j, (model, opt) in enumerate(zip(self.models, self.optimizers)):
            inside = fold != j
            if int(inside.sum()) > 1:  # BatchNorm needs two rows to train
                model.train()
                with autocast(device), timed("cross-fit dcg"):
                    guide = model(x[inside])
                ce = classification_loss(
                    guide.fused.float(),
                    target[inside],
                    class_weight,
                    multilabel=self.multilabel,
                )
                opt.zero_grad(set_to_none=True)
                with timed("cross-fit dcg"):
                    ce.backward()
                    opt.step()
            # Every copy's rate follows the DCG model's steps, whether or not
            # the copy trained on this batch (PyTorch warns when a scheduler
            # steps before its optimiser has).
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler")
                self.schedulers[j].step()
            held = ~inside
            if priors and bool(held.any()):
                model.eval()
                with torch.no_grad(), autocast(device), timed("cross-fit dcg"):
                    guide = model(x[held])
                if out is None:
                    out = [
                        torch.empty(len(pos), g.shape[1], device=device) for g in guide
                    ]
                for full, part in zip(out, guide):
                    full[held] = part.float()
        return out


def _weighted_mean(loss, weights=None):
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


def _row_weights(labels, class_weight, prior, focal_weight, multilabel=False):
    """Weights of the diffusion loss's rows (None: all equal).

    The class weight of each row's class, times DiffMIC-v2's focal term
    ``1 + focal_weight * (1 - p_true)``, which weighs up the rows the prior
    gets wrong. Multi-label, a weight per label ``(B, K)``: the label's
    ``pos_weight`` on its positive rows (1 on the others), times the focal
    term of the prior's probability of the row's true value of the label.
    """
    if multilabel:
        weights = None
        if class_weight is not None:
            weights = 1 + (class_weight - 1) * labels
        if focal_weight > 0:
            p_true = torch.where(labels == 1, prior, 1 - prior)
            focal = 1 + focal_weight * (1 - p_true)
            weights = focal if weights is None else weights * focal
        return weights
    weights = None if class_weight is None else class_weight[labels]
    if focal_weight > 0:
        p_true = prior.gather(1, labels[:, None]).squeeze(1)
        focal = 1 + focal_weight * (1 - p_true)
        weights = focal if weights is None else weights * focal
    return weights


def _snapshot(*modules):
    """Detached copies of the modules' state dicts (same device)."""
    return tuple(
        {k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules
    )


def _lr_lambda(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(round(warmup_fraction * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


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
        One record per epoch: stage, losses, wall time and, with validation,
        the validation metrics.
    result : dict
        ``n_epochs`` (diffusion epochs completed) and ``best_epoch`` (the one
        whose weights the models hold on return: the best by validation
        macro-F1 when validating, else the last completed).
    """
    n = len(images)
    multilabel = config.multilabel
    y_all = torch.as_tensor(y, dtype=torch.float32 if multilabel else torch.long)
    class_weight = None
    if config.class_weight is not None:
        class_weight = torch.as_tensor(config.class_weight, dtype=torch.float32)
        class_weight = class_weight.to(device)
    sample_weight = (
        balanced_sample_weight(y_all, n_classes) if config.balanced_sampling else None
    )
    steps_per_epoch = math.ceil(_epoch_size(n, config.batch_size) / config.batch_size)
    total_steps = max(1, steps_per_epoch * config.max_epochs)
    # The DCG model's rate: constant, or a cosine over the DCG steps of both
    # stages (one per batch).
    scheduled = config.guidance_schedule == "cosine"
    guidance_factor = None
    if scheduled:
        guidance_steps = steps_per_epoch * (config.guidance_epochs + config.max_epochs)
        guidance_factor = _lr_lambda(guidance_steps, config.warmup_fraction)
    guidance_opt, guidance_scheduler = guidance_optimizer(
        dcg, config.guidance_learning_rate, guidance_factor
    )
    # foreach: one multi-tensor update instead of a Python loop over the
    # tensors (PyTorch's default on CUDA only).
    optimizer = torch.optim.Adam(
        denoiser.parameters(), lr=config.learning_rate, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, config.warmup_fraction)
    )
    ema = ModelEMA(denoiser, config.ema_decay)
    cross_fit = None
    if config.prior_folds:
        cross_fit = CrossFitGuidance(
            dcg,
            y_all,
            config.prior_folds,
            config.guidance_learning_rate,
            generator,
            multilabel,
            guidance_factor,
        )
    # The snapshot is set when the diffusion stage starts; made here so that
    # checkpoints hold it.
    snapshot = copy.deepcopy(dcg).eval() if config.prior_snapshot else None
    if snapshot is not None:
        for p in snapshot.parameters():
            p.requires_grad_(False)
    dual = config.guidance == "dual"
    # The priors' noise draws from a generator of its own, so that the rest of
    # the fit (batch order, augmentation, noise) draws what it would without.
    prior_noise = None
    if config.prior_noise > 0:
        prior_noise = torch.Generator().manual_seed(generator.initial_seed() + 2)
    eye = torch.eye(n_classes, device=device)
    # The clean label vector y_0 of a batch: one-hot, or the indicator itself.
    label_vector = (lambda target: target) if multilabel else (lambda t: eye[t])
    n_guidance = config.guidance_epochs
    total_epochs = n_guidance + config.max_epochs

    progress = {
        "epoch": 0,  # epochs completed, both stages
        "history": [],
        "best_score": None,
        "best_epoch": 0,
        "best_state": None,
        "stale": 0,
    }
    parts = {
        "dcg": dcg,
        "denoiser": denoiser,
        "ema": ema.module,
        "guidance_opt": guidance_opt,
        # A constant rate's scheduler holds nothing worth resuming.
        **({"guidance_scheduler": guidance_scheduler} if scheduled else {}),
        "optimizer": optimizer,
        "scheduler": scheduler,
        **(cross_fit.parts() if cross_fit is not None else {}),
        **({"snapshot_dcg": snapshot} if snapshot is not None else {}),
    }
    saved = config.checkpoint.load() if config.checkpoint is not None else None
    if saved is not None:
        for name, part in parts.items():
            part.load_state_dict(saved[name])
        ema.updates = int(saved["ema_updates"])
        generator.set_state(saved["generator"])
        if prior_noise is not None:
            prior_noise.set_state(saved["prior_noise_generator"])
        progress.update({k: saved[k] for k in progress})
    history = progress["history"]
    last_state = None
    if progress["epoch"] > n_guidance:
        last_state = _snapshot(dcg, ema.module)

    if config.compile:
        # In place, so state dicts keep their keys; undone before returning.
        dcg.compile()
        denoiser.compile()
    interrupted = False
    bar = tqdm(
        total=total_epochs,
        initial=progress["epoch"],
        disable=not config.verbose,
        desc="DiffMIC",
        unit="epoch",
    )
    try:
        for epoch in range(progress["epoch"], total_epochs):
            start = time.perf_counter()
            dcg.train()
            denoiser.train()
            order = _epoch_order(n, config.batch_size, generator, sample_weight)
            sums = {"guidance_loss": 0.0}
            if epoch >= n_guidance:
                sums.update(diffusion_loss=0.0, mse=0.0, mmd=0.0)
            n_batches = 0
            if epoch == n_guidance and snapshot is not None:
                snapshot.load_state_dict(dcg.state_dict())
            if epoch == n_guidance and config.denoiser_init == "guidance":
                init_from_guidance(ema.module, dcg)
                if init_from_guidance(denoiser, dcg) == 0:
                    warnings.warn(
                        "denoiser_init='guidance' found no tensor of the guidance "
                        "model's global encoder in the denoiser's encoder; the "
                        "denoiser starts from scratch.",
                        UserWarning,
                        stacklevel=3,
                    )
            for pos, x, _ in iter_batches(
                images, order, config.batch_size, preprocess, device
            ):
                if config.augment is not None:
                    with timed("augment"):
                        x = config.augment(x, generator)
                target = y_all[pos].to(device)
                # One DCG pass: its cross-entropy step, and (in the diffusion
                # stage) its detached priors.
                with autocast(device):
                    guide, details = dcg(x, return_details=True)
                ce = classification_loss(
                    guide.fused.float(), target, class_weight, multilabel=multilabel
                )
                guidance_opt.zero_grad(set_to_none=True)
                with timed("dcg backward"):
                    ce.backward()
                with timed("optimiser"):
                    guidance_opt.step()
                    guidance_scheduler.step()
                n_batches += 1
                sums["guidance_loss"] += ce.item()
                if cross_fit is not None:
                    # With priors, the copies' out-of-fold logits replace the
                    # DCG model's in-sample ones for the denoiser.
                    guide = (
                        cross_fit.step(
                            x, target, pos, class_weight, device, epoch >= n_guidance
                        )
                        or guide
                    )
                if epoch < n_guidance:
                    continue
                if snapshot is not None:
                    # The snapshot's logits, in evaluation mode as at
                    # prediction, replace the DCG model's for the denoiser.
                    with torch.no_grad(), autocast(device), timed("snapshot dcg"):
                        guide = snapshot(x)

                b = len(pos)
                logits = [g.detach().float() for g in guide]
                if prior_noise is not None:
                    logits = [
                        g
                        + config.prior_noise
                        * torch.randn(g.shape, generator=prior_noise).to(device)
                        for g in logits
                    ]
                priors = [label_probabilities(g, multilabel) for g in logits]
                y0 = label_vector(target)
                t = antithetic_timesteps(b, schedule.n_timesteps, generator).to(device)
                eps = torch.randn(b, n_classes, generator=generator).to(device)
                weights = _row_weights(
                    target, class_weight, priors[0], config.focal_weight, multilabel
                )
                kind = config.prediction_type
                with autocast(device), timed("denoiser encoder"):
                    features = denoiser.encode(denoiser_input(denoiser, x, details))
                with autocast(device), timed("label head"):
                    y_t = schedule.q_sample(y0, priors[0], t, eps)
                    out = denoiser.head(features, y_t, priors[0], t).float()
                    per_row = schedule.training_loss(
                        out, y0, priors[0], t, eps, kind, multilabel
                    )
                    mse = _weighted_mean(per_row, weights)
                    mmd = torch.zeros((), device=device)
                    if dual:
                        # The global and local paths share the noise draw; MMD
                        # compares the distributions of output and target.
                        for prior in priors[1:]:
                            y_t_path = schedule.q_sample(y0, prior, t, eps)
                            out_path = denoiser.head(features, y_t_path, prior, t)
                            out_path, goal = schedule.training_pair(
                                out_path.float(), y0, prior, t, eps, kind, multilabel
                            )
                            mmd = mmd + gaussian_mmd(goal, out_path)
                    loss = mse + config.mmd_weight * mmd
                optimizer.zero_grad(set_to_none=True)
                with timed("denoiser backward"):
                    loss.backward()
                with timed("optimiser"):
                    nn.utils.clip_grad_norm_(denoiser.parameters(), config.grad_clip)
                    optimizer.step()
                    scheduler.step()
                with timed("ema"):
                    ema.update(denoiser)
                sums["diffusion_loss"] += loss.item()
                sums["mse"] += mse.item()
                sums["mmd"] += mmd.item()

            stage = "guidance" if epoch < n_guidance else "diffusion"
            record = {"epoch": epoch + 1, "stage": stage}
            record.update({k: v / max(1, n_batches) for k, v in sums.items()})
            record["time"] = time.perf_counter() - start
            postfix = {"stage": stage, "ce": f"{record['guidance_loss']:.4f}"}
            if stage == "diffusion":
                postfix["loss"] = f"{record['diffusion_loss']:.4f}"
                last_state = _snapshot(dcg, ema.module)
                if config.validate is not None:
                    with timed("validation"):
                        _validate_epoch(config, dcg, ema, record, progress, last_state)
                    postfix["val_f1"] = f"{record['val_macro_f1']:.3f}"
            history.append(record)
            progress["epoch"] = epoch + 1
            bar.set_postfix(postfix)
            bar.update(1)
            if config.checkpoint is not None:
                config.checkpoint.save(
                    {
                        **{name: part.state_dict() for name, part in parts.items()},
                        "ema_updates": ema.updates,
                        "generator": generator.get_state(),
                        **(
                            {"prior_noise_generator": prior_noise.get_state()}
                            if prior_noise is not None
                            else {}
                        ),
                        **progress,
                    }
                )
            if (
                stage == "diffusion"
                and config.early_stopping
                and progress["stale"] >= config.n_iter_no_change
            ):
                break
    except KeyboardInterrupt:
        if last_state is None:
            raise
        interrupted = True
        warnings.warn(
            f"Training interrupted after {progress['epoch'] - n_guidance} diffusion "
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
    state = progress["best_state"] or (last_state if interrupted else None)
    if state is not None:
        dcg.load_state_dict(state[0])
        ema.module.load_state_dict(state[1])
    completed = max(0, progress["epoch"] - n_guidance)
    result = {"n_epochs": completed, "best_epoch": progress["best_epoch"] or completed}
    return ema, history, result


def _validate_epoch(config, dcg, ema, record, progress, state):
    """Score the epoch on the validation rows; track the best one."""
    dcg.eval()
    record.update(config.validate(dcg, ema.module))
    score = record["val_macro_f1"]
    best = progress["best_score"]
    if best is None or score > best + config.tol:
        progress.update(
            best_score=score,
            best_epoch=record["epoch"] - config.guidance_epochs,
            best_state=state,
            stale=0,
        )
    else:
        progress["stale"] += 1
