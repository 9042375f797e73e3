"""scikit-learn's own estimator checks, run for real on a small configuration.

The checks feed 2-D arrays, so they exercise the tabular mode (MLP encoders in
place of the CNNs) together with everything the modes share: parameter
validation, input and target checks, cloning, pickling, fitted attributes,
reproducibility and invariance of predictions to batch composition and row
order. No check is switched off and none is expected to fail.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skdiffmic import DiffMICClassifier


def _fast():
    return DiffMICClassifier(
        hidden_dim=128,
        n_timesteps=50,
        max_epochs=50,
        guidance_epochs=10,
        guidance_learning_rate=1e-2,
        learning_rate=1e-2,
        batch_size=64,
        random_state=0,
    )


@parametrize_with_checks([_fast()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
