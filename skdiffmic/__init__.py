"""skdiffmic: DiffMIC, dual-guidance diffusion classification, for scikit-learn."""

from . import presets  # noqa: F401 - skdiffmic.presets, a module of its own
from ._classifier import DiffMICClassifier

__version__ = "0.1.0"

# ``skdiffmic.presets`` is a module of its own (``from skdiffmic import presets``).
__all__ = ["DiffMICClassifier", "__version__"]
