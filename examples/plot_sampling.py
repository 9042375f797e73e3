"""
Several reverse chains per image
================================

DiffMIC's prediction is the end of a reverse diffusion chain that starts from
the guidance prior plus noise. Different starting noise gives different
chains. :meth:`~skdiffmic.DiffMICClassifier.sample_proba` returns the
probabilities of every chain, and ``predict_proba`` is their mean.

This example draws 200 chains for a few test images, with the deterministic
DDIM sampler (``eta=0``: chains differ only by where they start) and with
fresh noise at every step (``eta=1``). Small settings by design (32 px
images, the tiny ``test_resnet`` backbone), so that it runs in seconds.
"""

# %%
# Fit a small model
# -----------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from skdiffmic import DiffMICClassifier, presets
from skdiffmic.datasets import make_lesions

X, y = make_lesions(240, image_size=32, n_classes=2, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
clf = (
    DiffMICClassifier(**presets.SCRATCH)
    .set_params(
        backbone="test_resnet",
        hidden_dim=256,
        n_timesteps=100,
        guidance_epochs=5,
        max_epochs=30,
        random_state=0,
    )
    .fit(X_train, y_train)
)

# %%
# Draw the chains
# ---------------
# ``sample_proba`` has shape ``(n_images, n_samples, n_classes)``. Each image
# is encoded once, whatever the number of chains: the chains only run the
# denoiser's small label head, so 200 of them cost little.
n_chains = 200
chains = {}
for eta in (0.0, 1.0):
    clf.set_params(eta=eta)
    chains[eta] = clf.sample_proba(X_test, n_samples=n_chains)[:, :, 1]
print("sample_proba shape:", clf.sample_proba(X_test[:3], n_samples=n_chains).shape)

# %%
# ``predict_proba`` with ``n_samples`` chains is the mean of these chains'
# probabilities (the noise of each chain is seeded from ``random_state`` and
# the image, so the same chains come back).
clf.set_params(eta=1.0, n_samples=n_chains)
mean_of_chains = chains[1.0].mean(axis=1)
print(
    "predict_proba == mean of sample_proba:",
    np.allclose(clf.predict_proba(X_test)[:, 1], mean_of_chains),
)

# %%
# The spread of the chains
# ------------------------
# Six test images: the three whose mean probability is closest to 1/2 and
# the three most confident ones. Each panel shows the chains' probabilities
# of class 1 for both samplers; the dashed line is their mean for ``eta=1``,
# the ``predict_proba`` computed above.
order = np.argsort(np.abs(mean_of_chains - 0.5))
chosen = np.concatenate([order[:3], order[-3:]])
bins = np.linspace(0, 1, 26)
fig, axes = plt.subplots(2, 6, figsize=(13, 4.2), height_ratios=[1, 1.3])
for column, i in enumerate(chosen):
    axes[0, column].imshow(X_test[i])
    axes[0, column].set_title(f"true class {y_test[i]}", fontsize=9)
    axes[0, column].axis("off")
    ax = axes[1, column]
    for eta, colour in ((0.0, "tab:blue"), (1.0, "tab:orange")):
        ax.hist(
            chains[eta][i], bins=bins, alpha=0.6, color=colour, label=f"eta={eta:g}"
        )
    ax.axvline(mean_of_chains[i], color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("P(class 1)")
    ax.set_yticks([])
axes[1, 0].set_ylabel("chains")
axes[1, 0].legend(fontsize=8, loc="upper left")
fig.suptitle(f"{n_chains} reverse chains per image")
fig.tight_layout()

# %%
# Per-image summaries
# -------------------
# The standard deviation across chains and the 95% interval of the
# probability are simple per-image measures of how settled a prediction is.
low, high = np.percentile(chains[1.0], [2.5, 97.5], axis=1)
for i in chosen:
    print(
        f"image {i:2d}: mean {mean_of_chains[i]:.2f}, sd {chains[1.0][i].std():.2f}, "
        f"95% interval [{low[i]:.2f}, {high[i]:.2f}]"
    )
