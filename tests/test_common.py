"""scikit-learn's own estimator checks, run for real on a small configuration.

The checks feed 2-D arrays, so they exercise the tabular mode (MLP encoders in
place of the CNNs) together with everything the modes share: parameter
validation, input and target checks, cloning, pickling, fitted attributes,
reproducibility and invariance of predictions to batch composition and row
order. The estimator's tags declare multi-label support (``multi_label``,
``multi_output``), which adds scikit-learn's multilabel checks: indicator ``y``
as an array, a list of lists and a list of arrays, the shape and dtype of
``predict`` and ``predict_proba``. No check is switched off and none is
expected to fail (scikit-learn itself skips its ``decision_function`` check:
the estimator has none).
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skdiffmic import DiffMICClassifier


def _fast():
    return DiffMICClassifier(
        hidden_dim=128,
        n_timesteps=50,
        max_epochs=30,
        guidance_epochs=6,
        guidance_learning_rate=1e-2,
        learning_rate=1e-2,
        batch_size=64,
        random_state=0,
    )


@parametrize_with_checks([_fast()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
