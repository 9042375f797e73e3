"""The conditional denoiser ``eps_theta(x, y_t, p, t)`` of DiffMIC / CARD.

Split into an image path (:meth:`ConditionalDenoiser.encode`, a CNN run once
per batch) and a label head (:meth:`ConditionalDenoiser.head`, a few
timestep-conditioned linear layers), so that training reuses the image features
for the fused, global and local paths and sampling runs every reverse step on
the head alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalLinear", "ConditionalDenoiser"]


class ConditionalLinear(nn.Module):
    """``gamma_t * (W x + b)``: a linear layer scaled by a learned per-timestep gain.

    The gains are an embedding table with one row per timestep, initialised
    uniformly in [0, 1) as in CARD.
    """

    def __init__(self, n_in: int, n_out: int, n_timesteps: int):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.embed = nn.Embedding(n_timesteps, n_out)
        nn.init.uniform_(self.embed.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.embed(t) * self.lin(x)


class ConditionalDenoiser(nn.Module):
    """Noise estimator conditioned on the image, the noisy label and the prior.

    ``rho(x)`` is ``encoder`` (a timm CNN for images, an MLP for feature
    vectors; ``None`` when the denoiser reads the guidance model's pooled
    global features, ``feat_dim`` wide, instead of the image) projected to
    ``hidden_dim`` and batch-normalised. The label path is
    ``concat(y_t, p) -> ConditionalLinear -> BN -> softplus``, multiplied
    elementwise with ``rho(x)``, then two more ``ConditionalLinear -> BN ->
    softplus`` blocks and a linear layer to ``n_classes``. ``zero_output``
    starts that last layer at zero.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        feat_dim: int,
        *,
        n_classes: int,
        hidden_dim: int,
        n_timesteps: int,
        zero_output: bool = False,
    ):
        super().__init__()
        self.encoder = nn.Identity() if encoder is None else encoder
        self.project = nn.Linear(feat_dim, hidden_dim)
        self.feature_norm = nn.BatchNorm1d(hidden_dim)
        if not zero_output:
            # Start the Hadamard fusion as the identity (features = 1): the
            # label path first learns the image-independent part of the noise
            # estimate, the image modulation grows from zero (as adaLN-Zero
            # does in DiT). Not with a zero output layer: the encoder's
            # gradient would then be a product of two zero-initialised
            # factors, and it would barely learn.
            nn.init.zeros_(self.feature_norm.weight)
            nn.init.ones_(self.feature_norm.bias)
        self.lin1 = ConditionalLinear(2 * n_classes, hidden_dim, n_timesteps)
        self.norm1 = nn.BatchNorm1d(hidden_dim)
        self.lin2 = ConditionalLinear(hidden_dim, hidden_dim, n_timesteps)
        self.norm2 = nn.BatchNorm1d(hidden_dim)
        self.lin3 = ConditionalLinear(hidden_dim, hidden_dim, n_timesteps)
        self.norm3 = nn.BatchNorm1d(hidden_dim)
        self.out = nn.Linear(hidden_dim, n_classes)
        if zero_output:
            # With the "sample" parameterisation the output is y_0 - p: a zero
            # output layer makes the untrained denoiser return the prior.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    @property
    def reads_guidance(self) -> bool:
        """Whether the denoiser has no CNN of its own: built with ``encoder=None``,
        it encodes the guidance model's pooled global features instead of the
        image."""
        return isinstance(self.encoder, nn.Identity)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Batch-normalised image features ``(B, hidden_dim)``.

        ``x`` is the image, or for a denoiser that :attr:`reads_guidance`, the
        guidance model's pooled features ``(B, feat_dim)``.
        """
        return self.feature_norm(self.project(self.encoder(x)))

    def head(self, features, y_t, prior, t) -> torch.Tensor:
        """Output ``(B, n_classes)``: the noise, ``y_0 - p`` or ``v``."""
        if not torch.is_tensor(t) or t.dim() == 0:
            t = torch.full((y_t.shape[0],), int(t), device=y_t.device, dtype=torch.long)
        h = F.softplus(self.norm1(self.lin1(torch.cat([y_t, prior], dim=-1), t)))
        h = features * h
        h = F.softplus(self.norm2(self.lin2(h, t)))
        h = F.softplus(self.norm3(self.lin3(h, t)))
        return self.out(h)

    def forward(self, x, y_t, prior, t) -> torch.Tensor:
        return self.head(self.encode(x), y_t, prior, t)
