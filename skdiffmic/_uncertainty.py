"""Per-image uncertainty from the reverse chains, and a feature-space typicality test.

Two questions are asked of every image:

* **Do the chains agree on the top class?** CARD's instance-level test: a
  paired t-test, across the reverse chains, between the denoised label
  components of the two most probable classes. A small p-value means the
  chains put the top class above the runner-up consistently.
* **Does the image look like the training images?** The chains cannot answer
  this: a network can be consistently, confidently wrong on an input unlike
  anything it was trained on (on pure-noise images, the t-test above is
  significant for nearly every image). The per-channel mean and standard
  deviation of the denoiser encoder's feature maps, at up to five stages
  (:func:`feature_statistics`), are compared with those of the training
  images by the Mahalanobis distance to the nearest class mean (shared,
  shrunk covariance; the multi-layer variant of Lee et al., 2018), and the
  distance is turned into a conformal p-value against the distances of
  held-out reference images. Pooled last-stage features alone are not
  enough: global pooling averages the noise away.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

__all__ = [
    "FeatureDensity",
    "chain_statistics",
    "feature_statistics",
    "label_chain_statistics",
    "map_statistics",
    "shrunk_precision",
]

MAX_STAGES = 5


def feature_statistics(encoder, x):
    """Per-channel mean and standard deviation of the encoder's feature maps.

    For a timm network, its intermediate feature maps (``forward_intermediates``;
    for a ``features_only`` network, the maps it returns) at up to
    :data:`MAX_STAGES` evenly spaced stages, each reduced to the mean and the
    standard deviation of every channel over the spatial positions,
    concatenated to ``(B, 2 * sum(channels))``. Any other encoder (the tabular
    mode's MLP) gives its output features.
    """
    intermediates = getattr(encoder, "forward_intermediates", None)
    if intermediates is not None:
        return map_statistics(intermediates(x, intermediates_only=True))
    out = encoder(x)
    return map_statistics(out) if isinstance(out, (list, tuple)) else out


def map_statistics(maps):
    """:func:`feature_statistics` of a list of feature maps ``(B, C_i, h_i, w_i)``."""
    keep = np.unique(np.linspace(0, len(maps) - 1, min(MAX_STAGES, len(maps))))
    parts = []
    for i in keep.round().astype(int):
        flat = maps[i].flatten(2)  # (B, C, positions)
        parts += [flat.mean(-1), flat.std(-1, correction=0)]
    return torch.cat(parts, dim=1)


def shrunk_precision(X):
    """Pseudo-inverse of the Ledoit-Wolf shrunk covariance of centred rows.

    ``X (n, d)`` holds rows with mean zero (``assume_centered``). The
    empirical covariance is ``S = X^T X / n``; Ledoit and Wolf (2004) shrink
    it to ``C = (1 - s) S + s mu I`` with ``mu = trace(S) / d`` and the
    shrinkage ``s`` of :func:`sklearn.covariance.ledoit_wolf_shrinkage`. Every
    quantity ``s`` needs comes from the squared row norms and the Frobenius
    norm of ``X^T X``, which equals that of the ``n x n`` Gram matrix
    ``X X^T``. ``S``'s eigenvectors with non-zero eigenvalue ``l`` span at most
    ``r = min(n, d)`` directions ``W``; ``C`` has eigenvalue ``(1 - s) l + s mu``
    on them and ``s mu`` on the rest, so

    ``C^+ = I / (s mu) + W diag(1 / ((1 - s) l + s mu) - 1 / (s mu)) W^T``

    (without the identity part when ``s mu`` is zero, as a pseudo-inverse
    drops a null space). One eigendecomposition of an ``r x r`` matrix.
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    squared_norms = np.einsum("ij,ij->i", X, X)
    trace = squared_norms.sum() / n  # trace of S
    mu = trace / d
    gram = X @ X.T if n <= d else X.T @ X  # the same non-zero spectrum, n * S's
    delta = np.sum(gram**2) / n**2  # ||S||_F^2
    beta = (np.sum(squared_norms**2) / n - delta) / (d * n)
    delta = (delta - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    values, vectors = np.linalg.eigh(gram / n)
    keep = values > max(values.max(initial=0.0), 0.0) * max(n, d) * np.finfo(float).eps
    values, vectors = values[keep], vectors[:, keep]
    if n <= d:  # right singular vectors from the left ones: W = X^T U / sqrt(n l)
        vectors = (X.T @ vectors) / np.sqrt(n * values)
    floor = shrinkage * mu
    shrunk = (1.0 - shrinkage) * values + floor
    if floor > 0:
        precision = np.eye(d) / floor
        coefficients = 1.0 / shrunk - 1.0 / floor
    else:
        precision = np.zeros((d, d))
        coefficients = 1.0 / shrunk
    precision += (vectors * coefficients) @ vectors.T
    return precision


class FeatureDensity:
    """Class-conditional Gaussians with a shared covariance on image features.

    Parameters
    ----------
    means : ndarray of shape (n_classes, n_features)
        Class means of the training features.
    precision : ndarray of shape (n_features, n_features)
        Inverse of the shared (Ledoit-Wolf shrunk) within-class covariance.
    reference : ndarray of shape (n_reference,)
        Sorted distances of the reference images: the validation hold-out, or
        without one the training images, each measured by a density fitted
        without it (:meth:`cross_fitted_distances`).
    """

    def __init__(self, means, precision, reference):
        self.means = np.asarray(means, dtype=np.float64)
        # Kept (and saved) in single precision: it is the one large array.
        self.precision = np.asarray(precision, dtype=np.float32)
        self.reference = np.sort(np.asarray(reference, dtype=np.float64))

    @classmethod
    def fit(cls, features, codes, n_classes):
        """Fit the class means and the shared covariance; no reference yet.

        The precision is that of :class:`sklearn.covariance.LedoitWolf`
        (``assume_centered`` on the class-centred rows), pseudo-inverted, but
        computed by :func:`shrunk_precision` from the smaller of the two Gram
        matrices: ``O(n d min(n, d))`` instead of two ``O(d^3)``
        eigendecompositions of the ``d x d`` covariance.
        """
        features = np.asarray(features, dtype=np.float64)
        # A class without rows (in a cross-fitting fold) has no mean: NaN,
        # which distance() skips.
        means = np.full((n_classes, features.shape[1]), np.nan)
        centred = np.empty_like(features)
        for k in range(n_classes):
            rows = codes == k
            if rows.any():
                means[k] = features[rows].mean(axis=0)
                centred[rows] = features[rows] - means[k]
        return cls(means, shrunk_precision(centred), np.zeros(0))

    @classmethod
    def cross_fitted_distances(cls, features, codes, n_classes, n_folds=5, seed=0):
        """Distance of every row under a density fitted without it (k-fold).

        The reference distances of the typicality test when there is no
        validation hold-out. In-sample distances are far too small: with
        thousands of feature dimensions and hundreds of rows the fitted
        covariance hugs its own rows, and every new image would look atypical.
        Each fold's rows are measured against a density fitted on the other
        folds (stratified), so they stand for unseen images.
        """
        from sklearn.model_selection import KFold, StratifiedKFold

        features = np.asarray(features, dtype=np.float64)
        codes = np.asarray(codes)
        if len(features) < 2:
            return cls.fit(features, codes, n_classes).distance(features)
        counts = np.bincount(codes, minlength=n_classes)
        smallest = int(counts[counts > 0].min())
        if smallest >= 2:
            folds = StratifiedKFold(
                min(n_folds, smallest), shuffle=True, random_state=seed
            )
        else:  # a class with one image: plain folds (it is then left out once)
            folds = KFold(min(n_folds, len(features)), shuffle=True, random_state=seed)
        out = np.empty(len(features))
        for fit_rows, held_out in folds.split(features, codes):
            density = cls.fit(features[fit_rows], codes[fit_rows], n_classes)
            out[held_out] = density.distance(features[held_out])
        return out

    def distance(self, features):
        """Mahalanobis distance of each row to its nearest class mean."""
        features = np.asarray(features, dtype=np.float64)
        out = np.empty(len(features))
        for start in range(0, len(features), 1024):
            diff = features[start : start + 1024, None, :] - self.means[None]
            squared = np.sum((diff @ self.precision.astype(np.float64)) * diff, -1)
            nearest = np.nanmin(squared, axis=1)  # classes with a mean only
            out[start : start + 1024] = np.sqrt(np.clip(nearest, 0, None))
        return out

    def p_value(self, distance):
        """Conformal p-value: ``(1 + #{reference >= d}) / (1 + n_reference)``.

        Small when the image is farther from the training features than
        nearly all reference images. With exchangeable reference images
        (the validation hold-out), ``P(p <= alpha) <= alpha`` for a new image
        from the training distribution.
        """
        n = len(self.reference)
        above = n - np.searchsorted(self.reference, distance, side="left")
        return (1.0 + above) / (1.0 + n)

    def arrays(self):
        """The state as named arrays (for saving)."""
        return {
            "means": self.means,
            "precision": self.precision,
            "reference": self.reference,
        }


def paired_t_test(first, second):
    """Two-sided paired t-test p-value of ``first - second`` per row.

    ``first`` and ``second`` have shape (n_images, n_samples). A difference
    that is the same in every sample has no spread: its p-value is 0 when the
    difference is not zero, 1 when it is.
    """
    diff = first - second
    spread = diff.std(axis=1, ddof=1)
    mean = diff.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (spread / np.sqrt(diff.shape[1]))
        p = 2.0 * stats.t.sf(np.abs(t), df=diff.shape[1] - 1)
    constant = ~(spread > 1e-12 * np.maximum(np.abs(mean), 1e-300))
    p[constant] = np.where(np.abs(mean[constant]) > 0, 0.0, 1.0)
    return p


def chain_statistics(samples, y0):
    """Entropy, top-class interval width and t-test p-value per image.

    Parameters
    ----------
    samples : ndarray of shape (n_images, n_samples, n_classes)
        Probabilities of every reverse chain.
    y0 : ndarray of shape (n_images, n_samples, n_classes)
        The chains' denoised label vectors the probabilities come from.

    Returns
    -------
    dict of ndarray of shape (n_images,)
        ``top`` (index of the most probable class of the mean), ``probability``
        (its mean probability), ``entropy`` (of the mean, in nats),
        ``interval_width`` (97.5 - 2.5 percentile of the top class's
        probability across chains) and ``p_value`` (paired t-test across
        chains of the top class's ``y0`` component against the runner-up's:
        on ``y0`` itself, so that it does not depend on the temperature,
        which can saturate every chain's probabilities).
    """
    mean = samples.mean(axis=1)
    order = np.argsort(-mean, axis=1, kind="stable")
    top, second = order[:, 0], order[:, 1]
    rows = np.arange(len(samples))
    top_samples = samples[rows, :, top]
    low, high = np.percentile(top_samples, [2.5, 97.5], axis=1)
    return {
        "top": top,
        "probability": mean[rows, top],
        "entropy": -np.sum(mean * np.log(np.clip(mean, 1e-300, None)), axis=1),
        "interval_width": high - low,
        "p_value": paired_t_test(y0[rows, :, top], y0[rows, :, second]),
    }


def label_chain_statistics(samples, scores):
    """Per-image statistics of multi-label chains, each label on its own.

    Parameters
    ----------
    samples : ndarray of shape (n_images, n_samples, n_labels)
        Each chain's probability of each label.
    scores : ndarray of shape (n_images, n_samples, n_labels)
        The chains' logits the probabilities come from (before the
        temperature, so that the tests do not depend on it).

    Returns
    -------
    dict of ndarray
        ``mean`` (n_images, n_labels), the probabilities averaged over the
        chains; ``entropy`` (n_images,), the sum of the labels' binary
        entropies of ``mean``, in nats; ``interval_width`` (n_images,
        n_labels), 97.5 - 2.5 percentile of each label's probability across
        chains; ``p_value`` (n_images, n_labels), the two-sided t-test across
        chains of each label's logit against 0 (a probability of 1/2): small
        when the chains agree on the label's side.
    """
    mean = samples.mean(axis=1)
    low, high = np.percentile(samples, [2.5, 97.5], axis=1)
    clipped = np.clip(mean, 1e-300, 1.0)
    rest = np.clip(1.0 - mean, 1e-300, 1.0)
    entropy = -(mean * np.log(clipped) + (1 - mean) * np.log(rest)).sum(axis=1)
    p_value = np.stack(
        [
            paired_t_test(scores[:, :, j], np.zeros_like(scores[:, :, j]))
            for j in range(scores.shape[2])
        ],
        axis=1,
    )
    return {
        "mean": mean,
        "entropy": entropy,
        "interval_width": high - low,
        "p_value": p_value,
    }
