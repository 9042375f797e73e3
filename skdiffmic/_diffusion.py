"""Noise schedules, the prior-mean forward process and the reverse samplers.

Pure tensor functions: nothing here owns a network. The notation follows CARD
(Han, Zheng and Zhou, NeurIPS 2022) and DiffMIC (Yang et al., MICCAI 2023):

* ``beta_t`` is the noise schedule, ``alpha_t = 1 - beta_t`` and
  ``abar_t = prod_{s <= t} alpha_s`` (``alphas_cumprod``).
* The forward process with the prior ``p`` as its mean (CARD eq. 2, DiffMIC eq. 1)::

      y_t = sqrt(abar_t) y_0 + (1 - sqrt(abar_t)) p + sqrt(1 - abar_t) eps

* Writing ``z = y - p`` turns this into the ordinary DDPM forward process
  ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``. Every reverse step below is
  therefore the standard DDPM / DDIM step taken on ``z`` and shifted back by
  ``p``. For DDPM this is exactly CARD's posterior (CARD eq. 5-6): its three
  coefficients ``gamma_0, gamma_1, gamma_2`` are the DDPM posterior coefficients
  ``c_0, c_1`` and ``1 - c_0 - c_1``.

Timesteps are 0-based indices ``t = 0 .. T-1`` into the schedule tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PREDICTION_TYPES = ("epsilon", "sample", "logit_residual", "v_prediction")
# The types whose denoiser outputs a correction of the prior (zero: the prior).
RESIDUAL_TYPES = ("sample", "logit_residual")

__all__ = [
    "PREDICTION_TYPES",
    "RESIDUAL_TYPES",
    "NoiseSchedule",
    "Parameterisation",
    "logit_residual_y0",
    "parameterisation",
    "antithetic_timesteps",
    "inference_timesteps",
    "make_betas",
    "reverse_chain",
    "sampler_timesteps",
]


def make_betas(
    kind: str, n_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """Return the float64 beta schedule of length ``n_timesteps``.

    ``"linear"`` is DDPM's schedule from ``beta_start`` to ``beta_end`` (DiffMIC's
    default, 1e-4 to 0.02 over T = 1000). For other ``T`` both ends are scaled
    by ``1000 / T`` (as in Nichol & Dhariwal's code) so that ``abar_T`` stays
    near zero and the chain still starts at the prior. ``"cosine"`` is Nichol &
    Dhariwal's (2021, eq. 17) with offset ``s = 0.008`` and betas clipped at 0.999.
    """
    if n_timesteps < 1:
        raise ValueError(f"n_timesteps must be >= 1, got {n_timesteps}.")
    if kind == "linear":
        scale = 1000.0 / n_timesteps
        start, end = beta_start * scale, min(beta_end * scale, 0.999)
        return torch.linspace(start, end, n_timesteps, dtype=torch.float64)
    if kind == "cosine":
        s = 0.008
        steps = torch.arange(n_timesteps + 1, dtype=torch.float64) / n_timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"Unknown beta schedule {kind!r}; expected 'linear' or 'cosine'.")


def antithetic_timesteps(
    n: int, n_timesteps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``n`` timesteps in antithetic pairs ``(t, T - 1 - t)`` (CARD, DiffMIC)."""
    half = torch.randint(0, n_timesteps, ((n + 1) // 2,), generator=generator)
    return torch.cat([half, n_timesteps - 1 - half])[:n]


def inference_timesteps(n_timesteps: int, n_steps: int | None) -> list[int]:
    """Decreasing timesteps visited by the reverse chain.

    ``n_steps=None`` (or ``n_timesteps``) gives the full chain ``T-1, ..., 0``;
    otherwise ``n_steps`` evenly strided steps from ``T-1`` (ending at ``t = 0``
    when ``n_steps > 1``); each DDIM step jumps to the next, the last to ``y_0``.
    More steps than timesteps is an error (as in diffusers' schedulers): the
    chain cannot visit a timestep twice.
    """
    if n_steps is not None and n_steps > n_timesteps:
        raise ValueError(
            f"n_inference_steps={n_steps} is larger than n_timesteps={n_timesteps}: "
            "the DDIM chain visits each of the n_timesteps timesteps at most once. "
            f"Use n_inference_steps <= {n_timesteps} (or sampler='ddpm' for the "
            "full chain)."
        )
    if n_steps is None or n_steps == n_timesteps:
        return list(range(n_timesteps - 1, -1, -1))
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}.")
    grid = torch.linspace(n_timesteps - 1, 0, n_steps, dtype=torch.float64)
    steps = sorted({int(round(v)) for v in grid.tolist()}, reverse=True)
    return steps


def sampler_timesteps(n_timesteps: int, sampler: str, n_steps: int) -> list[int]:
    """Timesteps visited by ``sampler``: all of them for ``"ddpm"``, ``n_steps``
    strided ones for ``"ddim"``."""
    if sampler == "ddpm":
        return inference_timesteps(n_timesteps, None)
    if sampler == "ddim":
        return inference_timesteps(n_timesteps, n_steps)
    raise ValueError(f"Unknown sampler {sampler!r}; expected 'ddim' or 'ddpm'.")


def _gather(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor):
    """Schedule value(s) at ``t``, shaped to broadcast against ``like``."""
    if isinstance(t, int):
        return values[t].to(like.dtype)
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


@dataclass
class NoiseSchedule:
    """A diffusion schedule and the maths on it.

    Parameters
    ----------
    betas : torch.Tensor
        Float64 tensor of shape ``(T,)``, values in (0, 1).
    """

    betas: torch.Tensor

    def __post_init__(self):
        self.betas = self.betas.to(torch.float64)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    @classmethod
    def create(cls, kind: str = "linear", n_timesteps: int = 1000) -> NoiseSchedule:
        return cls(make_betas(kind, n_timesteps))

    @property
    def n_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def abar(self, t, like):
        return _gather(self.alphas_cumprod, t, like)

    def abar_prev(self, t, like):
        """``abar_{t-1}`` with ``abar_{-1} = 1`` (the clean data)."""
        prev = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod[:-1]])
        return _gather(prev, t, like)

    # -- forward process ---------------------------------------------------------
    def q_sample(self, y0, prior, t, noise):
        """Noisy labels ``y_t`` (CARD eq. 2): prior-mean forward process."""
        a = self.abar(t, y0)
        return a.sqrt() * y0 + (1 - a.sqrt()) * prior + (1 - a).sqrt() * noise

    def target(self, y0, prior, t, noise, prediction_type="epsilon"):
        """What the denoiser is trained to output for ``y_t = q_sample(...)``
        (see each :class:`Parameterisation`)."""
        return parameterisation(prediction_type).target(
            self.abar(t, y0), y0, prior, noise
        )

    def training_loss(
        self, output, y0, prior, t, noise, prediction_type="epsilon", multilabel=False
    ):
        """Loss of the denoiser's ``output`` for ``y_t``: per row ``(B,)``, or
        (``multilabel``) per label ``(B, K)``, whose sum over the labels is the
        row's loss (see :meth:`Parameterisation.loss`)."""
        kind = parameterisation(prediction_type)
        return kind.loss(output, self.abar(t, y0), y0, prior, noise, multilabel)

    def training_pair(
        self, output, y0, prior, t, noise, prediction_type="epsilon", multilabel=False
    ):
        """``(prediction, goal)``, whose distributions the MMD term compares
        (see :meth:`Parameterisation.pair`)."""
        kind = parameterisation(prediction_type)
        return kind.pair(output, self.abar(t, y0), y0, prior, noise, multilabel)

    def split_output(
        self,
        y_t,
        prior,
        t,
        output,
        prediction_type="epsilon",
        multilabel=False,
    ):
        """The estimates ``(y0_hat, eps_hat)`` from the denoiser's ``output``.

        Inverts :meth:`target` with ``z_t = y_t - p = sqrt(abar_t) z_0 +
        sqrt(1 - abar_t) eps`` (see :meth:`Parameterisation.estimates`).
        """
        kind = parameterisation(prediction_type)
        z0, eps = kind.estimates(
            output, self.abar(t, y_t), y_t - prior, prior, multilabel
        )
        return prior + z0, eps

    # -- reverse steps -----------------------------------------------------------
    def ddpm_step(self, y_t, prior, t: int, y0_hat, noise=None):
        """One ancestral step ``y_t -> y_{t-1}`` of CARD's reverse process.

        Posterior mean ``p + c0 (y0_hat - p) + c1 (y_t - p)`` with
        ``c0 = beta_t sqrt(abar_{t-1}) / (1 - abar_t)``,
        ``c1 = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)``, and variance
        ``beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)``. At ``t = 0``
        the step returns ``y0_hat`` itself (CARD's ``p_sample_t_1to0``).
        """
        if t == 0:
            return y0_hat
        a, a_prev = self.abar(t, y_t), self.abar_prev(t, y_t)
        beta = _gather(self.betas, t, y_t)
        alpha = 1 - beta
        c0 = beta * a_prev**0.5 / (1 - a)
        c1 = alpha**0.5 * (1 - a_prev) / (1 - a)
        mean = prior + c0 * (y0_hat - prior) + c1 * (y_t - prior)
        if noise is None:
            return mean
        var = beta * (1 - a_prev) / (1 - a)
        return mean + var**0.5 * noise

    def ddim_step(
        self, y_t, prior, t: int, t_next: int, y0_hat, eps_hat, eta=0.0, noise=None
    ):
        """One DDIM step ``y_t -> y_{t_next}`` (Song et al. 2021, eq. 12).

        Taken on ``z = y - p``: ``z_next = sqrt(abar_next) z0_hat +
        sqrt(1 - abar_next - sigma^2) eps_hat + sigma * noise`` with
        ``sigma = eta sqrt((1 - abar_next) / (1 - abar_t))
        sqrt(1 - abar_t / abar_next)``. ``t_next = -1`` means the clean data
        (``abar = 1``): the step returns ``y0_hat``.
        """
        if t_next < 0:
            return y0_hat
        a = self.abar(t, y_t)
        a_next = self.abar(t_next, y_t)
        sigma = eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)) ** 0.5
        direction = (1 - a_next - sigma**2).clamp(min=0) ** 0.5 * eps_hat
        out = prior + a_next**0.5 * (y0_hat - prior) + direction
        if noise is not None and eta > 0:
            out = out + sigma * noise
        return out


def logit_residual_y0(prior, output, multilabel=False):
    """``softmax(log p + output)``: the prior corrected in log-probability space.

    A correction of a given size moves a confident prior (p near 0 or 1) far
    less than an uncertain one, so the ranking of the prior's confident rows
    survives a small correction. Multi-label, each label's probability is
    corrected on its own: ``sigmoid(logit p + output)``.
    """
    logits = _corrected_logits(prior, output, multilabel)
    return logits.sigmoid() if multilabel else logits.softmax(-1)


def _corrected_logits(prior, output, multilabel=False):
    """``log p + output`` (multi-label: ``logit p + output``), with ``p`` kept
    1e-12 away from 0 (and from 1) before the log.

    Multi-label, the logit is taken in float64: a float32 sigmoid of a logit
    above about 17 is exactly 1, and ``1 - 1e-12`` is 1 in float32, which
    would make the logit infinite and the label impossible to correct.
    """
    if multilabel:
        p = prior.double().clamp(1e-12, 1 - 1e-12)
        return (p.log() - (-p).log1p()).to(prior.dtype) + output
    return prior.clamp_min(1e-12).log() + output


def _unknown_prediction_type(name) -> str:
    return (
        f"Unknown prediction_type {name!r}; expected one of "
        f"{', '.join(map(repr, PREDICTION_TYPES))}."
    )


class Parameterisation:
    """What a denoiser outputs, in one place: its training target and loss,
    what the MMD term compares, and the estimates a reverse step needs.

    Every quantity is on ``z = y - p`` (see the module docstring), with
    ``a = abar_t`` broadcast to the rows. Subclasses define :meth:`target`
    (or override :meth:`loss` and :meth:`pair`) and :meth:`estimates`.
    """

    name = ""

    def target(self, a, y0, prior, noise):
        raise NotImplementedError

    def loss(self, output, a, y0, prior, noise, multilabel=False):
        """The squared error against :meth:`target`, averaged over the classes
        (multi-label: per label, summing to the row's mean)."""
        goal = self.target(a, y0, prior, noise)
        if multilabel:
            return (output - goal).pow(2) / output.shape[-1]
        return (output - goal).pow(2).mean(-1)

    def pair(self, output, a, y0, prior, noise, multilabel=False):
        """``(prediction, goal)`` of the MMD term: the output and its target."""
        return output, self.target(a, y0, prior, noise)

    def estimates(self, output, a, z, prior, multilabel=False):
        """``(z0_hat, eps_hat)`` from ``output`` at ``z_t = z``."""
        raise NotImplementedError


class Epsilon(Parameterisation):
    """The noise ``eps`` (DDPM, CARD, DiffMIC). An error of the output reaches
    ``y0_hat`` multiplied by ``sqrt((1 - abar_t) / abar_t)`` (about 157 at
    ``t = T`` on the linear schedule)."""

    name = "epsilon"

    def target(self, a, y0, prior, noise):
        return noise

    def estimates(self, output, a, z, prior, multilabel=False):
        return (z - (1 - a).sqrt() * output) / a.sqrt(), output


class Sample(Parameterisation):
    """The clean label's offset from the prior, ``y_0 - p``: an output of zero
    means "the prior is right", and an error reaches ``y0_hat`` unscaled."""

    name = "sample"

    def target(self, a, y0, prior, noise):
        return y0 - prior

    def estimates(self, output, a, z, prior, multilabel=False):
        return output, (z - a.sqrt() * output) / (1 - a).sqrt()


class VPrediction(Parameterisation):
    """``v = sqrt(abar_t) eps - sqrt(1 - abar_t) (y_0 - p)`` (Salimans & Ho
    2022, on ``z``)."""

    name = "v_prediction"

    def target(self, a, y0, prior, noise):
        return a.sqrt() * noise - (1 - a).sqrt() * (y0 - prior)

    def estimates(self, output, a, z, prior, multilabel=False):
        z0 = a.sqrt() * z - (1 - a).sqrt() * output
        eps = (1 - a).sqrt() * z + a.sqrt() * output
        return z0, eps


class LogitResidual(Parameterisation):
    """A correction of the prior's log-probabilities: ``y0_hat = softmax(log p
    + output)`` (multi-label: ``sigmoid(logit p + output)``), ``p`` itself for
    an output of zero. It has no target in output space."""

    name = "logit_residual"

    def loss(self, output, a, y0, prior, noise, multilabel=False):
        """The log-loss of the corrected prior against the clean label. Its
        gradient with respect to the output is ``y0_hat - y_0``, as the squared
        error's is for ``"sample"``; the squared error of ``y0_hat`` would
        shrink it by the softmax's slope (about ``1 / K`` for a flat prior).
        Multi-label, each label's binary log-loss."""
        logits = _corrected_logits(prior, output, multilabel)
        if multilabel:
            return F.binary_cross_entropy_with_logits(logits, y0, reduction="none")
        return -(y0 * logits.log_softmax(-1)).sum(-1)

    def pair(self, output, a, y0, prior, noise, multilabel=False):
        """The ``y_0`` estimate against the clean label ``y_0``."""
        return logit_residual_y0(prior, output, multilabel), y0

    def estimates(self, output, a, z, prior, multilabel=False):
        z0 = logit_residual_y0(prior, output, multilabel) - prior
        return z0, (z - a.sqrt() * z0) / (1 - a).sqrt()


_PARAMETERISATIONS = {
    kind.name: kind for kind in (Epsilon(), Sample(), LogitResidual(), VPrediction())
}


def parameterisation(prediction_type: str) -> Parameterisation:
    """The :class:`Parameterisation` of a ``prediction_type``."""
    try:
        return _PARAMETERISATIONS[prediction_type]
    except KeyError:
        raise ValueError(_unknown_prediction_type(prediction_type)) from None


def reverse_chain(
    schedule: NoiseSchedule,
    model_fn,
    prior,
    noise,
    *,
    sampler="ddim",
    n_steps=10,
    eta=0.0,
    prediction_type="epsilon",
    multilabel=False,
):
    """Run the reverse process from ``y_T ~ N(p, I)`` to ``y_0``.

    Parameters
    ----------
    schedule : NoiseSchedule
    model_fn : callable ``(y_t, t) -> output``
        The denoiser's output at integer timestep ``t`` (its label head with
        the image features and prior bound in), read as ``prediction_type``.
    prior : torch.Tensor of shape (B, K)
        The chain's mean ``p``.
    noise : torch.Tensor of shape (B, S, K)
        Standard normal draws: ``noise[:, 0]`` starts the chain and
        ``noise[:, i]`` is the fresh noise of step ``i`` (stochastic steps
        only). ``S`` must be at least ``1 + number of steps``.
    sampler : {"ddim", "ddpm"}
        ``"ddim"`` takes ``n_steps`` strided DDIM steps; ``"ddpm"`` the full
        ancestral chain (``n_steps`` ignored).
    eta : float
        DDIM stochasticity (0: deterministic).
    prediction_type : {"epsilon", "sample", "logit_residual", "v_prediction"}
        What ``model_fn`` outputs (see :meth:`NoiseSchedule.split_output`).
    multilabel : bool
        Whether the labels are independent findings (a ``"logit_residual"``
        output then corrects each label's logit).

    Returns
    -------
    torch.Tensor of shape (B, K)
        The denoised label vectors ``y_0``.
    """
    steps = sampler_timesteps(schedule.n_timesteps, sampler, n_steps)
    if noise.shape[1] < len(steps) + 1 and (sampler == "ddpm" or eta > 0):
        raise ValueError(f"Need {len(steps) + 1} noise draws, got {noise.shape[1]}.")
    y = prior + noise[:, 0]
    for i, t in enumerate(steps):
        y0_hat, eps_hat = schedule.split_output(
            y, prior, t, model_fn(y, t), prediction_type, multilabel
        )
        if sampler == "ddpm":
            y = schedule.ddpm_step(y, prior, t, y0_hat, noise=noise[:, i + 1])
        else:
            t_next = steps[i + 1] if i + 1 < len(steps) else -1
            step_noise = noise[:, i + 1] if eta > 0 else None
            y = schedule.ddim_step(
                y, prior, t, t_next, y0_hat, eps_hat, eta=eta, noise=step_noise
            )
    return y
