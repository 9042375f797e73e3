"""The scikit-learn estimator: parameters, validation, fit / predict / predict_proba."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.metrics import f1_score
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._backbones import check_backbone, resolve_pretrained
from ._base import ImageInputMixin
from ._card import data_summary
from ._diffusion import (
    PREDICTION_TYPES,
    NoiseSchedule,
    sampler_timesteps,
)
from ._guidance import CROP_SALIENCY, LOCAL_ENCODERS
from ._inputs import ArrayFeatures, Subset
from ._networks import NetworkSpec
from ._persist import load_estimator, save_estimator
from ._profiling import timed
from ._sampling import (
    Readout,
    Sampler,
    correction_offset,
    decide,
    fit_temperature,
)
from ._targets import (
    known_label_scores,
    label_probabilities,
    label_sets,
    one_sided_label,
)
from ._training import Checkpoint, TrainConfig, fit_diffmic
from ._uncertainty import FeatureDensity, chain_statistics, label_chain_statistics

__all__ = ["DiffMICClassifier"]


class DiffMICClassifier(ImageInputMixin, ClassifierMixin, BaseEstimator):
    """DiffMIC: dual-guidance diffusion network for medical image classification.

    The label is the thing being diffused (CARD-style, with the guidance prior
    as the mean of the forward process), conditioned on the image. A
    dual-granularity conditional guidance (DCG) model gives a global prior from
    class activation maps and a local prior from the most salient image
    windows; a conditional denoiser learns to correct the fused prior (loss on
    the fused prior's path plus an MMD loss on the global and local paths).
    Prediction runs the reverse chain from the prior to a denoised label
    vector. See :doc:`/user_guide/method`.

    The defaults are :data:`skdiffmic.presets.FINE_TUNE`, the configuration
    that won on our validation splits (``tf_efficientnet_lite0`` from ImageNet
    weights that install with the package); :data:`~skdiffmic.presets.PAPER`
    is the reference configuration and :data:`~skdiffmic.presets.SCRATCH`
    trains from random weights. Their evidence is on :doc:`/benchmarks`, and
    the levers that lost are recorded in :doc:`/research`.

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        timm model name of every CNN: the DCG global and local encoders and the
        denoiser's image encoder (the paper uses ResNet18).
    pretrained : bool or path, default=True
        ``True`` starts the encoders from ImageNet weights: offline for the
        backbones of :func:`skdiffmic.weights.available_backbones`, from timm's
        hub for any other (which needs the network). ``False`` trains from
        scratch; a path names a local weights file for ``backbone``.
    image_size : int or None, default=None
        Side of the square network input. Images are centre-cropped to a square
        and resized to it. ``None``: the training images' shorter side (their
        median for files of varying sizes), at most 224, the paper's size.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)``: rows of a 2-D ``X`` are flattened images
        of this shape. ``None``: a 2-D ``X`` is a feature matrix (the tabular
        mode, see Notes).
    augment : bool or dict, default=True
        Training augmentation: ``True`` flips left-right and up-down and
        rotates by up to 30 degrees; a dict such as ``{"hflip": True,
        "vflip": False, "rotation": 15}`` chooses; ``False`` disables it.
    tta : bool, default=False
        Test-time augmentation: :meth:`predict_proba`, :meth:`predict` and
        :meth:`predict_prior_proba` average the probabilities of the image's
        8 symmetries (4 quarter turns, each also flipped), at 8 times the
        prediction cost. Validation scores, the temperature, the chain
        methods (:meth:`sample_proba`, :meth:`predict_uncertainty`) and the
        ONNX export see the image as it is. Ignored in the tabular mode.
        It helped on HAM10000's lesion-grouped folds and not on Br35H (the
        results page), so it is off by default.
    n_crops : int, default=6
        Number of windows cut for the local prior (paper: 6).
    crop_size : int or None, default=None
        Side of the windows in pixels; ``None`` scales the paper's 32 px at
        224 px to ``image_size`` (at least 4 px). On HAM10000 at 64 px,
        ``crop_size=16`` with ``tta=True`` is the best setting measured (the
        results page).
    local_encoder : {"cut", "full"}, default="cut"
        The CNN of the windows: the backbone cut at its deepest stage that
        keeps at least one cell of a window (``"cut"``), or the whole backbone
        (``"full"``, the paper's; the same network at 32 px windows).
    crop_saliency : {"per_class", "sum", "predicted"}, default="per_class"
        The map the windows are chosen on: each class's own normalised CAM in
        turn, most probable class first (``"per_class"``); their sum
        (``"sum"``, the paper's, nearly flat with two classes); or their mean
        weighted by the global prior (``"predicted"``).
    n_timesteps : int, default=1000
        Diffusion steps ``T`` (paper: 1000).
    beta_schedule : {"linear", "cosine"}, default="linear"
        Noise schedule; linear is the paper's (1e-4 to 0.02).
    prediction_type : {"logit_residual", "sample", "epsilon", "v_prediction"}, \
default="logit_residual"
        What the denoiser outputs: a correction of the prior's log-probabilities
        (``y_0 = softmax(log p + output)``, trained on the log-loss; zero at the
        start, so an untrained denoiser returns the prior); the offset ``y_0 -
        p`` (``"sample"``); the noise (``"epsilon"``, the paper's: use it with
        many stochastic chains, ``n_samples=64, eta=1``); or ``v``.
    sampler : {"ddim", "ddpm"}, default="ddim"
        Reverse process at prediction: ``n_inference_steps`` strided DDIM steps,
        or the full ancestral DDPM chain. May be changed after fitting.
    n_inference_steps : int, default=10
        DDIM steps (as in DiffMIC-v2). Only used when ``sampler="ddim"``.
    eta : float, default=0.0
        DDIM stochasticity: 0 is deterministic, 1 draws fresh noise at every
        step as DDPM does. Only used when ``sampler="ddim"``.
    n_samples : int, default=1
        Reverse chains per image; ``predict_proba`` averages them. Each image
        is encoded once, whatever ``n_samples``.
    center_correction : bool, default=True
        Subtract ``correction_offset_``, the constant part of the denoiser's
        correction measured on the training rows, from the chains' scores at
        prediction, keeping what the correction does row by row. May be
        changed after fitting. False (the paper) returns the chains as they
        are.
    mmd_weight : float, default=0.5
        Weight of the MMD terms of the global and local paths (paper: 0.5);
        0 trains on the fused prior alone (CARD with the DCG prior) and skips
        the two paths.
    hidden_dim : int, default=512
        Width of the denoiser's label head (paper: 6144; 512 was level with it
        on our validation splits at a third of the fit time).
    denoiser_init : {"shared", "guidance", "scratch"}, default="shared"
        The denoiser's image encoder: the DCG global encoder's features,
        detached, with no CNN of its own (``"shared"``: two CNNs per step
        instead of three); a CNN of its own started from the trained DCG
        global encoder (``"guidance"``); or one of its own from its initial
        weights (``"scratch"``, the paper's). Ignored in the tabular mode.
    max_epochs : int, default=100
        Epochs of joint diffusion training.
    guidance_epochs : int, default=15
        Epochs of DCG pre-training with cross-entropy (paper: 15).
    batch_size : int, default=32
        Mini-batch size for training and prediction.
    learning_rate : float, default=1e-3
        Adam learning rate of the denoiser, with linear warm-up over the first
        5% of steps then cosine decay (paper: 1e-3).
    guidance_learning_rate : float, default=1e-3
        Adam (amsgrad) learning rate of the DCG model (paper: 2e-4).
    guidance_schedule : {"cosine", "constant"}, default="cosine"
        The DCG rate over the fit: the denoiser's warm-up and cosine decay over
        both stages (``"cosine"``), or constant (``"constant"``, the paper's).
    ema_decay : float, default=0.9999
        Decay of the moving average of the denoiser's weights used for
        prediction, ramped up as ``min(ema_decay, (1 + k) / (10 + k))`` after
        ``k`` steps; 0 predicts with the raw weights.
    class_weight : dict, "balanced" or None, default=None
        Class weights of both training losses (the MMD terms are not
        weighted): ``"balanced"`` is ``n_samples / (n_classes *
        np.bincount(y))``, a dict maps labels to weights. Multi-label, each
        label's ``pos_weight`` (``"balanced"``: ``n_negative / n_positive``).
    validation_fraction : float or None, default=None
        Fraction of the training rows held out (stratified; multi-label: at
        random) to score every diffusion epoch; the best epoch by validation
        macro-F1 is restored and ``temperature_`` is fitted there. ``None``
        holds out nothing (0.1 with ``early_stopping``).
    early_stopping : bool, default=False
        Stop when the validation macro-F1 has not improved by more than
        ``tol`` for ``n_iter_no_change`` diffusion epochs.
    n_iter_no_change : int, default=10
        Patience of ``early_stopping``. Only used when ``early_stopping=True``.
    tol : float, default=1e-4
        Smallest validation gain that counts as an improvement. Only used when
        ``early_stopping=True``.
    balanced_sampling : bool, default=False
        Draw each epoch's rows with replacement, every class about equally
        often (multi-label: in inverse proportion to a row's rarest label).
    warm_start : bool, default=False
        Continue training the fitted model (same classes, input kind and image
        size) for ``max_epochs`` more diffusion epochs, from the EMA weights.
    checkpoint_dir : str, path or None, default=None
        Directory of a checkpoint written after every epoch; a later ``fit``
        with the same settings and data resumes from it and ends with the same
        weights. Each fit of a grid search has its own file. Ctrl-C never needs
        it: the best completed epoch is kept.
    image_cache : {"memory"}, str, path or None, default=None
        Keep decoded file inputs for later epochs: in RAM (``"memory"``) or in
        a memory-mapped file in a directory, reused by later fits on the same
        files. ``None`` decodes batch by batch. Arrays are never copied.
    compile : bool, default=False
        Compile the networks for training with ``torch.compile``.
    device : str, default="auto"
        Torch device: ``"auto"`` picks CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, training and sampling noise. The same
        value on the same data and device gives identical predictions.
    verbose : int, default=0
        ``1`` shows a progress bar with per-epoch losses.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns (multi-label:
        the column indices ``0 .. n_labels - 1``).
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix.
    label_names_ : ndarray of shape (n_labels,)
        Multi-label only: the labels' names (a DataFrame ``y``'s columns).
    tabular_ : bool
        Whether the model was fitted on feature vectors.
    prediction_type_ : str
        The ``prediction_type`` the denoiser was trained with.
    image_shape_ : tuple or None
        ``(H, W, C)`` of the training images (H and W None for files of varying
        sizes); None in the tabular mode.
    image_size_, crop_size_ : int or None
        Network input and window sides in pixels (None in the tabular mode).
    n_features_in_ : int
        Columns of a 2-D training ``X`` (only defined for 2-D input).
    feature_names_in_ : ndarray of str
        Column names of a training DataFrame of features.
    feature_mean_, feature_scale_ : ndarray of shape (``n_features_in_``,)
        Standardisation of the features (tabular mode only).
    guidance_model_ : torch.nn.Module
        The fitted DCG model (its MLP form in the tabular mode).
    denoiser_ : torch.nn.Module
        The fitted denoiser (its EMA weights).
    schedule_ : NoiseSchedule
        The diffusion schedule.
    n_iter_ : int
        Diffusion epochs run.
    best_epoch_ : int
        The diffusion epoch whose weights the model holds.
    history_ : list of dict
        One record per epoch: ``epoch``, ``stage`` (``"guidance"`` or
        ``"diffusion"``), ``guidance_loss``, ``denoiser_loss`` (the fused
        path's loss), ``mmd_loss``, ``diffusion_loss`` (their weighted sum),
        ``time`` and, when validating, ``val_accuracy`` and ``val_macro_f1``.
    correction_offset_ : ndarray of shape (n_classes,)
        The mean of the chains' scores minus the prior's on the training rows,
        centred over the classes (multi-label: per label); see
        ``center_correction``.
    temperature_ : float
        Temperature of ``predict_proba``, fitted on the validation hold-out
        (1.0 without one).
    training_data_ : dict
        A summary of the training data, for the model card: rows, rows per
        class (multi-label: each label's positive, negative and unknown
        entries), image sizes and a SHA-256 fingerprint of the file paths or
        the array.
    card_ : dict or None
        Only on a loaded model: the model card saved with it (None for files
        saved before cards); see :doc:`/user_guide/persistence`.
    feature_density_ : object
        The typicality test of :meth:`predict_uncertainty`: class means and
        covariance of the encoder's feature statistics on the training rows,
        with the reference distances of held-out rows.

    Notes
    -----
    **Inputs.** Image arrays, image file paths (decoded batch by batch), or
    flattened images with ``image_shape``; every image is centre-cropped to a
    square and resized to ``image_size``. See :doc:`/user_guide/inputs`.

    **Tabular mode.** A 2-D ``X`` without ``image_shape`` is a matrix of
    feature vectors: standardised, encoded by two-layer MLPs instead of the
    CNNs, with a single-granularity guidance model (no MMD terms). ``backbone``,
    ``pretrained``, the window settings and ``augment`` are ignored.

    **Multi-label images.** A 0/1 indicator ``y`` fits independent findings:
    sigmoid priors trained with binary cross-entropy, each label's logit
    corrected by the diffusion; ``predict`` gives the labels of probability at
    least 0.5. See :doc:`/user_guide/multilabel`.

    **Sampling noise.** Each row's noise is seeded from ``random_state`` and
    the row's own values, so predictions depend neither on the batch a row
    comes in nor on the order of the rows.

    See Also
    --------
    skdiffmic.presets : The named configurations.
    skdiffmic.baselines.TimmClassifier : The same backbone trained with plain
        cross-entropy, for comparisons.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic import DiffMICClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.array(["benign", "malignant"] * 10)
    >>> clf = DiffMICClassifier(backbone="test_resnet", pretrained=False,
    ...                         hidden_dim=32, max_epochs=1, guidance_epochs=1,
    ...                         batch_size=10, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> set(clf.predict(X)) <= {"benign", "malignant"}
    True
    """

    _torch_modules = ("guidance_model_", "denoiser_")

    _parameter_constraints: dict = {
        "backbone": [str],
        "pretrained": ["boolean", str, os.PathLike, None],
        "image_size": [Interval(Integral, 8, None, closed="left"), None],
        "image_shape": [tuple, list, None],
        "augment": ["boolean", dict],
        "tta": ["boolean"],
        "n_crops": [Interval(Integral, 1, None, closed="left")],
        "crop_size": [Interval(Integral, 1, None, closed="left"), None],
        "local_encoder": [StrOptions(set(LOCAL_ENCODERS))],
        "crop_saliency": [StrOptions(set(CROP_SALIENCY))],
        "n_timesteps": [Interval(Integral, 2, None, closed="left")],
        "beta_schedule": [StrOptions({"linear", "cosine"})],
        "prediction_type": [StrOptions(set(PREDICTION_TYPES))],
        "sampler": [StrOptions({"ddim", "ddpm"})],
        "n_inference_steps": [Interval(Integral, 1, None, closed="left")],
        "eta": [Interval(Real, 0, None, closed="left")],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "center_correction": ["boolean"],
        "mmd_weight": [Interval(Real, 0, None, closed="left")],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "denoiser_init": [StrOptions({"shared", "guidance", "scratch"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "guidance_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "guidance_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "guidance_schedule": [StrOptions({"constant", "cosine"})],
        "ema_decay": [Interval(Real, 0, 1, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "balanced_sampling": ["boolean"],
        "warm_start": ["boolean"],
        "checkpoint_dir": [str, os.PathLike, None],
        "image_cache": [StrOptions({"memory"}), str, os.PathLike, None],
        "compile": ["boolean"],
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
        n_crops=6,
        crop_size=None,
        local_encoder="cut",
        crop_saliency="per_class",
        n_timesteps=1000,
        beta_schedule="linear",
        prediction_type="logit_residual",
        sampler="ddim",
        n_inference_steps=10,
        eta=0.0,
        n_samples=1,
        center_correction=True,
        mmd_weight=0.5,
        hidden_dim=512,
        denoiser_init="shared",
        max_epochs=100,
        guidance_epochs=15,
        batch_size=32,
        learning_rate=1e-3,
        guidance_learning_rate=1e-3,
        guidance_schedule="cosine",
        ema_decay=0.9999,
        class_weight=None,
        validation_fraction=None,
        early_stopping=False,
        n_iter_no_change=10,
        tol=1e-4,
        balanced_sampling=False,
        warm_start=False,
        checkpoint_dir=None,
        image_cache=None,
        compile=False,
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
        self.n_crops = n_crops
        self.crop_size = crop_size
        self.local_encoder = local_encoder
        self.crop_saliency = crop_saliency
        self.n_timesteps = n_timesteps
        self.beta_schedule = beta_schedule
        self.prediction_type = prediction_type
        self.sampler = sampler
        self.n_inference_steps = n_inference_steps
        self.eta = eta
        self.n_samples = n_samples
        self.center_correction = center_correction
        self.mmd_weight = mmd_weight
        self.hidden_dim = hidden_dim
        self.denoiser_init = denoiser_init
        self.max_epochs = max_epochs
        self.guidance_epochs = guidance_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.guidance_learning_rate = guidance_learning_rate
        self.guidance_schedule = guidance_schedule
        self.ema_decay = ema_decay
        self.class_weight = class_weight
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.balanced_sampling = balanced_sampling
        self.warm_start = warm_start
        self.checkpoint_dir = checkpoint_dir
        self.image_cache = image_cache
        self.compile = compile
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ---------------------------------------------------------------- inputs --
    def _resolve_sizes(self, size):
        crop_size = self.crop_size or max(4, round(size * 32 / 224))
        if crop_size > size:
            raise ValueError(
                f"crop_size={crop_size} is larger than the network input "
                f"({size} px); lower crop_size or raise image_size."
            )
        return int(crop_size)

    # ------------------------------------------------------------------ fit --
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the guidance model and the diffusion denoiser.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Training images: an array ``(n_samples, H, W)`` or
            ``(n_samples, H, W, C)`` (uint8 0-255, uint16 0-65535 or float in
            [0, 1]; 1 to 4 channels, channels last); a list / Series /
            one-column DataFrame of image file paths (decoded batch by batch;
            sizes may vary); flattened images ``(n_samples, H*W*C)`` with
            ``image_shape`` set; or, without ``image_shape``, a feature
            matrix ``(n_samples, n_features)`` for the tabular mode.
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type (strings, ints, ...); or, for
            multi-label images, a 0/1 indicator matrix: an array, a sparse
            matrix, or a DataFrame whose column names become
            ``label_names_``. A missing entry (NaN, None, pandas' NA) is
            unknown and left out of the losses, weights, calibration and
            validation scores.

        Returns
        -------
        self : DiffMICClassifier
            The fitted estimator.
        """
        if self._fit_on_devices(X, y):
            return self
        augment = self._check_augment()
        self._check_sampler()
        data, y, codes, weights, previous = self._fit_inputs(X, y)
        self.training_data_ = data_summary(data, codes, self)
        self.__dict__.pop("card_", None)  # a loaded model's card is of its old fit
        device = self._fit_device()
        rng = check_random_state(self.random_state)
        init_seed, train_seed, sample_seed = (
            int(s) for s in rng.randint(0, 2**31 - 1, 3)
        )
        guidance_model, denoiser = NetworkSpec.of(self).build(init_seed, weights)
        if previous is not None:
            guidance_model, denoiser = previous["modules"]
            train_seed += previous["n_iter"]
            sample_seed = previous["sampling_seed"]
        guidance_model = self._to_device(guidance_model, device)
        denoiser = self._to_device(denoiser, device)
        self.schedule_ = NoiseSchedule.create(self.beta_schedule, self.n_timesteps)
        self.sampling_seed_ = sample_seed
        self.temperature_ = 1.0
        train_rows, validate = self._validation(data, codes, train_seed, device)
        ema, history, result = fit_diffmic(
            guidance_model,
            denoiser,
            Subset(data, train_rows),
            codes[train_rows],
            n_classes=len(self.classes_),
            schedule=self.schedule_,
            preprocess=self._preprocess(),
            config=self._train_config(y, codes, augment, validate, previous),
            device=device,
            generator=torch.Generator().manual_seed(train_seed),
        )
        self.guidance_model_ = guidance_model.eval()
        self.denoiser_ = ema.module.eval()
        with timed("calibration"):
            self._fit_calibration(data, codes, train_rows, validate, device)
        self._record_fit(history, result, previous)
        return self

    def _fit_inputs(self, X, y):
        """Check the inputs and set the fitted input attributes, before any
        network is built: ``(rows, y, codes, starting weights, warm state)``."""
        data = self._inputs(X, fitting=True)
        y, label_names = self._check_targets(y, len(data))
        classes, codes, label_names = self._encode_targets(y, label_names)
        tabular = isinstance(data, ArrayFeatures)
        weights = False
        if not tabular:
            check_backbone(self.backbone)
            weights = resolve_pretrained(self.backbone, self.pretrained)
            crop_size = self._resolve_sizes(data.size)
        previous = None
        if self.warm_start and hasattr(self, "denoiser_"):
            previous = self._warm_start_state(classes, label_names, data)
        self._set_targets(classes, label_names)
        self.tabular_ = tabular
        self.prediction_type_ = self.prediction_type
        if tabular:
            self.image_shape_ = self.image_size_ = self.crop_size_ = None
            if previous is None:  # a warm start keeps the fitted standardisation
                self.feature_mean_ = data.X.mean(axis=0)
                scale = data.X.std(axis=0)
                self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0)
        else:
            self.image_shape_ = data.shape
            self.image_size_ = data.size
            self.crop_size_ = crop_size
        return data, y, codes, weights, previous

    def _train_config(self, y, codes, augment, validate, previous) -> TrainConfig:
        """The fit loop's settings from the parameters, and the two cases that
        change them."""
        warm, tabular = previous is not None, self.tabular_
        return TrainConfig(
            max_epochs=self.max_epochs,
            # A warm start continues the fitted DCG model and denoiser as they
            # are: no pre-training, no copy of the encoder.
            guidance_epochs=0 if warm else self.guidance_epochs,
            denoiser_init="scratch" if warm or tabular else self.denoiser_init,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            guidance_learning_rate=self.guidance_learning_rate,
            guidance_schedule=self.guidance_schedule,
            # One granularity in the tabular mode: the fused path alone.
            mmd_weight=0.0 if tabular else self.mmd_weight,
            prediction_type=self.prediction_type,
            ema_decay=self.ema_decay,
            class_weight=self._class_weights(y, codes),
            augment=None if tabular else augment,
            validate=validate,
            early_stopping=self.early_stopping,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            balanced_sampling=self.balanced_sampling,
            checkpoint=self._checkpoint(codes, previous),
            compile=self.compile,
            multilabel=self._is_multilabel(),
            verbose=self.verbose,
        )

    def _record_fit(self, history, result, previous):
        """``history_``, ``n_iter_`` and ``best_epoch_``, counted on from a
        warm start's."""
        self.n_iter_ = result["n_epochs"]
        self.best_epoch_ = result["best_epoch"]
        self.history_ = history
        if previous is not None:
            offset = len(previous["history"])
            for record in history:
                record["epoch"] += offset
            self.history_ = previous["history"] + history
            self.n_iter_ += previous["n_iter"]
            self.best_epoch_ += previous["n_iter"]

    def _fit_calibration(self, data, codes, train_rows, validate, device):
        """Fit ``correction_offset_``, ``temperature_`` and
        ``feature_density_`` after training.

        One pass over the training rows gives the correction offset (the
        mean of the chains' scores minus the prior's there) and the features
        the density is fitted on; its reference distances and the
        temperature come from the validation hold-out when there is one.
        Without one the temperature stays 1 and the reference distances are
        the training rows', each measured by a density fitted without it
        (k-fold cross-fitting).
        """
        networks = self._inference_networks()
        multilabel = self._is_multilabel()
        train = self._denoise_rows(
            Subset(data, train_rows), device, networks, with_features=True
        )
        self.correction_offset_ = correction_offset(
            train.y0, train.prior, self.prediction_type_, multilabel
        )
        train_features = train.statistics
        groups, n_groups = self._density_groups(codes[train_rows])
        with timed("density fit"):
            density = FeatureDensity.fit(train_features, groups, n_groups)
        if validate is not None:
            rows, truth = validate.held_out
            held = self._denoise_rows(rows, device, networks, with_features=True)
            self.temperature_ = fit_temperature(
                self._readout().scores(held.y0), truth, multilabel
            )
            distances = density.distance(held.statistics)
        else:
            with timed("density fit"):
                distances = FeatureDensity.cross_fitted_distances(
                    train_features,
                    groups,
                    n_groups,
                    seed=self.sampling_seed_ % (2**32),
                )
        density.reference = np.sort(distances)
        self.feature_density_ = density

    def _density_groups(self, codes):
        """``(group of each row, number of groups)`` of the typicality density:
        the classes, or (multi-label, where a row has any set of labels) one
        group for all the rows."""
        if self._is_multilabel():
            return np.zeros(len(codes), dtype=np.int64), 1
        return codes, len(self.classes_)

    def _warm_start_state(self, classes, label_names, data):
        """The fitted state a ``warm_start`` fit continues from, checked."""
        tabular = isinstance(data, ArrayFeatures)
        multilabel = label_names is not None
        same = (
            tabular == self.tabular_
            and multilabel == self._is_multilabel()
            and len(classes) == len(self.classes_)
            and np.array_equal(classes, self.classes_)
            and (
                not multilabel
                or np.array_equal(
                    np.asarray(label_names, dtype=str),
                    np.asarray(self.label_names_, dtype=str),
                )
            )
        )
        if same and not tabular:
            size = self.image_size or data.size
            same = data.channels == self._channels() and size == self.image_size_
        same = same and self.prediction_type == self.prediction_type_
        if not same:
            raise ValueError(
                "warm_start=True needs the same classes (or labels), input kind, "
                "channels, "
                "image size and prediction_type as the fitted model; fit with "
                "warm_start=False to start afresh."
            )
        if not tabular:
            data.size = self.image_size_
        denoiser = self.denoiser_  # the EMA weights: training continues from them
        for parameter in denoiser.parameters():
            parameter.requires_grad_(True)
        return {
            "modules": (self.guidance_model_, denoiser),
            "history": list(self.history_),
            "n_iter": self.n_iter_,
            "sampling_seed": self.sampling_seed_,
        }

    def _checkpoint(self, codes, previous):
        """A Checkpoint in ``checkpoint_dir`` for these settings and data."""
        if self.checkpoint_dir is None:
            return None
        ignored = {"verbose", "checkpoint_dir", "device", "warm_start"}
        params = {k: repr(v) for k, v in self.get_params().items() if k not in ignored}
        digest = hashlib.sha256(
            json.dumps(
                {
                    "params": params,
                    "classes": [str(c) for c in self.classes_],
                    "warm_from": None if previous is None else previous["n_iter"],
                },
                sort_keys=True,
            ).encode()
        )
        if self._is_multilabel():
            # Fits of other label names (same indicator) keep their own files.
            digest.update(json.dumps([str(n) for n in self.label_names_]).encode())
        digest.update(
            np.ascontiguousarray(
                codes, dtype=np.float64 if codes.ndim == 2 else np.int64
            ).tobytes()
        )
        return Checkpoint(self.checkpoint_dir, digest.hexdigest())

    def _validation_split(self, codes, seed):
        """``(train rows, validation rows or None)`` of the training data."""
        fraction = self.validation_fraction
        if fraction is None and self.early_stopping:
            fraction = 0.1
        rows = np.arange(len(codes))
        if fraction is None:
            return rows, None
        # Label sets are too many to stratify on: multi-label rows are split
        # at random.
        splitter = ShuffleSplit if codes.ndim == 2 else StratifiedShuffleSplit
        split = splitter(1, test_size=fraction, random_state=seed)
        try:
            train, held_out = next(split.split(rows, codes))
        except ValueError as exc:
            raise ValueError(
                f"Cannot hold out a stratified validation_fraction={fraction}: {exc}"
            ) from None
        lacking = one_sided_label(codes[train]) if codes.ndim == 2 else None
        if lacking is not None:
            j, which = lacking
            raise ValueError(
                f"The validation hold-out (validation_fraction={fraction}, "
                f"drawn at random) leaves label {self.label_names_[j]!r} "
                f"with no {which} training row; lower validation_fraction "
                "or add rows with and without it."
            )
        return np.sort(train), np.sort(held_out)

    def _validation(self, data, codes, seed, device):
        """Training rows and the per-epoch validation callback (or None)."""
        train, held_out = self._validation_split(codes, seed)
        if held_out is None:
            return train, None
        rows, truth = Subset(data, held_out), codes[held_out]

        def validate(guidance_model, denoiser):
            y0 = self._denoise_rows(rows, device, (guidance_model, denoiser, None)).y0
            # Uncentred: the offset is measured once training ends.
            proba = self._readout(centre=False).proba(y0)
            pred = decide(proba, np.arange(proba.shape[1]), truth.ndim == 2)
            if truth.ndim == 2:
                # Every label at 0.5, subset accuracy and the mean of the
                # labels' F1, on the known entries.
                scores = known_label_scores(truth, pred)
                return {
                    "val_accuracy": scores["accuracy"],
                    "val_macro_f1": scores["macro_f1"],
                }
            return {
                "val_accuracy": float(np.mean(pred == truth)),
                "val_macro_f1": float(
                    f1_score(truth, pred, average="macro", zero_division=0)
                ),
            }

        validate.held_out = (rows, truth)
        return train, validate

    # -------------------------------------------------------------- predict --
    def _inference_networks(self):
        """The guidance model and denoiser to predict with, and the input dtype.

        The tabular mode predicts with float64 copies: its MLPs are cheap, and
        float32 matrix products can round differently with the number of rows
        in a batch, which would make predictions depend on the batch.
        """
        if self.tabular_:
            return (
                copy.deepcopy(self.guidance_model_).double(),
                copy.deepcopy(self.denoiser_).double(),
                torch.float64,
            )
        return self.guidance_model_, self.denoiser_, None

    def _check_sampler(self) -> None:
        """Refuse a DDIM chain longer than the schedule, before any work (the
        reverse chain's own check, :func:`skdiffmic._diffusion.inference_timesteps`)."""
        sampler_timesteps(self.n_timesteps, self.sampler, self.n_inference_steps)

    def _sampler(self) -> Sampler:
        """The reverse process of the current parameters (``set_params`` works
        after fitting for the sampling ones)."""
        self._check_sampler()
        return Sampler(
            self.schedule_,
            sampler=self.sampler,
            n_steps=self.n_inference_steps,
            eta=self.eta,
            prediction_type=self.prediction_type_,
            multilabel=self._is_multilabel(),
        )

    def _denoise(self, X) -> np.ndarray:
        """Denoised label vectors ``y_0`` of shape (n_images, n_samples, K)."""
        data, device = self._prepare(X)
        return self._denoise_rows(data, device, self._inference_networks()).y0

    def _denoise_rows(
        self, data, device, networks, n_samples=None, with_features=False, view=0
    ):
        """The :class:`~skdiffmic._sampling.Denoised` chains of a row source:
        ``y0`` of shape (n, n_samples, K), the fused prior and, with
        ``with_features``, the feature statistics.

        ``networks`` is ``(guidance, denoiser, dtype)``; see
        :meth:`Sampler.denoise`. ``view`` is the symmetry of the images
        (:meth:`_batches`); the chains' noise does not change with it.
        """
        return self._sampler().denoise(
            self._batches(data, device, view),
            networks,
            seed=self.sampling_seed_,
            n_samples=n_samples or self.n_samples,
            n_classes=len(self.classes_),
            device=device,
            with_features=with_features,
        )

    def _readout(self, centre=True) -> Readout:
        """How the chains become probabilities: their scores less
        ``correction_offset_`` (with ``center_correction``, unless ``centre``
        is False), at ``temperature_``."""
        centred = centre and self.center_correction
        return Readout(
            self.prediction_type_,
            self._is_multilabel(),
            self.correction_offset_ if centred else 0.0,
            self.temperature_,
        )

    def predict_proba(self, X):
        """Class probabilities: ``softmax(y_0 / temperature_)``, chains averaged
        (multi-label: each label's sigmoid).

        ``y_0`` is the denoised label vector of each of the ``n_samples``
        reverse chains (with ``prediction_type="logit_residual"``, a
        probability vector, and the softmax is taken of ``log y_0``: at
        ``temperature_ = 1`` the chains' ``y_0`` themselves are averaged); the
        temperature is fitted on the validation hold-out
        when ``validation_fraction`` is set (else 1). With ``tta=True`` the
        probabilities are averaged over the image's 8 quarter turns and flips.
        ``predict`` is the argmax of these probabilities.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images (or feature vectors in the tabular mode), as for
            :meth:`fit`.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            Rows sum to 1; columns follow ``classes_``. Multi-label: each
            label's probability, ``sigmoid(logit y_0 / temperature_)``
            averaged over the chains (rows need not sum to 1).
        """
        data, device = self._prepare(X)
        networks, readout = self._inference_networks(), self._readout()
        views = self._views()
        total = 0.0
        for view in views:
            y0 = self._denoise_rows(data, device, networks, view=view).y0
            total = total + readout.proba(y0)
        return total / len(views)

    def predict(self, X):
        """Predicted class: the argmax of :meth:`predict_proba`.

        With one chain (``n_samples=1``) this is the argmax of the denoised
        label vector.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images (or feature vectors in the tabular mode), as for
            :meth:`fit`.

        Returns
        -------
        y_pred : ndarray of shape (n_images,) or (n_images, n_labels)
            Labels from ``classes_``; multi-label, the int 0/1 indicator of
            the labels whose probability is at least 0.5.
        """
        return self._decide(self.predict_proba(X))

    def sample_proba(self, X, n_samples=None):
        """Probabilities of each reverse chain: the predictive distribution.

        Parameters
        ----------
        X : array-like, list of paths, Series or DataFrame
            Images, as for :meth:`fit`.
        n_samples : int or None, default=None
            Chains per image; None uses the ``n_samples`` parameter.

        Returns
        -------
        samples : ndarray of shape (n_images, n_samples, n_classes)
            ``softmax(y_0 / temperature_)`` (``log y_0`` for
            ``"logit_residual"``) of every chain (their mean over
            the chains is ``predict_proba``); multi-label, each label's
            probability in every chain. Reproducible: each image's noise
            comes from ``random_state`` and the image itself.
        """
        if n_samples is not None and (
            not isinstance(n_samples, Integral) or n_samples < 1
        ):
            raise ValueError(f"n_samples must be a positive int; got {n_samples!r}.")
        data, device = self._prepare(X)
        y0 = self._denoise_rows(data, device, self._inference_networks(), n_samples).y0
        return self._readout().chain_proba(y0)

    def predict_uncertainty(self, X, *, n_samples=32, alpha=0.05):
        """Per-image uncertainty, and whether each prediction can be trusted.

        Runs ``n_samples`` reverse chains per image (see :meth:`sample_proba`)
        and asks two questions of every image:

        1. Do the chains agree? CARD's instance-level test: a paired t-test,
           across the chains, between the denoised label components ``y_0``
           of the two most probable classes (``p_value``; on ``y_0`` rather
           than the probabilities, so that a small fitted temperature, which
           saturates every chain's softmax, does not make every test
           significant).
        2. Does the image look like the training images? The Mahalanobis
           distance of its feature statistics (the per-channel mean and
           standard deviation of the denoiser encoder's feature maps at up to
           five stages; of the DCG global encoder's with
           ``denoiser_init="shared"``) to the nearest class mean of the
           training images'
           (``feature_distance``), as a conformal p-value against the held-out
           reference images (``ood_p_value``).
           The chains alone cannot tell: on images unlike any training image
           (pure noise, another modality) a network can be consistently and
           confidently wrong, and the t-test is then significant.

        A prediction is ``confident`` when ``p_value < alpha`` and
        ``ood_p_value > alpha``.

        Parameters
        ----------
        X : array-like, list of paths, Series or DataFrame
            Images, as for :meth:`fit`.
        n_samples : int, default=32
            Reverse chains per image (at least 2). Chains differ by their
            starting noise, and with ``eta > 0`` or the DDPM sampler by the
            noise of every step.
        alpha : float, default=0.05
            Significance level of both tests, in (0, 1).

        Returns
        -------
        uncertainty : pandas.DataFrame
            One row per image (with the index of a pandas ``X``), columns:

            - ``prediction``: the class of the highest mean probability (the
              mean over these chains, so with other ``n_samples`` than the
              estimator's it may differ from :meth:`predict` near a tie);
            - ``probability``: its mean probability;
            - ``entropy``: entropy of the mean probabilities, in nats (0 for
              a certain prediction, ``log(n_classes)`` at most);
            - ``interval_width``: width of the 95% interval (2.5 to 97.5
              percentile) of the top class's probability across chains;
            - ``p_value``: two-sided paired t-test across chains, the top
              class's ``y_0`` component against the runner-up's;
            - ``feature_distance``: Mahalanobis distance of the image's
              feature statistics to the nearest training class mean;
            - ``ood_p_value``: fraction of reference images (the validation
              hold-out; when ``validation_fraction`` is None, the training
              images, each measured by a density fitted without it) at
              least as far, plus one, over their number plus one;
            - ``confident``: ``p_value < alpha`` and ``ood_p_value > alpha``.

            A multi-label model tests each label on its own: does each
            label's logit stay on one side of 0 (probability 1/2) across the
            chains (a one-sample t-test)? Its columns are ``prediction``
            (the names of the labels of mean probability at least 0.5,
            joined by ``"|"``, empty for none), ``n_labels`` (their number),
            ``least_certain`` (the label of the largest p-value),
            ``entropy`` (the sum of the labels' binary entropies),
            ``interval_width`` (the widest label's), ``p_value`` (the
            largest over the labels: every label must be settled),
            ``feature_distance`` (to the mean of the training images),
            ``ood_p_value`` and ``confident``.
        """
        import pandas as pd

        if not isinstance(n_samples, Integral) or n_samples < 2:
            raise ValueError(
                f"n_samples must be an int >= 2 (a t-test across chains); got "
                f"{n_samples!r}."
            )
        if not isinstance(alpha, Real) or not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha!r}.")
        check_is_fitted(self)
        n_reference = len(self.feature_density_.reference)
        if (1 + n_reference) * alpha < 1:
            warnings.warn(
                f"Only {n_reference} reference images: the typicality test cannot "
                f"reach alpha={alpha} (its smallest p-value is "
                f"1/{n_reference + 1}), so it flags no image. Fit with a larger "
                "validation_fraction (or more data).",
                UserWarning,
                stacklevel=2,
            )
        data, device = self._prepare(X)
        y0, _, features = self._denoise_rows(
            data, device, self._inference_networks(), n_samples, with_features=True
        )
        distance = self.feature_density_.distance(features)
        ood_p_value = self.feature_density_.p_value(distance)
        index = X.index if hasattr(X, "index") and hasattr(X, "iloc") else None
        if self._is_multilabel():
            return self._label_uncertainty(y0, distance, ood_p_value, alpha, index)
        chains = chain_statistics(self._readout().chain_proba(y0), y0)
        return pd.DataFrame(
            {
                "prediction": self.classes_[chains["top"]],
                "probability": chains["probability"],
                "entropy": chains["entropy"],
                "interval_width": chains["interval_width"],
                "p_value": chains["p_value"],
                "feature_distance": distance,
                "ood_p_value": ood_p_value,
                "confident": (chains["p_value"] < alpha) & (ood_p_value > alpha),
            },
            index=index,
        )

    def _label_uncertainty(self, y0, distance, ood_p_value, alpha, index):
        """:meth:`predict_uncertainty`'s table for a multi-label model."""
        import pandas as pd

        readout = self._readout()
        chains = label_chain_statistics(readout.chain_proba(y0), readout.scores(y0))
        names = np.asarray([str(n) for n in self.label_names_], dtype=object)
        present = chains["mean"] >= 0.5
        weakest = chains["p_value"].argmax(axis=1)
        p_value = chains["p_value"].max(axis=1)
        return pd.DataFrame(
            {
                "prediction": label_sets(names, present),
                "n_labels": present.sum(axis=1),
                "least_certain": names[weakest],
                "entropy": chains["entropy"],
                "interval_width": chains["interval_width"].max(axis=1),
                "p_value": p_value,
                "feature_distance": distance,
                "ood_p_value": ood_p_value,
                "confident": (p_value < alpha) & (ood_p_value > alpha),
            },
            index=index,
        )

    def predict_prior_proba(self, X, granularity="fused"):
        """Probabilities of the DCG guidance model alone (no diffusion).

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images (or feature vectors in the tabular mode), as for
            :meth:`fit`.
        granularity : {"fused", "global", "local"}, default="fused"
            Which prior: the fused one the diffusion starts from, or one branch.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            Softmax of the prior logits (multi-label: each label's sigmoid).
        """
        which = {"fused": 0, "global": 1, "local": 2}
        if granularity not in which:
            raise ValueError(
                f"granularity must be one of {sorted(which)}; got {granularity!r}."
            )
        data, device = self._prepare(X)
        guidance_model, _, dtype = self._inference_networks()
        return self._map_batches(
            data,
            device,
            dtype,
            lambda x: label_probabilities(
                guidance_model(x)[which[granularity]].to(torch.float64),
                self._is_multilabel(),
            ),
        )

    def explain(self, X):
        """Where the guidance model looked: maps, windows, attention, priors.

        For every image, what the DCG model computes on the way to its priors
        (see :doc:`/user_guide/explanations` for how to read it, and
        :func:`skdiffmic.plotting.plot_explanation` to draw it). Coordinates
        are pixels of the network input: the image centre-cropped to a square
        and resized to ``image_size_``, returned as ``images``. Each image is
        explained on its own, so the result does not depend on the batch or
        on the order of the rows.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for :meth:`fit`.

        Returns
        -------
        explanation : sklearn.utils.Bunch
            With ``n`` the number of images, ``S = image_size_``, ``K`` the
            number of classes and ``(h, w)`` the CAM's feature-map size:

            - ``images``: ndarray (n, S, S, C), the network input in [0, 1]
              (before normalisation);
            - ``saliency``: ndarray (n, S, S), the map the first window was
              chosen on (see ``crop_saliency``: with ``"sum"``, the per-class
              min-max normalised CAMs summed), upsampled bilinearly to the
              input and scaled to [0, 1] per image;
            - ``cams``: ndarray (n, K, h, w), the class activation maps (their
              spatial mean is the global prior's logit of each class);
            - ``windows``: ndarray (n, n_crops, 4) of int, the ROI windows as
              ``(row, col, height, width)`` in input pixels, in the order the
              greedy selection chose them;
            - ``attention``: ndarray (n, n_crops), the gated-attention weight
              of each window in the local prior; rows sum to 1;
            - ``prior_global``, ``prior_local``, ``prior_fused``: ndarrays
              (n, K), the priors' probabilities (``prior_fused`` is
              :meth:`predict_prior_proba`);
            - ``proba``: ndarray (n, K), :meth:`predict_proba`.

        Raises
        ------
        ValueError
            In the tabular mode, which has no maps or windows.

        Examples
        --------
        >>> import numpy as np
        >>> from skdiffmic import DiffMICClassifier
        >>> rng = np.random.default_rng(0)
        >>> X = rng.integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
        >>> y = np.array([0, 1] * 10)
        >>> clf = DiffMICClassifier(backbone="test_resnet", pretrained=False,
        ...                         hidden_dim=32,
        ...                         max_epochs=1, guidance_epochs=1,
        ...                         batch_size=10, random_state=0).fit(X, y)
        >>> explanation = clf.explain(X[:3])
        >>> explanation.saliency.shape, explanation.windows.shape
        ((3, 16, 16), (3, 6, 4))
        >>> np.allclose(explanation.attention.sum(axis=1), 1)
        True
        """
        from ._explain import explain

        return explain(self, X)

    # ---------------------------------------------------------------- saving --
    def save(self, path):
        """Save the fitted model to a file that cannot run code when loaded.

        The file is a ``.safetensors`` file: the networks' tensors, plus the
        parameters, classes and fitted attributes (history included) as JSON
        in its metadata. Nothing in it is pickled. Load it with
        :meth:`DiffMICClassifier.load`. A ``random_state`` that is a
        ``RandomState`` instance is saved as None (the fitted sampling seed,
        which predictions depend on, is saved).

        Parameters
        ----------
        path : str or os.PathLike
            Destination file, conventionally ending in ``.safetensors``.

        Raises
        ------
        TypeError
            If the labels are not numbers or strings, or a parameter value
            cannot be stored (such as a ``class_weight`` dict whose labels are
            neither numbers nor strings).
        """
        check_is_fitted(self)
        save_estimator(self, path)

    @classmethod
    def load(cls, path):
        """Load a model written by :meth:`save`; it predicts as the saved one did.

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`save`.

        Returns
        -------
        DiffMICClassifier
            The fitted estimator (modules on the CPU; ``device`` is used at
            prediction as usual).

        Raises
        ------
        FileNotFoundError
            If ``path`` does not exist.
        ValueError
            If the file is truncated or corrupt, is not a saved skdiffmic
            model, has an unknown format version, or holds tensors that are
            missing, extra or of the wrong shape for the saved parameters.
        """
        return load_estimator(cls, path)

    def _n_head_evaluations(self):
        """Number of label-head evaluations per image of the current sampler."""
        return self._sampler().n_head_evaluations()
