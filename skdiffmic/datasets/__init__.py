"""Data sets: synthetic generators and loaders of medical images."""

from ._synthetic import make_lesions

__all__ = ["make_lesions"]
