"""
Quickstart: fit, predict, probabilities
=======================================

Fit :class:`~skdiffmic.DiffMICClassifier` on synthetic skin-lesion images,
predict held-out images, and look at the confusion matrix and the class
probabilities.

The settings are small by design so that the example runs in well under a
minute on a CPU: 32 px images, timm's tiny ``test_resnet`` backbone, a narrow
denoiser (``hidden_dim=256``) and 100 noise levels. For real images, use a
real backbone such as ``"resnet18"``, larger images and longer training.
"""

# %%
# The data
# --------
# :func:`~skdiffmic.datasets.make_lesions` draws skin-like images with one
# brown lesion each. The class is set only by a small striped patch inside
# the lesion: horizontal stripes for one class, vertical for the other. A
# classifier has to find that patch. The labels can be any values; here they
# are strings.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay, accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

X, codes = make_lesions(240, image_size=32, n_classes=2, random_state=0)
y = np.array(["horizontal", "vertical"])[codes]
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
print(f"{len(X_train)} training and {len(X_test)} test images of shape {X.shape[1:]}")

fig, axes = plt.subplots(2, 6, figsize=(9, 3.4))
for ax, image, label in zip(axes.flat, X_train, y_train):
    ax.imshow(image)
    ax.set_title(label, fontsize=9)
    ax.axis("off")
fig.suptitle("Training images and their labels")
fig.tight_layout()

# %%
# Fit
# ---
# The guidance model is pre-trained alone for ``guidance_epochs`` epochs,
# then the denoiser trains for ``max_epochs`` epochs while the guidance model
# keeps learning.
clf = DiffMICClassifier(**presets.SCRATCH).set_params(
    backbone="test_resnet",
    hidden_dim=256,
    n_timesteps=100,
    guidance_epochs=5,
    max_epochs=30,
    random_state=0,
)
clf.fit(X_train, y_train)
print("classes:", clf.classes_)
print("network input:", clf.image_size_, "px; diffusion epochs run:", clf.n_iter_)

# %%
# Predict
# -------
# ``predict`` returns labels from ``classes_``. ``predict_prior_proba`` gives
# the guidance model's own prediction, the prior the diffusion starts from.
pred = clf.predict(X_test)
prior = clf.classes_[clf.predict_prior_proba(X_test).argmax(axis=1)]
print(f"DiffMIC accuracy:   {accuracy_score(y_test, pred):.3f}")
print(f"DiffMIC macro-F1:   {f1_score(y_test, pred, average='macro'):.3f}")
print(f"DCG prior accuracy: {accuracy_score(y_test, prior):.3f}")

ConfusionMatrixDisplay.from_predictions(y_test, pred, cmap="Blues", colorbar=False)
plt.title("DiffMIC on the held-out images")
plt.tight_layout()

# %%
# Probabilities
# -------------
# ``predict_proba`` has one column per class, in the order of ``classes_``;
# the rows sum to 1.
proba = clf.predict_proba(X_test)
for label, row in zip(y_test[:5], proba[:5]):
    print(
        f"true {label:>10}:  P(horizontal) = {row[0]:.3f}, P(vertical) = {row[1]:.3f}"
    )

fig, ax = plt.subplots(figsize=(6, 3))
for name in clf.classes_:
    ax.hist(proba[y_test == name, 1], bins=np.linspace(0, 1, 21), alpha=0.7, label=name)
ax.set_xlabel("predicted probability of 'vertical'")
ax.set_ylabel("test images")
ax.legend(title="true class")
fig.tight_layout()
