"""ONNX export of a fitted :class:`~skdiffmic.DiffMICClassifier`.

:func:`to_onnx` writes the whole prediction of an image model as one ONNX
graph: the normalisation, the DCG model (global CAMs, window selection,
crops, local encoder, gated attention, fused prior), the denoiser's image
encoding (once per image), and the reverse chains unrolled for the fitted
sampler (``n_inference_steps`` DDIM steps, ``eta``, ``n_samples`` chains),
ending in the probabilities of ``predict_proba``.

What stays outside the graph is what the estimator does before its networks:
decoding (image files, DICOM), the centre square crop, the antialiased
resize to ``image_size_`` and the scaling to ``[0, 1]``; and the chains'
standard normal noise, which is an input of the graph.
:class:`OnnxClassifier` does both exactly as the estimator does, so its
probabilities equal ``predict_proba``'s on the CPU up to float rounding (on
a GPU the estimator predicts in bfloat16 where the card supports it, and
the graph runs in float32).

The graph's inputs:

``images``
    float32 ``(batch, channels, image_size, image_size)`` in ``[0, 1]``:
    the estimator's decoded, cropped and resized rows.
``noise``
    float32 ``(batch, n_samples, n_draws, n_classes)``: chain ``j`` of a
    row starts at ``prior + noise[:, j, 0]``; ``noise[:, j, i + 1]`` is the
    fresh noise of step ``i`` (DDIM with ``eta > 0``, and DDPM, whose chain
    has ``n_timesteps`` steps). ``n_draws`` is in the metadata.
    The estimator draws it with ``torch.randn`` from a seed made of its
    sampling seed and the row's bytes, so that a prediction does not depend
    on the batch. From another language, feed zeros: each chain then runs
    its mean path from the prior (measure on your data how far that moves
    the probabilities; the user guide's deployment page shows it for the
    main job's model).

Its outputs: ``proba`` ``(batch, n_classes)``, and the DCG model's
``prior`` (fused), ``prior_global`` and ``prior_local`` probabilities (for a
multi-label model, each label's probability, ``n_classes`` being the number
of labels).

Its metadata properties (``metadata_props``, JSON values):
``format`` (``"skdiffmic.onnx"``), ``skdiffmic_version``, ``classes``,
``multilabel`` and ``label_names`` (empty for single-label models),
``image_size``, ``image_shape``, ``backbone``, ``preprocessing``,
``n_samples``, ``n_draws``, ``sampling_seed``, ``sampler``, the
estimator's parameters (``params``) and its model card (``card``, as
``save`` writes it; ``skdiffmic info model.onnx --card`` prints it).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ._base import ImageInputMixin
from ._sampling import decide

__all__ = ["OnnxClassifier", "to_onnx"]

FORMAT = "skdiffmic.onnx"
DEFAULT_OPSET = 18
_PREPROCESSING = (
    "Decode (PIL; DICOM with pydicom), convert to the fitted number of "
    "channels, centre square crop, antialiased bilinear resize to image_size, "
    "scale to [0, 1], channels first; the graph normalises with the "
    "backbone's mean and std."
)


def _prediction_module(clf):
    """A torch module running ``clf``'s prediction from decoded rows and noise:
    the estimator's own steps (:func:`~skdiffmic._sampling.encode`,
    :meth:`Sampler.chains <skdiffmic._sampling.Sampler.chains>` and its
    :class:`~skdiffmic._sampling.Readout`), traced."""
    from torch import nn

    from ._sampling import Readout, encode
    from ._targets import label_probabilities

    preprocess = clf._preprocess()
    sampler = clf._sampler()
    multilabel = clf._is_multilabel()
    readout = clf._readout()
    # The offset as a buffer of the graph (the readout subtracts it).
    offset = torch.as_tensor(np.asarray(readout.offset, dtype=np.float32))

    class Prediction(nn.Module):
        def __init__(self):
            super().__init__()
            self.guidance = clf.guidance_model_
            self.denoiser = clf.denoiser_
            self.register_buffer("mean", preprocess.mean.clone())
            self.register_buffer("std", preprocess.std.clone())
            self.register_buffer("offset", offset)
            self.n_samples = int(clf.n_samples)

        def forward(self, images, noise):
            x = ((images - self.mean) / self.std).contiguous(
                memory_format=torch.channels_last
            )
            guide, _, prior, features = encode(
                self.guidance, self.denoiser, x, multilabel
            )
            y0 = sampler.chains(
                self.denoiser, features, prior, noise.flatten(0, 1), self.n_samples
            )
            # The estimator's readout, with the offset the graph holds.
            graph_readout = Readout(
                readout.prediction_type, multilabel, self.offset, readout.temperature
            )
            return (
                graph_readout.proba(y0),
                prior,
                label_probabilities(guide.global_.float(), multilabel),
                label_probabilities(guide.local.float(), multilabel),
            )

    return Prediction().eval()


def _metadata(clf) -> dict:
    from . import __version__

    sampler = clf._sampler()
    classes = [c.item() if hasattr(c, "item") else c for c in clf.classes_]
    params = {}
    for key, value in clf.get_params().items():
        try:
            json.dumps(value)
        except TypeError:
            value = repr(value)
        params[key] = value
    return {
        "format": FORMAT,
        "skdiffmic_version": __version__,
        "classes": classes,
        "multilabel": clf._is_multilabel(),
        "label_names": [
            n.item() if hasattr(n, "item") else str(n)
            for n in getattr(clf, "label_names_", [])
        ],
        "image_size": int(clf.image_size_),
        "image_shape": list(clf.image_shape_),
        "backbone": clf.backbone,
        "preprocessing": _PREPROCESSING,
        "n_samples": int(clf.n_samples),
        "n_draws": int(sampler.n_noise_draws()),
        "sampling_seed": int(clf.sampling_seed_),
        "sampler": {
            "sampler": sampler.sampler,
            "n_inference_steps": int(sampler.n_steps),
            "eta": float(sampler.eta),
            "prediction_type": sampler.prediction_type,
        },
        "params": params,
        "card": _card(clf, params),
    }


def _card(clf, params: dict) -> dict:
    """The estimator's model card: the one it was loaded with, else its own
    from its JSON-able ``params`` (:mod:`skdiffmic._card`), so that an
    exported graph describes itself."""
    from ._card import model_card
    from ._persist import _jsonable

    card = getattr(clf, "card_", None)
    return _jsonable(card if card is not None else model_card(clf, params), "card")


def to_onnx(clf, path, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write the prediction of a fitted image ``DiffMICClassifier`` as ONNX.

    Parameters
    ----------
    clf : DiffMICClassifier
        A fitted estimator of images. The graph follows its current
        prediction settings (``sampler``, ``n_inference_steps``, ``eta``,
        ``n_samples``): ``set_params`` them before
        exporting to export others.
    path : str or os.PathLike
        The ``.onnx`` file to write.
    opset : int, default=18
        The ONNX opset.

    Returns
    -------
    pathlib.Path
        ``path``. The file passes ``onnx.checker``; its batch size is dynamic.
        The estimator's networks are left on the CPU (its next prediction
        moves them to its ``device``).

    Raises
    ------
    ValueError
        For a model fitted on feature vectors (the tabular mode): it predicts
        in float64 so that a row's probabilities do not depend on its batch,
        and its MLPs are cheap to run with the package itself.
    ImportError
        Without the ``onnx`` extra (``pip install "skdiffmic[onnx]"``).
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(clf)
    if clf.tabular_:
        raise ValueError(
            "to_onnx exports image models; this one was fitted on feature "
            "vectors (its MLPs predict in float64 to keep rows independent of "
            "their batch; predict with the estimator itself)."
        )
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise ImportError(
            f'{exc}: ONNX export needs `pip install "skdiffmic[onnx]"`.'
        ) from None
    path = Path(path)
    cpu = torch.device("cpu")
    for name in clf._torch_modules:  # traced on the CPU, in evaluation mode
        setattr(clf, name, clf._to_device(getattr(clf, name), cpu).eval())
    module = _prediction_module(clf)
    size, channels = clf.image_size_, clf.image_shape_[2]
    meta = _metadata(clf)
    images = torch.rand(2, channels, size, size)
    noise = torch.zeros(2, meta["n_samples"], meta["n_draws"], len(clf.classes_))
    with warnings.catch_warnings():
        # The tracer notes the Python numbers (sizes, steps) it freezes; the
        # batch size stays dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (images, noise),
            os.fspath(path),
            input_names=["images", "noise"],
            output_names=["proba", "prior", "prior_global", "prior_local"],
            dynamic_axes={
                name: {0: "batch"}
                for name in ("images", "noise", "proba", "prior")
                + ("prior_global", "prior_local")
            },
            opset_version=opset,
            dynamo=False,
        )
    model = onnx.load(os.fspath(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, os.fspath(path))
    return path


class OnnxClassifier:
    """Predict with a file written by :func:`to_onnx`, through ONNX Runtime.

    Takes the same ``X`` as the estimator (image arrays, file paths, DICOM
    files) and prepares it the same way: decoding, crop and resize, and the
    chains' noise from the same per-row seeds. This side uses torch (CPU) for
    that, as the estimator does; the networks run in ONNX Runtime.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.onnx`` file.
    providers : list of str, optional
        ONNX Runtime execution providers (default: the CPU).
    batch_size : int, default=32
        Images per run of the graph.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the order of ``predict_proba``'s columns.
    multilabel_ : bool
        Whether the model predicts label sets (a multi-label fit).
    label_names_ : ndarray
        Multi-label only: the names of the labels, in the order of
        ``predict_proba``'s columns.
    metadata_ : dict
        The file's metadata (see :mod:`skdiffmic.export`).
    """

    def __init__(self, path, *, providers=None, batch_size: int = 32):
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise ImportError(
                f'{exc}: OnnxClassifier needs `pip install "skdiffmic[onnx]"`.'
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"No ONNX model at {os.fspath(self.path)!r}.")
        try:
            self.session_ = onnxruntime.InferenceSession(
                os.fspath(self.path),
                providers=providers or ["CPUExecutionProvider"],
            )
        except Exception as exc:
            raise ValueError(
                f"{os.fspath(self.path)!r} is not a readable ONNX model: {exc}"
            ) from None
        props = self.session_.get_modelmeta().custom_metadata_map
        if json.loads(props.get("format", "null")) != FORMAT:
            raise ValueError(
                f"{os.fspath(self.path)!r} is an ONNX model but not one written "
                "by skdiffmic.export.to_onnx."
            )
        self.metadata_ = {k: json.loads(v) for k, v in props.items()}
        self.classes_ = np.asarray(self.metadata_["classes"])
        # Files of single-label models, and those written before multi-label
        # models, have no label names.
        self.multilabel_ = bool(self.metadata_.get("multilabel", False))
        if self.multilabel_:
            self.label_names_ = np.asarray(self.metadata_["label_names"])
        self.batch_size = int(batch_size)
        self._rows = _RowSource(self.metadata_)

    def graph_inputs(self, X) -> dict:
        """The graph's inputs for ``X``: ``{"images": ..., "noise": ...}``.

        The images decoded, cropped and resized, and the chains' noise drawn
        from each image's seed, as the estimator does (see
        :mod:`skdiffmic.export`).

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for the estimator.

        Returns
        -------
        dict of str to ndarray
            float32 arrays, to feed ``session_.run``.
        """
        data = self._rows._inputs(X, fitting=False)
        return self._feeds(data.load(np.arange(len(data))))

    def _feeds(self, raw) -> dict:
        """The graph's inputs for loaded rows ``raw`` (see graph_inputs)."""
        from ._inputs import row_seeds
        from ._sampling import row_noise

        meta = self.metadata_
        noise = row_noise(
            row_seeds(raw, meta["sampling_seed"]),
            meta["n_samples"],
            meta["n_draws"],
            len(self.classes_),
            torch.device("cpu"),
        ).view(len(raw), meta["n_samples"], meta["n_draws"], -1)
        return {"images": raw.float().numpy(), "noise": noise.float().numpy()}

    def _run(self, X) -> list[np.ndarray]:
        data = self._rows._inputs(X, fitting=False)
        outputs = []
        for start in range(0, len(data), self.batch_size):
            raw = data.load(np.arange(start, min(start + self.batch_size, len(data))))
            outputs.append(self.session_.run(None, self._feeds(raw)))
        return [np.concatenate(parts).astype(np.float64) for parts in zip(*outputs)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, as the estimator's ``predict_proba``.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for the estimator.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            Columns follow ``classes_``.
        """
        return self._run(X)[0]

    def predict(self, X) -> np.ndarray:
        """The class of highest probability (multi-label: every label of
        probability at least 0.5).

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for the estimator.

        Returns
        -------
        labels : ndarray of shape (n_images,) or (n_images, n_labels)
            Values of ``classes_``, or the 0/1 indicator of the labels.
        """
        return decide(self.predict_proba(X), self.classes_, self.multilabel_)

    def predict_prior_proba(self, X, granularity: str = "fused") -> np.ndarray:
        """The DCG model's probabilities, as the estimator's
        ``predict_prior_proba``.

        Parameters
        ----------
        X : array-like, list of paths, pandas Series or DataFrame
            Images, as for the estimator.
        granularity : {"fused", "global", "local"}, default="fused"
            Which prior: the fused one the diffusion starts from, or one
            branch.

        Returns
        -------
        proba : ndarray of shape (n_images, n_classes)
            Columns follow ``classes_``.
        """
        which = {"fused": 1, "global": 2, "local": 3}
        if granularity not in which:
            raise ValueError(
                f"granularity must be one of {sorted(which)}; got {granularity!r}."
            )
        return self._run(X)[which[granularity]]


class _RowSource(ImageInputMixin):
    """The estimator's input handling, with an exported model's sizes."""

    _supports_tabular = False

    def __init__(self, meta):
        self.tabular_ = False
        self.image_shape = meta["params"].get("image_shape")
        self.image_size = meta["image_size"]
        self.image_size_ = meta["image_size"]
        self.image_shape_ = tuple(meta["image_shape"])
        self.image_cache = None
