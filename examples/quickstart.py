"""Quickstart: fit DiffMIC on synthetic skin-lesion images, predict, score.

Run with ``python examples/quickstart.py``; set ``SKDIFFMIC_QUICK=1`` for a
seconds-long smoke run.
"""

import os

from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

quick = os.environ.get("SKDIFFMIC_QUICK") == "1"
X, y = make_lesions(60 if quick else 400, image_size=32, n_classes=2, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
# From random weights (SCRATCH), on a small timm network; the defaults
# (presets.FINE_TUNE) fine-tune ImageNet weights instead.
clf = DiffMICClassifier(**presets.SCRATCH).set_params(
    backbone="resnet10t",
    hidden_dim=128,
    guidance_epochs=1 if quick else 6,
    max_epochs=1 if quick else 25,
    random_state=0,
    verbose=1,
)
clf.fit(X_train, y_train)
pred = clf.predict(X_test)
print(f"DiffMIC accuracy: {accuracy_score(y_test, pred):.3f}")
print(f"DiffMIC macro-F1: {f1_score(y_test, pred, average='macro'):.3f}")
prior = clf.classes_[clf.predict_prior_proba(X_test).argmax(1)]
print(f"DCG prior accuracy: {accuracy_score(y_test, prior):.3f}")
print("probabilities of the first test image:", clf.predict_proba(X_test[:1]).round(3))
