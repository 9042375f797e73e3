"""DiffMIC must learn a task where the class is visible only in a small region."""

import numpy as np
import pytest

# The fitted model is the session fixture ``trained`` of conftest.py, shared
# with the pointing game of test_explain.py.


@pytest.mark.slow
def test_learns_a_local_structure_and_denoising_does_not_lose_to_the_prior(trained):
    clf, X_test, y_test = trained
    diffusion_acc = np.mean(clf.predict(X_test) == y_test)
    prior_acc = np.mean(clf.predict_prior_proba(X_test).argmax(1) == y_test)
    assert diffusion_acc >= 0.9
    # At the default settings the diffusion does not lose to its own prior.
    assert diffusion_acc >= prior_acc


@pytest.mark.slow
def test_uncertainty_at_the_defaults_trusts_clean_images_and_not_noise(trained):
    # No validation_fraction: the typicality test's reference distances are
    # cross-fitted on the training rows, so unseen clean images look typical.
    clf, X_test, _ = trained
    assert clf.validation_fraction is None
    clean = clf.predict_uncertainty(X_test)
    noise = np.random.default_rng(0).integers(0, 256, X_test.shape, dtype=np.uint8)
    noisy = clf.predict_uncertainty(noise)
    assert clean["confident"].mean() > 0.7
    assert noisy["confident"].mean() < 0.05
