"""Data sets: synthetic generators and loaders of medical images."""

from ._challenges import load_aptos2019, load_ham10000
from ._loaders import (
    APTOS2019_CLASSES,
    HAM10000_CLASSES,
    load_br35h,
    load_image_folder,
)
from ._medmnist import load_medmnist
from ._multilabel import (
    CHESTXRAY14_LABELS,
    CHEXPERT_LABELS,
    load_chestxray14,
    load_chexpert,
)
from ._read import read_images
from ._synthetic import make_lesions

__all__ = [
    "APTOS2019_CLASSES",
    "CHESTXRAY14_LABELS",
    "CHEXPERT_LABELS",
    "HAM10000_CLASSES",
    "load_aptos2019",
    "load_br35h",
    "load_chestxray14",
    "load_chexpert",
    "load_ham10000",
    "load_image_folder",
    "load_medmnist",
    "make_lesions",
    "read_images",
]
