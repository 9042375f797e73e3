"""The one prediction path: prior -> encoding -> reverse chains -> scores -> labels.

:func:`encode` passes a batch once through each network (the DCG model's
priors, the denoiser's image features); :meth:`Sampler.chains` runs the
reverse chains on the label head; :class:`Readout` turns the chains into
probabilities; :func:`decide` turns probabilities into labels.
``predict_proba``, ``sample_proba``, ``predict_uncertainty``, the ONNX export
and the command line all go through them.

The estimator encodes every image once and runs its ``n_samples`` reverse
chains on the denoiser's label head as one batch. Each row's noise is drawn
from a seed made of the estimator's sampling seed and the row's own values
(:func:`skdiffmic._inputs.row_seeds`), so that a prediction does not depend on
the batch a row comes in nor on the order of the rows. A chain's ``y_0`` becomes
probabilities through ``softmax(s / T)``, its scores ``s`` being ``y_0`` or, for
``"logit_residual"``, ``log y_0`` (:func:`chain_scores`), with ``T`` fitted on
held-out rows (:func:`fit_temperature`); multi-label, through each label's
``sigmoid(s / T)`` of ``s = logit y_0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ._batching import autocast
from ._diffusion import NoiseSchedule, reverse_chain, sampler_timesteps
from ._inputs import row_seeds
from ._networks import denoiser_input, typicality_statistics
from ._profiling import timed
from ._targets import known_entries, label_probabilities

__all__ = [
    "Denoised",
    "Readout",
    "Sampler",
    "chain_probabilities",
    "chain_scores",
    "chain_seed",
    "correction_offset",
    "decide",
    "encode",
    "fit_temperature",
    "row_noise",
]


def chain_seed(row_seed: int, chain: int) -> int:
    """Seed of reverse chain ``chain`` of a row; chain 0 uses the row's seed."""
    return (row_seed + chain * 0x9E3779B97F4A7C15) % (1 << 63)


def row_noise(seeds, n_samples: int, n_draws: int, n_classes: int, device):
    """Standard normal draws ``(len(seeds) * n_samples, n_draws, n_classes)``.

    Chain ``j`` of the row with seed ``s`` draws from ``chain_seed(s, j)``.
    """
    draws = [
        torch.randn(
            n_draws,
            n_classes,
            generator=torch.Generator().manual_seed(chain_seed(s, j)),
        )
        for s in seeds
        for j in range(n_samples)
    ]
    return torch.stack(draws).to(device)


def chain_scores(y0, prediction_type: str, multilabel: bool = False):
    """The chains' class scores, whose ``softmax(scores / T)`` are probabilities.

    ``y_0`` itself, except for ``"logit_residual"``, whose ``y_0`` is already a
    probability vector: its log, so that ``T = 1`` returns it unchanged.
    Multi-label, the scores are logits whose ``sigmoid(scores / T)`` are each
    label's probability: ``logit y_0``, ``y_0`` being each label's
    probability (``"logit_residual"``) or its 0/1 indicator denoised (the
    other types), clipped to ``[1e-7, 1 - 1e-7]``, so that ``T = 1`` returns
    the clipped ``y_0``.

    Torch tensors in, tensors out (the ONNX graph traces this function);
    numpy arrays in, arrays out.
    """
    if isinstance(y0, np.ndarray):
        return chain_scores(torch.from_numpy(y0), prediction_type, multilabel).numpy()
    if multilabel:
        p = y0.clamp(1e-7, 1 - 1e-7)
        return p.log() - (-p).log1p()
    if prediction_type == "logit_residual":
        return y0.clamp_min(1e-12).log()
    return y0


def chain_probabilities(scores, temperature: float, multilabel: bool = False):
    """Probabilities of each chain from its :func:`chain_scores`: their
    softmax at ``temperature`` on the last axis, or (multi-label) each
    label's sigmoid. Tensors or arrays, as :func:`chain_scores`."""
    if isinstance(scores, np.ndarray):
        scores = torch.from_numpy(scores)
        return chain_probabilities(scores, temperature, multilabel).numpy()
    z = scores / temperature
    return z.sigmoid() if multilabel else z.softmax(-1)


def decide(proba, classes, multilabel: bool = False) -> np.ndarray:
    """Labels from probabilities ``(n, K)``, the one rule of every predictor:
    the class of highest probability, or (multi-label) the int 0/1 indicator
    of the labels of probability at least 0.5."""
    proba = np.asarray(proba)
    if multilabel:
        return (proba >= 0.5).astype(np.int64)
    return np.asarray(classes)[np.argmax(proba, axis=1)]


@dataclass
class Readout:
    """How a fitted model reads its chains: scores less the correction offset,
    then probabilities at the fitted temperature.

    The estimator and the ONNX graph both read chains through it.
    """

    prediction_type: str
    multilabel: bool = False
    offset: np.ndarray | float = 0.0  # subtracted from the scores
    temperature: float = 1.0

    def scores(self, y0, centre: bool = True):
        """:func:`chain_scores`, less ``offset`` unless ``centre`` is False."""
        scores = chain_scores(y0, self.prediction_type, self.multilabel)
        if not centre:
            return scores
        offset = self.offset
        if isinstance(scores, torch.Tensor):
            offset = torch.as_tensor(offset, dtype=scores.dtype)
        return scores - offset

    def chain_proba(self, y0, centre: bool = True):
        """Probabilities of every chain, ``(n, n_samples, K)``."""
        return chain_probabilities(
            self.scores(y0, centre), self.temperature, self.multilabel
        )

    def proba(self, y0, centre: bool = True):
        """``predict_proba``: the chains' probabilities averaged, ``(n, K)``."""
        return self.chain_proba(y0, centre).mean(1)


def correction_offset(
    y0: np.ndarray, prior: np.ndarray, prediction_type: str, multilabel: bool = False
) -> np.ndarray:
    """The constant part of the denoiser's correction: ``(K,)``.

    The mean over rows and chains of the chains' scores minus the prior's
    (both by :func:`chain_scores`: ``log y_0 - log p`` for
    ``"logit_residual"``), centred over the classes, which leaves the
    probabilities of ``softmax(scores - offset)`` as they would be with a
    zero mean. Multi-label, each label's mean logit correction, not centred
    (the labels are independent). ``y0`` is (n, n_samples, K), ``prior``
    (n, K).
    """
    scores = chain_scores(y0, prediction_type, multilabel)
    base = chain_scores(prior[:, None, :], prediction_type, multilabel)
    offset = (scores - base).mean(axis=(0, 1))
    return offset if multilabel else offset - offset.mean()


def fit_temperature(y0: np.ndarray, truth: np.ndarray, multilabel=False) -> float:
    """The temperature ``T`` minimising the log-loss of ``softmax(y0 / T)``.

    ``y0`` (the chains' scores, see :func:`chain_scores`) has shape
    (n, n_samples, K): the chains' probabilities are averaged
    as in ``predict_proba``. Searched on ``log T`` in [-5, 5]. Multi-label,
    ``truth`` is the indicator (n, K) and the loss is the binary log-loss of
    ``sigmoid(y0 / T)``, averaged over its known (not NaN) entries.
    """
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(truth))
    if multilabel:
        truth, known = known_entries(truth)

    def log_loss(log_t):
        proba = chain_probabilities(y0, np.exp(log_t), multilabel).mean(axis=1)
        if multilabel:
            p = np.clip(np.where(truth == 1, proba, 1 - proba), 1e-12, None)
            return -np.mean(np.log(p[known]))
        return -np.mean(np.log(np.clip(proba[rows, truth], 1e-12, None)))

    best = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(best.x)) if best.fun <= log_loss(0.0) else 1.0


class Denoised(NamedTuple):
    """What :meth:`Sampler.denoise` returns for ``n`` rows."""

    y0: np.ndarray  # (n, n_samples, K): each chain's denoised label vector
    prior: np.ndarray  # (n, K): the fused prior's probabilities
    statistics: np.ndarray | None  # typicality features, with ``with_features``


# Rows (images x chains) whose reverse chains run together at prediction.
CHAIN_ROWS = 2048


def encode(guidance_model, denoiser, x, multilabel: bool = False):
    """One pass of each network over a batch: the DCG model's outputs, its
    details, the fused prior's probabilities and the denoiser's image
    features (once per image, whatever the number of chains)."""
    guide, details = guidance_model(x, return_details=True)
    prior = label_probabilities(guide.fused.float(), multilabel)
    with timed("denoiser encoder"):
        features = denoiser.encode(denoiser_input(denoiser, x, details))
    return guide, details, prior, features


@dataclass
class Sampler:
    """The reverse process used at prediction, from the estimator's settings.

    Parameters
    ----------
    schedule : NoiseSchedule
    sampler : {"ddim", "ddpm"}
    n_steps : int
        DDIM steps (ignored for DDPM).
    eta : float
        DDIM stochasticity.
    prediction_type : {"epsilon", "sample", "logit_residual", "v_prediction"}
        What the denoiser outputs.
    multilabel : bool
        Whether the labels are independent findings (sigmoid priors).
    """

    schedule: NoiseSchedule
    sampler: str = "ddim"
    n_steps: int = 10
    eta: float = 0.0
    prediction_type: str = "logit_residual"
    multilabel: bool = False

    def n_head_evaluations(self) -> int:
        """Label-head evaluations per chain."""
        return len(
            sampler_timesteps(self.schedule.n_timesteps, self.sampler, self.n_steps)
        )

    def n_noise_draws(self) -> int:
        """Noise vectors per chain: the start, plus one per stochastic step."""
        if self.sampler == "ddpm":
            return self.schedule.n_timesteps + 1
        if self.eta > 0:
            return self.n_head_evaluations() + 1
        return 1

    def chains(self, denoiser, features, prior, noise, n_samples: int, dtype=None):
        """The reverse chains of ``n`` encoded rows: ``y_0`` of shape
        ``(n, n_samples, K)``.

        ``noise`` is ``(n * n_samples, n_draws, K)``: chain ``j`` of row ``i``
        is row ``i * n_samples + j``.
        """
        features = features.repeat_interleave(n_samples, 0)
        prior = prior.repeat_interleave(n_samples, 0)

        def model_fn(y_t, t):
            out = denoiser.head(features, y_t, prior, t)
            return out.float() if dtype is None else out

        y0 = reverse_chain(
            self.schedule,
            model_fn,
            prior,
            noise,
            sampler=self.sampler,
            n_steps=self.n_steps,
            eta=self.eta,
            prediction_type=self.prediction_type,
            multilabel=self.multilabel,
        )
        return y0.view(-1, n_samples, y0.shape[-1])

    def denoise(
        self,
        batches,
        networks,
        *,
        seed: int,
        n_samples: int,
        n_classes: int,
        device,
        with_features: bool = False,
    ):
        """The chains' ``y_0`` and the fused prior for the rows of ``batches``.

        ``batches`` yields ``(positions, network input, raw rows)``;
        ``networks`` is ``(guidance, denoiser, dtype)``. Each image is encoded
        once (:func:`encode`); its chains run on the label head, together
        with those of the next batches up to :data:`CHAIN_ROWS` chains, their
        noise drawn from the row's own seed. With ``with_features``, the
        :class:`Denoised` also holds the typicality statistics.
        """
        guidance_model, denoiser, dtype = networks
        n_draws = self.n_noise_draws()
        outputs, statistics, priors, pending = [], [], [], []

        def run_chains():
            """The reverse chains of the pending batches, as one batch."""
            features, prior, noise = (torch.cat(parts) for parts in zip(*pending))
            pending.clear()
            with torch.inference_mode(), autocast(device), timed("reverse chain"):
                y0 = self.chains(denoiser, features, prior, noise, n_samples, dtype)
            outputs.append(y0.cpu().double())

        for _, x, raw in batches:
            with timed("noise draws"):
                seeds = row_seeds(raw, seed)
                noise = row_noise(seeds, n_samples, n_draws, n_classes, device)
            x = x if dtype is None else x.to(dtype)
            noise = noise if dtype is None else noise.to(dtype)
            with torch.inference_mode(), autocast(device):
                guide, details, prior, features = encode(
                    guidance_model, denoiser, x, self.multilabel
                )
                priors.append(prior.cpu().double())
                prior = prior if dtype is None else prior.to(dtype)
                if with_features:
                    with timed("feature statistics"):
                        stats = typicality_statistics(
                            guidance_model, denoiser, x, details
                        )
                        statistics.append(stats.cpu().double())
            pending.append((features, prior, noise))
            # The label head's steps cost about as much for 32 rows as for a
            # thousand: run them for many batches at once.
            if sum(len(part[0]) for part in pending) * n_samples >= CHAIN_ROWS:
                run_chains()
        if pending:
            run_chains()
        return Denoised(
            torch.cat(outputs).numpy(),
            torch.cat(priors).numpy(),
            torch.cat(statistics).numpy() if with_features else None,
        )
