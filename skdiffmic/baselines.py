"""Baselines to compare DiffMIC against.

:class:`TimmClassifier` is the plain-CNN baseline: the same timm backbone as
DiffMIC's, fine-tuned with cross-entropy on the same inputs, image size and
augmentation. It shares the input contract, the batching, the learning-rate
schedule and the pickling of :class:`~skdiffmic.DiffMICClassifier`, so a
benchmark changes only the model. :class:`TimmFeatures` is the frozen backbone
as a transformer: with a scaler and a logistic regression, the linear probe.
"""

from __future__ import annotations

import math
import os
import time
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn
from tqdm.auto import tqdm

from ._backbones import _create, check_backbone, resolve_pretrained
from ._base import MIN_IMAGE_SIZE, ImageInputMixin
from ._batching import (
    autocast,
    balanced_sample_weight,
    epoch_order,
    epoch_size,
    iter_batches,
)
from ._distributed import (
    average_buffers,
    average_gradients,
    epoch_generator,
    is_main,
    mean_across,
    shard_order,
)
from ._features import TimmFeatures
from ._losses import classification_loss
from ._profiling import timed
from ._targets import label_probabilities
from ._training import warmup_cosine

__all__ = ["TimmClassifier", "TimmFeatures"]


def _create_classifier(backbone, *, n_classes, in_chans, pretrained, seed):
    """The timm network with a fresh ``n_classes`` head, initialised from ``seed``.

    The caller's global torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _create(backbone, in_chans, pretrained, num_classes=n_classes)
        head = model.get_classifier()
        if isinstance(head, nn.Linear) and head.out_features == n_classes:
            # PyTorch's default, as for DiffMIC's heads. Some timm families
            # draw their classifier from U(+-1/sqrt(n_classes)) (EfficientNet's
            # TensorFlow scheme): with 2 classes on 1280 pretrained features
            # the first logits are large, and their gradients wreck the
            # pretrained features before the head has learnt anything.
            head.reset_parameters()
        return model


def _fit_cross_entropy(
    model,
    images,
    y,
    *,
    preprocess,
    augment,
    max_epochs,
    batch_size,
    learning_rate,
    weight_decay,
    device,
    generator,
    verbose,
    class_weight=None,
    balanced_sampling=False,
    multilabel=False,
):
    """Train ``model`` in place with cross-entropy; return the per-epoch history.

    ``class_weight`` (per class, or None) weighs the cross-entropy;
    ``balanced_sampling`` draws each epoch's rows inversely to their class's
    size, as :class:`~skdiffmic.DiffMICClassifier` does. With ``multilabel``,
    ``y`` is a 0/1 indicator, the loss is the binary cross-entropy of each
    label and ``class_weight`` holds the labels' ``pos_weight``
    (:func:`skdiffmic._losses.classification_loss`).
    """
    n = len(images)
    y_all = torch.as_tensor(y, dtype=torch.float32 if multilabel else torch.long)
    weight = None
    if class_weight is not None:
        weight = torch.as_tensor(class_weight, dtype=torch.float32).to(device)
    sample_weight = balanced_sample_weight(y_all) if balanced_sampling else None
    steps_per_epoch = math.ceil(epoch_size(n, batch_size) / batch_size)
    total_steps = max(1, steps_per_epoch * max_epochs)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=learning_rate, weight_decay=weight_decay, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total_steps))
    history: list[dict] = []
    bar = tqdm(
        total=max_epochs,
        disable=not verbose or not is_main(),
        desc="TimmClassifier",
        unit="epoch",
    )
    for epoch in range(max_epochs):
        start = time.perf_counter()
        model.train()
        total, n_batches = 0.0, 0
        order = epoch_order(n, batch_size, generator, sample_weight)
        # In a process group: this rank's share of each batch, and draws of
        # its own (skdiffmic._distributed); in one process, as they are.
        rows, local_batch = shard_order(order, batch_size)
        draws = epoch_generator(generator)
        for pos, x, _ in iter_batches(images, rows, local_batch, preprocess, device):
            if augment is not None:
                with timed("augment"):
                    x = augment(x, draws)
            target = y_all[pos].to(device)
            with autocast(device), timed("cnn forward"):
                logits = model(x)
            loss = classification_loss(
                logits.float(), target, weight, multilabel=multilabel
            )
            optimizer.zero_grad(set_to_none=True)
            with timed("cnn backward"):
                loss.backward()
                average_gradients(model.parameters())
            with timed("optimiser"):
                optimizer.step()
                scheduler.step()
            total += loss.item()
            n_batches += 1
        average_buffers(model)
        record = {
            "epoch": epoch + 1,
            **mean_across({"loss": total / max(1, n_batches)}, device),
            "time": time.perf_counter() - start,
        }
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        bar.update(1)
    bar.close()
    return history


class TimmClassifier(ImageInputMixin, ClassifierMixin, BaseEstimator):
    """A timm CNN fine-tuned with cross-entropy: the baseline for DiffMIC.

    The backbone DiffMIC uses for its encoders, with its own classifier head
    for the classes of ``y``, trained end to end with cross-entropy. Inputs,
    image resizing, augmentation, batching, the learning-rate schedule and the
    seeding are those of :class:`~skdiffmic.DiffMICClassifier`, so the two
    compare like for like: same backbone, same epochs, same augmentation, same
    image size, same inputs.

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        timm model name (DiffMIC's default too).
    pretrained : bool or path, default=True
        ``False`` trains from scratch. ``True`` starts from ImageNet weights:
        offline for the backbones of
        :func:`skdiffmic.weights.available_backbones`, from timm's hub for
        any other (a clear error without the network). A path to a local
        weights file (``.pth``, ``.bin``, ``.safetensors``) for ``backbone``
        initialises the network from it. The classifier head is a fresh one
        for the classes of ``y`` (unless they are as many as the weights'
        own, usually ImageNet's 1000).
    image_size : int or None, default=None
        Side of the square network input in pixels. Images are centre-cropped
        to a square and resized to it (bilinear, antialiased). ``None`` uses
        the shorter side of the training images (their median for files of
        varying sizes), at most 224. Images of another size at predict time
        are cropped and resized the same way.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)``: rows of a 2-D ``X`` are flattened images
        of this shape (C order) and are reshaped back. A 2-D ``X`` needs it:
        this estimator has no tabular mode.
    augment : bool or dict, default=True
        Training augmentation, off at prediction. ``True`` flips left-right
        and up-down (each with probability 1/2) and rotates by up to 30
        degrees; a dict such as ``{"hflip": True, "rotation": 15}`` chooses
        (missing keys are off); ``False`` disables it.
    tta : bool, default=False
        Test-time augmentation: :meth:`predict_proba` and :meth:`predict`
        average the probabilities of the image's 8 symmetries (4 quarter
        turns, each also flipped), at 8 times the prediction cost; the ONNX
        export sees the image as it is.
    max_epochs : int, default=100
        Training epochs.
    batch_size : int, default=32
        Mini-batch size for training and prediction.
    learning_rate : float, default=1e-3
        Adam learning rate, with linear warm-up over the first 5% of steps
        then cosine decay (the schedule of DiffMIC's denoiser). The default
        was chosen on validation data (``benchmarks/bench_ablation.py``): on
        Br35H and upsampled digits, 1e-3 beat 2e-4 (the rate of DiffMIC's
        guidance model) by 7 to 15 points of macro-F1 from scratch and by 15
        fine-tuning ImageNet weights, and tied on ``make_lesions``.
    weight_decay : float, default=0.0
        L2 penalty added by Adam.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy, for imbalanced data, as
        :class:`~skdiffmic.DiffMICClassifier`'s: ``"balanced"`` uses
        ``n_samples / (n_classes * np.bincount(y))``; a dict maps labels to
        weights (missing labels weigh 1). Multi-label, each label's
        ``pos_weight`` (``"balanced"``: ``n_negative / n_positive``), as
        DiffMIC's.
    balanced_sampling : bool, default=False
        Draw each epoch's rows with replacement, in inverse proportion to
        their class's frequency (multi-label: of their rarest label's), as
        :class:`~skdiffmic.DiffMICClassifier` does, so that the two models
        can be given the same imbalance options.
    image_cache : {"memory"}, str, path or None, default=None
        Keep file inputs decoded, cropped and resized for later epochs and
        passes, instead of decoding every file again each time. ``None``
        decodes batch by batch and keeps nothing (memory stays flat however
        many files there are). ``"memory"`` keeps them in RAM for the
        duration of a ``fit`` or ``predict`` call (``n * C * image_size**2 *
        4`` bytes). A directory keeps them in a memory-mapped file there,
        named by the files (paths, sizes, modification times) and the input
        size, which later fits and predictions on the same files reuse (a
        grid search, a cross-validation, another process); delete it when
        done. The cached images are the decoded ones, bit for bit, so the
        results do not change. Arrays are never copied or cached.
    device : str, default="auto"
        Torch device: ``"auto"`` picks CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and augmentation. The same
        value on the same data and device gives identical predictions.
    verbose : int, default=0
        ``1`` shows a progress bar with per-epoch losses; ``0`` is silent.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns; for a
        multi-label ``y``, the column indices ``0 .. n_labels - 1``.
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix: the network then
        has one sigmoid output per label, trained with binary cross-entropy,
        as DiffMIC's guidance model.
    label_names_ : ndarray of shape (n_labels,)
        Multi-label only: a DataFrame ``y``'s column names, else the column
        indices.
    tabular_ : bool
        Always False (there is no tabular mode).
    image_shape_ : tuple
        ``(H, W, C)`` of the training images; H and W are None for files of
        varying sizes.
    image_size_ : int
        Network input side in pixels.
    n_features_in_ : int
        Number of columns of a 2-D training ``X`` (only defined for flattened
        images).
    model_ : torch.nn.Module
        The fitted network.
    n_iter_ : int
        Epochs run.
    history_ : list of dict
        Per-epoch record: ``epoch``, mean cross-entropy ``loss`` and wall
        ``time`` in seconds.

    See Also
    --------
    skdiffmic.DiffMICClassifier : The diffusion classifier this baseline is
        compared with.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic.baselines import TimmClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.array(["benign", "malignant"] * 10)
    >>> clf = TimmClassifier(backbone="test_resnet", pretrained=False, max_epochs=1,
    ...                      batch_size=10, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> set(clf.predict(X)) <= {"benign", "malignant"}
    True
    """

    _torch_modules = ("model_",)
    _supports_tabular = False

    _parameter_constraints: dict = {
        "backbone": [str],
        "pretrained": ["boolean", str, os.PathLike, None],
        "image_size": [Interval(Integral, MIN_IMAGE_SIZE, None, closed="left"), None],
        "image_shape": [tuple, list, None],
        "augment": ["boolean", dict],
        "tta": ["boolean"],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "balanced_sampling": ["boolean"],
        "image_cache": [StrOptions({"memory"}), str, os.PathLike, None],
        "device": [str, list, tuple],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="tf_efficientnet_lite0",
        *,
        pretrained=True,
        image_size=None,
        image_shape=None,
        augment=True,
        tta=False,
        max_epochs=100,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.0,
        class_weight=None,
        balanced_sampling=False,
        image_cache=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.backbone = backbone
        self.pretrained = pretrained
        self.image_size = image_size
        self.image_shape = image_shape
        self.augment = augment
        self.tta = tta
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.balanced_sampling = balanced_sampling
        self.image_cache = image_cache
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fine-tune the network with cross-entropy.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Training images: an array ``(n_samples, H, W)`` or
            ``(n_samples, H, W, C)`` (uint8 0-255, uint16 0-65535 or float in
            [0, 1]; 1 to 4 channels, channels last); a list / Series /
            one-column DataFrame of image file paths (decoded batch by batch;
            sizes may vary); or flattened images ``(n_samples, H*W*C)`` with
            ``image_shape`` set.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type (strings, ints, ...); or a 0/1 indicator
            matrix of findings (an array, a sparse matrix, or a DataFrame
            whose column names become ``label_names_``), checked as
            :class:`~skdiffmic.DiffMICClassifier` checks it; a missing entry
            is unknown and left out of the loss and the weights.

        Returns
        -------
        self : TimmClassifier
            The fitted estimator.
        """
        if self._fit_on_devices(X, y):
            return self
        augment = self._check_augment()
        data = self._inputs(X, fitting=True)
        y, label_names = self._check_targets(y, len(data))
        classes, codes, label_names = self._encode_targets(y, label_names)
        multilabel = label_names is not None
        check_backbone(self.backbone)
        weights = resolve_pretrained(self.backbone, self.pretrained)
        device = self._fit_device()

        self._set_targets(classes, label_names)
        self.tabular_ = False
        self.image_shape_ = data.shape
        self.image_size_ = data.size

        rng = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rng.randint(0, 2**31 - 1, 2))
        model = _create_classifier(
            self.backbone,
            n_classes=len(self.classes_),
            in_chans=data.channels,
            pretrained=weights,
            seed=init_seed,
        )
        model = self._to_device(model, device)
        history = _fit_cross_entropy(
            model,
            data,
            codes,
            preprocess=self._preprocess(),
            augment=augment,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            device=device,
            generator=torch.Generator().manual_seed(train_seed),
            verbose=self.verbose,
            class_weight=self._class_weights(y, codes),
            balanced_sampling=self.balanced_sampling,
            multilabel=multilabel,
        )
        self.model_ = model.eval()
        self.n_iter_ = self.max_epochs
        self.history_ = history
        return self

    def predict_proba(self, X):
        """Class probabilities: the softmax of the network's logits.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``. Multi-label: each
            label's sigmoid probability.
        """
        data, device = self._prepare(X)

        def proba(x):
            with timed("cnn forward"):
                logits = self.model_(x).to(torch.float64)
                return label_probabilities(logits, self._is_multilabel())

        return self._map_batches(data, device, None, proba)

    def predict(self, X):
        """Predicted class: the argmax of the probabilities.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Labels from ``classes_``; multi-label, the int 0/1 indicator of
            the labels of probability at least 0.5.
        """
        return self._decide(self.predict_proba(X))
