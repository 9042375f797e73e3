"""skdiffmic: DiffMIC, the dual-guidance diffusion classifier, as a scikit-learn estimator."""

from ._classifier import DiffMICClassifier

__version__ = "0.1.0"

__all__ = ["DiffMICClassifier", "__version__"]
