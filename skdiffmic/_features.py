"""Frozen pretrained features: the linear-probe baseline's transformer.

:class:`TimmFeatures` turns images (the estimators' ``X``: arrays, file paths,
DICOM) into a timm backbone's globally pooled features, computed once with the
network frozen in evaluation mode. ``make_pipeline(TimmFeatures(),
StandardScaler(), LogisticRegression())`` is the linear probe that users try
first on a new data set.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from ._backbones import check_backbone, create_pooled_encoder, resolve_pretrained
from ._base import ImageInputMixin
from ._profiling import timed

__all__ = ["TimmFeatures"]


class TimmFeatures(
    ClassNamePrefixFeaturesOutMixin, ImageInputMixin, TransformerMixin, BaseEstimator
):
    """Frozen features of a pretrained timm backbone, for a linear probe.

    Every image is centre-cropped to a square, resized to ``image_size`` and
    normalised as the estimators do, then passed once through the backbone
    without its classifier (in evaluation mode, no gradients); the output is
    its globally pooled feature vector. Nothing is trained: ``fit`` only
    resolves the input size and builds the network.

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        timm model name (the estimators' default).
    pretrained : bool or path, default=True
        ImageNet weights as :class:`~skdiffmic.DiffMICClassifier` reads them
        (offline for :func:`skdiffmic.weights.available_backbones`), a local
        weights file, or ``False`` for random weights.
    image_size : int or None, default=None
        Side of the square network input; ``None`` as the estimators resolve
        it from the images passed to ``fit``.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)`` of the rows of a 2-D ``X`` (flattened
        images); 2-D input needs it.
    batch_size : int, default=64
        Images per forward pass.
    image_cache : {"memory"}, str, path or None, default=None
        Keep decoded file inputs, as the estimators' ``image_cache``.
    device : str, default="auto"
        Torch device: ``"auto"`` picks CUDA when available.
    verbose : int, default=0
        ``1`` shows a progress bar over the batches of ``transform``.

    Attributes
    ----------
    model_ : torch.nn.Module
        The frozen backbone, without its classifier.
    n_features_out_ : int
        Length of the feature vectors.
    image_shape_ : tuple
        ``(H, W, C)`` of the images passed to ``fit`` (H and W None for files
        of varying sizes).
    image_size_ : int
        The network input side.

    See Also
    --------
    TimmClassifier : The same backbone fine-tuned end to end.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skdiffmic.baselines import TimmFeatures
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.array(["benign", "malignant"] * 10)
    >>> features = TimmFeatures("test_resnet", pretrained=False)
    >>> features.fit_transform(X).shape
    (20, 96)
    >>> probe = make_pipeline(features, StandardScaler(), LogisticRegression())
    >>> probe.fit(X, y).predict_proba(X[:2]).shape
    (2, 2)
    """

    _torch_modules = ("model_",)
    _supports_tabular = False

    _parameter_constraints: dict = {
        "backbone": [str],
        "pretrained": ["boolean", str, os.PathLike, None],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "image_shape": [tuple, list, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "image_cache": [StrOptions({"memory"}), str, os.PathLike, None],
        "device": [str],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="tf_efficientnet_lite0",
        *,
        pretrained=True,
        image_size=None,
        image_shape=None,
        batch_size=64,
        image_cache=None,
        device="auto",
        verbose=0,
    ):
        self.backbone = backbone
        self.pretrained = pretrained
        self.image_size = image_size
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.image_cache = image_cache
        self.device = device
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Resolve the input size and build the frozen network.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as :meth:`DiffMICClassifier.fit <skdiffmic.DiffMICClassifier.fit>`
            takes them (only their shape and size are read).
        y : None
            Ignored.

        Returns
        -------
        self : TimmFeatures
            The fitted transformer.
        """
        data = self._inputs(X, fitting=True)
        check_backbone(self.backbone)
        weights = resolve_pretrained(self.backbone, self.pretrained)
        self.tabular_ = False
        self.image_shape_ = data.shape
        self.image_size_ = data.size
        # Random weights (pretrained=False) from a fixed seed: the same
        # features on every fit, whatever the caller's global torch RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, n_features = create_pooled_encoder(
                self.backbone, in_chans=data.channels, pretrained=weights
            )
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        self.model_ = model.eval()
        self.n_features_out_ = n_features
        return self

    @property
    def _n_features_out(self):
        """Feature count for :meth:`get_feature_names_out`."""
        return self.n_features_out_

    def transform(self, X):
        """The pooled features of every image.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for :meth:`fit` (files are decoded batch by batch).

        Returns
        -------
        features : ndarray of shape (n_images, ``n_features_out_``)
            float32 feature vectors, in the order of ``X``'s rows.
        """
        data, device = self._prepare(X)
        out = np.empty((len(data), self.n_features_out_), dtype=np.float32)
        bar = tqdm(
            total=len(data),
            disable=not self.verbose,
            desc="TimmFeatures",
            unit="image",
        )
        with bar:
            for pos, x, _ in self._batches(data, device):
                with torch.inference_mode(), timed("feature forward"):
                    features = self.model_(x).float().cpu().numpy()
                out[pos] = features
                bar.update(len(pos))
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        return tags
