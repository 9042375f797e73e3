"""Prediction helpers: the chains' scores and the correction offset."""

import numpy as np

from skdiffmic._sampling import chain_scores, correction_offset


def test_correction_offset_is_the_mean_log_correction_centred_over_classes():
    rng = np.random.default_rng(0)
    prior = rng.dirichlet(np.ones(3), size=50)
    lean = np.array([0.5, -0.2, 0.1])  # the same for every row
    wiggle = rng.normal(0, 0.3, size=(50, 2, 3))  # per row and chain
    logits = np.log(prior)[:, None, :] + lean + wiggle
    y0 = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    offset = correction_offset(y0, prior, "logit_residual")
    expected = lean + wiggle.mean(axis=(0, 1))
    np.testing.assert_allclose(offset, expected - expected.mean(), atol=1e-12)
    assert abs(offset.sum()) < 1e-12
    # Rows whose correction is their own cancel: no offset.
    y0 = np.repeat(prior[:, None, :], 2, axis=1)
    np.testing.assert_allclose(correction_offset(y0, prior, "logit_residual"), 0)


def test_correction_offset_in_the_other_score_spaces():
    prior = np.array([[0.7, 0.3], [0.2, 0.8]])
    # The types that denoise y_0 itself: the offset of y_0 from the prior.
    y0 = (prior + np.array([0.1, -0.1]))[:, None, :]
    np.testing.assert_allclose(correction_offset(y0, prior, "sample"), [0.1, -0.1])
    # Multi-label: each label's mean logit correction, not centred.
    labels = np.array([[0.6, 0.1], [0.3, 0.9]])
    moved = 1 / (1 + np.exp(-(chain_scores(labels, "sample", True) + [1.0, 0.5])))
    offset = correction_offset(moved[:, None, :], labels, "logit_residual", True)
    np.testing.assert_allclose(offset, [1.0, 0.5], atol=1e-9)
