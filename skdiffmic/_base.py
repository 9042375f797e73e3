"""What the estimators share: turning ``X`` and ``y`` into rows and labels.

:class:`ImageInputMixin` owns the input contract of the package's estimators:
image arrays, image file paths, flattened images with ``image_shape``, feature
matrices (where the estimator has a tabular mode), the label checks, the
training augmentation, moving modules between devices, and pickling their
torch modules as CPU state.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._backbones import normalization_stats
from ._batching import N_VIEWS, autocast, dihedral, iter_batches
from ._distributed import (
    device_list,
    fit_on_devices,
    join_launched_group,
    launched_device,
    world,
)
from ._inputs import (
    ArrayFeatures,
    Augment,
    Normalize,
    PathImages,
    as_images,
    as_paths,
    check_dense,
)
from ._sampling import decide
from ._targets import check_multilabel, is_multilabel, positive_weights

__all__ = ["MIN_IMAGE_SIZE", "ImageInputMixin", "resolve_device"]

_AUGMENT_KEYS = {"hflip", "vflip", "rotation"}
_PAPER_SIZE = 224
MIN_IMAGE_SIZE = 8


def resolve_device(name, *, for_fit: bool) -> torch.device:
    """The torch device of a ``device`` parameter; a list's first entry (the
    device a distributed fit's estimator predicts on)."""
    if not isinstance(name, str):
        name = device_list(name)[0]
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"Invalid device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        if for_fit:
            raise ValueError(
                f"device={name!r} was requested but CUDA is not available."
            )
        warnings.warn(
            f"device={name!r} is not available here; predicting on the CPU.",
            UserWarning,
            stacklevel=3,
        )
        return torch.device("cpu")
    return device


class ImageInputMixin:
    """Input handling shared by the estimators (see the module docstring).

    The estimator defines the parameters ``backbone``, ``image_size``,
    ``image_shape`` and ``augment``; after ``fit`` the attributes ``tabular_``,
    ``image_shape_`` and ``image_size_``. ``_torch_modules`` names the fitted
    torch modules, stored on the CPU when pickled.
    """

    _torch_modules: tuple[str, ...] = ()
    _supports_tabular = True

    def _check_image_shape(self):
        shape = self.image_shape
        if shape is None:
            return None
        shape = tuple(shape)
        if len(shape) not in (2, 3) or not all(
            isinstance(s, Integral) and s > 0 for s in shape
        ):
            raise ValueError(
                f"image_shape must be (H, W) or (H, W, C) of positive integers; "
                f"got {self.image_shape!r}."
            )
        return shape

    def _inputs(self, X, *, fitting: bool):
        """Wrap ``X`` as the source of rows its kind and the fitted mode call for.

        Returns an ArrayImages / PathImages (image mode) or an ArrayFeatures
        (tabular mode). Raises clear errors for input the estimator cannot use.
        """
        check_dense(X)
        tabular = None if fitting else self.tabular_
        if isinstance(X, (list, tuple)) and len(X) == 0:
            raise ValueError("X is empty: found 0 samples.")
        paths = as_paths(X)
        if paths is not None:
            if tabular:
                raise ValueError(
                    "This model was fitted on feature vectors; got image file paths."
                )
            images = PathImages(
                paths,
                channels=None if fitting else self._channels(),
                cache=getattr(self, "image_cache", None),
            )
            return self._sized(images, fitting)
        if not hasattr(X, "iloc"):  # DataFrames go to validate_data as they are
            X = np.asarray(X)
        ndim = X.ndim
        dtype = getattr(X, "dtype", None)
        if ndim == 2 and dtype is not None and dtype.kind in "USV":
            raise TypeError(
                f"X has dtype {dtype}; features and flattened images must be numeric."
            )
        if ndim == 1:
            raise ValueError(
                "Expected 2D array, got a 1-D X: pass images (n, H, W) or "
                "(n, H, W, C), a list of image paths, flattened images "
                "(n, H*W*C) with image_shape, or a feature matrix "
                "(n_samples, n_features). Reshape your data, e.g. one sample with "
                "X.reshape(1, -1)."
            )
        if ndim == 2:
            image_shape = self._check_image_shape()
            if image_shape is None and fitting and not self._supports_tabular:
                raise ValueError(
                    f"{type(self).__name__} needs images; got a 2-D X. Set "
                    "image_shape to reshape flattened rows."
                )
            if image_shape is None and (fitting or tabular):
                X = validate_data(self, X, reset=fitting, dtype=np.float64)
                return ArrayFeatures(X)
            if image_shape is None:
                raise ValueError(
                    "This model was fitted on images; got a 2-D X. Pass images, "
                    "or set image_shape to reshape flattened rows."
                )
            X = validate_data(self, X, reset=fitting, dtype="numeric")
            if X.shape[1] != int(np.prod(image_shape)):
                raise ValueError(
                    f"X has {X.shape[1]} features per row, which cannot be reshaped "
                    f"to image_shape={image_shape} ({int(np.prod(image_shape))} "
                    "values)."
                )
            X = X.reshape(X.shape[0], *image_shape)
        elif tabular:
            raise ValueError(
                f"This model was fitted on feature vectors "
                f"({self.n_features_in_} features); got an array of {ndim} "
                "dimensions."
            )
        elif fitting:
            for name in ("n_features_in_", "feature_names_in_"):
                self.__dict__.pop(name, None)
        images = as_images(X, n_channels=None if fitting else self._channels())
        return self._sized(images, fitting)

    def _channels(self):
        return self.image_shape_[2]

    def _sized(self, images, fitting):
        """Set the network input side of an image source (resolved at fit)."""
        if fitting:
            if self.image_size is not None:
                size = self.image_size
            else:
                size = min(_PAPER_SIZE, int(np.median(images.shorter_sides())))
            if size < MIN_IMAGE_SIZE:
                raise ValueError(
                    f"The network input would be {size} px a side; the networks "
                    f"need at least {MIN_IMAGE_SIZE} px (set image_size to upsample "
                    "small images)."
                )
            images.size = int(size)
        else:
            images.size = self.image_size_
        return images

    def _check_targets(self, y, n_samples):
        """``(y, label names)``: class labels (1-D), or a multi-label indicator
        ``(n_samples, n_labels)`` of 0 and 1 with its DataFrame's column names
        (None for other containers); see :mod:`skdiffmic._targets`."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y "
                "is None."
            )
        if is_multilabel(y):
            if n_samples < 2:
                raise ValueError("Need at least 2 training samples; got 1 sample.")
            return check_multilabel(y, n_samples)
        y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {n_samples} in X "
                f"and {y.shape[0]} labels in y."
            )
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity.")
        if y.dtype == object and any(v is None or v != v for v in y):
            raise ValueError("y contains missing values (None or NaN).")
        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            label = y[0].item() if hasattr(y[0], "item") else y[0]
            raise ValueError(
                f"Need samples of at least 2 classes; y has 1 class ({label!r})."
            )
        if n_samples < 2:
            raise ValueError("Need at least 2 training samples; got 1 sample.")
        return y, None

    @staticmethod
    def _encode_targets(y, names):
        """``(classes, codes, label names)`` of checked targets.

        Single-label: the sorted class labels, each row's index into them and
        None. Multi-label: ``arange(n_labels)`` (scikit-learn's ``classes_``
        for an indicator target), the indicator itself and the label names
        (a DataFrame's column names, else the column indices).
        """
        if y.ndim == 2:
            classes = np.arange(y.shape[1])
            return classes, y, names if names is not None else classes.copy()
        encoder = LabelEncoder().fit(y)
        return encoder.classes_, encoder.transform(y), None

    def _class_weights(self, y, codes):
        """The ``class_weight`` parameter's weights, in the order of
        ``classes_`` (multi-label: each label's ``pos_weight``), or None."""
        if self.class_weight is None:
            return None
        if self.multilabel_:
            return positive_weights(codes, self.class_weight, self.label_names_)
        return compute_class_weight(self.class_weight, classes=self.classes_, y=y)

    def _set_targets(self, classes, label_names):
        """Set ``classes_``, ``multilabel_`` and (multi-label) ``label_names_``."""
        self.classes_ = classes
        self.multilabel_ = label_names is not None
        if self.multilabel_:
            self.label_names_ = label_names
        elif hasattr(self, "label_names_"):
            del self.label_names_

    def _is_multilabel(self) -> bool:
        """Whether the fitted model predicts label sets (older fits: no)."""
        return getattr(self, "multilabel_", False)

    def _decide(self, proba):
        """``predict`` from ``predict_proba``: the argmax class, or (multi-label)
        every label whose probability is at least 0.5, as an int indicator."""
        return decide(proba, self.classes_, self._is_multilabel())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.classifier_tags is not None:  # the classifiers: label sets too
            tags.classifier_tags.multi_label = True
            tags.target_tags.multi_output = True
        return tags

    def _check_augment(self):
        if self.augment is False:
            return None
        if self.augment is True:
            return Augment()
        unknown = set(self.augment) - _AUGMENT_KEYS
        if unknown:
            raise ValueError(
                f"Unknown augment option(s) {sorted(unknown)}; use "
                f"{sorted(_AUGMENT_KEYS)}."
            )
        options = {"hflip": False, "vflip": False, "rotation": 0.0, **self.augment}
        rotation = options["rotation"]
        if not isinstance(rotation, Real) or not 0 <= rotation <= 180:
            raise ValueError(
                f"augment['rotation'] must be a number of degrees in [0, 180]; got "
                f"{rotation!r}."
            )
        return Augment(bool(options["hflip"]), bool(options["vflip"]), rotation)

    def _fit_on_devices(self, X, y) -> bool:
        """With a list ``device``: fit in one worker process per entry
        (:func:`skdiffmic._distributed.fit_on_devices`) and take rank 0's
        fitted state. Returns whether ``fit`` is done."""
        devices = device_list(self.device)
        if devices is None or world()[1] > 1:
            return False
        fitted = fit_on_devices(self, X, y, devices)
        self.__dict__.update(fitted.__dict__)
        return True

    def _fit_device(self) -> torch.device:
        """The device this process fits on, after joining the process group
        of an external launcher (``torchrun``) if there is one."""
        name = self.device
        if not isinstance(name, str):  # a list inside a launched group
            name = device_list(name)[world()[0] % len(name)]
        if join_launched_group(launched_device(name)):
            name = launched_device(name)
        return resolve_device(name, for_fit=True)

    def _prepare(self, X):
        """Check ``X`` against the fitted model; move its modules to the device.

        Returns the row source and the prediction device.
        """
        check_is_fitted(self)
        data = self._inputs(X, fitting=False)
        device = resolve_device(self.device, for_fit=False)
        for name in self._torch_modules:
            setattr(self, name, self._to_device(getattr(self, name), device).eval())
        return data, device

    def _batches(self, data, device, view=0):
        """Prediction batches of a row source, in order, preprocessed, under
        symmetry ``view`` of the square (:func:`~skdiffmic._batching.dihedral`;
        ``raw`` stays the stored rows, so row seeds do not change with it)."""
        batches = iter_batches(
            data, np.arange(len(data)), self.batch_size, self._preprocess(), device
        )
        for batch in batches:
            yield batch if view == 0 else batch._replace(x=dihedral(batch.x, view))

    def _views(self):
        """The views ``predict_proba`` averages over: all 8 symmetries of the
        square with ``tta=True`` (images only), else the image as it is."""
        images = not getattr(self, "tabular_", False)
        return range(N_VIEWS) if getattr(self, "tta", False) and images else (0,)

    def _map_batches(self, data, device, dtype, fn) -> np.ndarray:
        """``fn(x)`` on every batch of a row source, inputs cast to ``dtype``,
        averaged over :meth:`_views`.

        The rows of every batch's output are gathered as one float64 array.
        """
        total = 0.0
        views = self._views()
        for view in views:
            outputs = []
            for _, x, _ in self._batches(data, device, view):
                x = x if dtype is None else x.to(dtype)
                with torch.inference_mode(), autocast(device):
                    out = fn(x)
                outputs.append(out.to(torch.float64).cpu())
            total = total + torch.cat(outputs).numpy()
        return total / len(views)

    @staticmethod
    def _to_device(module, device):
        # Channels-last on every device: on the CPU too, oneDNN's depthwise and
        # small-map convolutions run several times faster in it (EfficientNet
        # at 64 px: a training step 2-3x, the DCG's 9 px crops 4-8x).
        return module.to(device).to(memory_format=torch.channels_last)

    def _preprocess(self):
        if self.tabular_:
            return Normalize(self.feature_mean_, self.feature_scale_, images=False)
        mean, std = normalization_stats(self.backbone, self._channels())
        return Normalize(mean, std)

    def __getstate__(self):
        state = super().__getstate__()
        for name in self._torch_modules:
            module = state.get(name)
            if module is not None and any(
                t.device.type != "cpu"
                for t in list(module.parameters()) + list(module.buffers())
            ):
                state[name] = copy.deepcopy(module).cpu()
        return state
