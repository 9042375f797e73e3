"""Building the guidance model and the denoiser for images or feature vectors.

Images get the paper's networks: the DCG model (global CAM prior, local ROI
prior) and a denoiser whose image encoder is a timm CNN. Feature vectors (the
tabular mode) get MLPs in place of the CNNs and a single-granularity guidance
model: its one prior serves as the fused, global and local prior alike, so the
diffusion is trained on the fused path only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ._backbones import create_pooled_encoder
from ._denoiser import ConditionalDenoiser
from ._diffusion import RESIDUAL_TYPES
from ._guidance import DCGModel, GuidanceOutput
from ._uncertainty import feature_statistics, map_statistics

__all__ = [
    "NetworkSpec",
    "TabularGuidance",
    "build_networks",
    "denoiser_input",
    "init_from_guidance",
    "mlp",
    "typicality_statistics",
]

TABULAR_WIDTH = 128


def mlp(n_in: int, width: int = TABULAR_WIDTH) -> nn.Sequential:
    """Two ReLU layers ``n_in -> width -> width`` (the tabular encoder)."""
    return nn.Sequential(
        nn.Linear(n_in, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
    )


class TabularGuidance(nn.Module):
    """Single-granularity guidance for feature vectors: an MLP classifier.

    Its logits are returned as the fused, global and local prior alike.
    """

    def __init__(self, n_features: int, n_classes: int, width: int = TABULAR_WIDTH):
        super().__init__()
        self.encoder = mlp(n_features, width)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor, return_details: bool = False):
        hidden = self.encoder(x)
        logits = self.head(hidden)
        out = GuidanceOutput(logits, logits, logits)
        if return_details:
            return out, {"features": hidden}
        return out


@dataclass(frozen=True)
class NetworkSpec:
    """Everything that shapes the guidance model and the denoiser.

    One description serves ``fit`` (which builds the networks from it, then
    trains them) and ``load`` (which builds the same networks and reads their
    tensors): :meth:`of` reads it off a fitted estimator. ``n_inputs`` is the
    number of image channels, or of features when ``tabular``.
    """

    tabular: bool
    n_classes: int
    n_inputs: int
    hidden_dim: int
    n_timesteps: int
    backbone: str = "resnet18"
    image_size: int | None = None
    crop_size: int | None = None
    n_crops: int = 6
    crop_saliency: str = "sum"
    # The denoiser's output layer starts at zero (residual prediction types).
    zero_output: bool = False
    # No CNN of the denoiser's own: it reads the DCG global encoder's features.
    shared_encoder: bool = False
    local_encoder: str = "full"
    multilabel: bool = False

    @classmethod
    def of(cls, estimator) -> NetworkSpec:
        """The spec of a :class:`~skdiffmic.DiffMICClassifier` whose fitted
        input attributes (``tabular_``, ``image_size_``, ...) are set."""
        tabular = bool(estimator.tabular_)
        return cls(
            tabular=tabular,
            n_classes=len(estimator.classes_),
            n_inputs=estimator.n_features_in_ if tabular else estimator._channels(),
            hidden_dim=estimator.hidden_dim,
            n_timesteps=estimator.n_timesteps,
            backbone=estimator.backbone,
            image_size=estimator.image_size_,
            crop_size=estimator.crop_size_,
            n_crops=estimator.n_crops,
            crop_saliency=estimator.crop_saliency,
            zero_output=estimator.prediction_type_ in RESIDUAL_TYPES,
            shared_encoder=estimator.denoiser_init == "shared",
            local_encoder=estimator.local_encoder,
            multilabel=bool(estimator.multilabel_),
        )

    def build(self, seed: int = 0, pretrained=False):
        """The guidance model and the denoiser, initialised from ``seed``
        (and ``pretrained`` weights); see :func:`build_networks`."""
        return build_networks(**asdict(self), seed=seed, pretrained=pretrained)


def build_networks(
    *,
    tabular: bool,
    seed: int,
    n_classes: int,
    n_inputs: int,
    hidden_dim: int,
    n_timesteps: int,
    backbone: str = "resnet18",
    image_size: int | None = None,
    crop_size: int | None = None,
    n_crops: int = 6,
    crop_saliency: str = "sum",
    pretrained=False,
    zero_output: bool = False,
    shared_encoder: bool = False,
    local_encoder: str = "full",
    multilabel: bool = False,
) -> tuple[nn.Module, ConditionalDenoiser]:
    """The guidance model and the denoiser, initialised from ``seed``.

    ``n_inputs`` is the number of image channels, or of features when
    ``tabular``. With ``shared_encoder`` (images only) the denoiser has no
    CNN: it reads the DCG model's pooled global features. The caller's global
    torch RNG is left untouched. ``multilabel``: the labels are independent
    findings (the DCG model weighs its saliency maps by sigmoids).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if tabular:
            guidance = TabularGuidance(n_inputs, n_classes)
            encoder, feat_dim = mlp(n_inputs), TABULAR_WIDTH
        else:
            guidance = DCGModel(
                backbone,
                n_classes=n_classes,
                in_chans=n_inputs,
                image_size=image_size,
                crop_size=crop_size,
                n_crops=n_crops,
                crop_saliency=crop_saliency,
                pretrained=pretrained,
                local_encoder=local_encoder,
                multilabel=multilabel,
            )
            if shared_encoder:
                encoder, feat_dim = None, guidance.feature_dim
            else:
                encoder, feat_dim = create_pooled_encoder(
                    backbone, in_chans=n_inputs, pretrained=pretrained
                )
        denoiser = ConditionalDenoiser(
            encoder,
            feat_dim,
            n_classes=n_classes,
            hidden_dim=hidden_dim,
            n_timesteps=n_timesteps,
            zero_output=zero_output,
        )
    return guidance, denoiser


def denoiser_input(denoiser: ConditionalDenoiser, x, details) -> torch.Tensor:
    """What ``denoiser.encode`` takes: the image ``x``, or (for a denoiser that
    reads the guidance model's features) the guidance pass's pooled features
    from its ``details``, detached: the DCG model learns from its own
    cross-entropy only."""
    return details["features"].detach() if denoiser.reads_guidance else x


def typicality_statistics(guidance, denoiser, x, details=None) -> torch.Tensor:
    """Feature statistics of the typicality test for the network input ``x``.

    Those of the denoiser's encoder, or, when it reads the guidance model's
    features, of the DCG global encoder's maps (taken from ``details`` of a
    guidance pass when given, else computed).
    """
    if not denoiser.reads_guidance:
        return feature_statistics(denoiser.encoder, x)
    if details is not None and "feature_maps" in details:
        return map_statistics(details["feature_maps"])
    return feature_statistics(guidance.global_encoder, x)


def _tensor_name(key: str) -> str:
    """A state-dict key with timm's feature-wrapper renaming undone.

    timm's ``features_only`` wrappers flatten module paths (``stem.0`` becomes
    ``stem_0``) or nest the model (``model.``); comparing names with
    underscores read as dots and without that prefix matches them to the full
    network's.
    """
    return key.removeprefix("model.").replace("_", ".")


def init_from_guidance(denoiser: ConditionalDenoiser, guidance: nn.Module) -> int:
    """Copy the guidance model's global encoder into the denoiser's encoder.

    The global encoder is the same timm network cut at the CAM stage: every
    tensor whose name (see :func:`_tensor_name`) and shape match is copied (all
    of the network up to the CAM stage; at 224 px with a ResNet, all of it).
    Returns the number of tensors copied; 0 for guidance models without a
    global encoder (the tabular mode).
    """
    source = getattr(guidance, "global_encoder", None)
    if source is None:
        return 0
    target = denoiser.encoder.state_dict()
    names = {_tensor_name(k): k for k in target}
    copied = {}
    for key, value in source.state_dict().items():
        name = names.get(_tensor_name(key))
        if name is not None and target[name].shape == value.shape:
            copied[name] = value
    denoiser.encoder.load_state_dict(copied, strict=False)
    return len(copied)
