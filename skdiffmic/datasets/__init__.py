"""Data sets: synthetic generators and loaders returning scikit-learn ``Bunch`` objects."""

from ._synthetic import make_lesions

__all__ = ["make_lesions"]
