"""skdiffmic: DiffMIC, dual-guidance diffusion classification, for scikit-learn."""

from . import presets
from ._classifier import DiffMICClassifier

__version__ = "0.1.0"

__all__ = ["DiffMICClassifier", "__version__", "presets"]
