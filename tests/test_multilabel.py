"""Multi-label targets: indicator y for DiffMICClassifier and TimmClassifier."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score

from skdiffmic import DiffMICClassifier
from skdiffmic._diffusion import NoiseSchedule, logit_residual_y0
from skdiffmic._losses import classification_loss
from skdiffmic._sampling import chain_probabilities, chain_scores, fit_temperature
from skdiffmic._targets import label_sample_weight, positive_weights
from skdiffmic.baselines import TimmClassifier

from .conftest import tiny

NAMES = ["Effusion", "Mass", "Nodule"]


def _findings(n=48, size=16, seed=0):
    """Images with 3 independent findings, each a bright block in its own
    place: label j is present when its block is."""
    rng = np.random.default_rng(seed)
    Y = rng.integers(0, 2, size=(n, 3))
    Y[:3] = [[1, 0, 0], [0, 1, 1], [0, 0, 0]]  # every label has both values
    Y[3:6] = [[0, 1, 0], [1, 0, 1], [1, 1, 1]]
    X = rng.integers(0, 90, size=(n, size, size, 3)).astype(np.uint8)
    half = size // 2
    spots = [(0, 0), (0, half), (half, 0)]
    for j, (r, c) in enumerate(spots):
        X[Y[:, j] == 1, r : r + half, c : c + half] = 230
    return X, Y


@pytest.fixture(scope="module")
def data():
    return _findings()


@pytest.fixture(scope="module")
def fitted(data):
    X, Y = data
    return tiny(validation_fraction=0.25).fit(X, pd.DataFrame(Y, columns=NAMES))


def test_fit_predict_shapes_names_and_types(data, fitted):
    X, Y = data
    assert fitted.multilabel_
    assert list(fitted.label_names_) == NAMES
    np.testing.assert_array_equal(fitted.classes_, [0, 1, 2])
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert ((proba > 0) & (proba < 1)).all()
    assert not np.allclose(proba.sum(1), 1)  # independent labels
    pred = fitted.predict(X)
    assert pred.shape == (len(X), 3) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, (proba >= 0.5).astype(int))
    prior = fitted.predict_prior_proba(X)
    assert prior.shape == (len(X), 3) and ((prior > 0) & (prior < 1)).all()
    assert fitted.sample_proba(X[:4], n_samples=3).shape == (4, 3, 3)


def test_learns_the_findings(data):
    """The blocks are plain to see: a few epochs find them (chance: 0.5)."""
    X, Y = data
    Xt, Yt = _findings(n=40, seed=1)
    clf = tiny(max_epochs=4, guidance_epochs=4, guidance_learning_rate=5e-3)
    clf.fit(X, Y)
    assert roc_auc_score(Yt, clf.predict_proba(Xt), average="macro") > 0.8
    cnn = TimmClassifier(
        "test_resnet", pretrained=False, max_epochs=4, batch_size=8, random_state=0
    )
    cnn.fit(X, Y)
    assert roc_auc_score(Yt, cnn.predict_proba(Xt), average="macro") > 0.8


def test_sparse_and_list_targets_give_the_same_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    Y = (X[:, :3] > 0).astype(int)
    params = dict(hidden_dim=16, n_timesteps=20, max_epochs=1, guidance_epochs=1)
    params.update(batch_size=16, random_state=0)
    reference = DiffMICClassifier(**params).fit(X, Y).predict_proba(X)
    for target in (sp.csr_matrix(Y), Y.tolist(), Y.astype(bool), Y.astype(float)):
        proba = DiffMICClassifier(**params).fit(X, target).predict_proba(X)
        np.testing.assert_allclose(proba, reference)


def test_column_vector_stays_single_label(data):
    X, Y = data
    with pytest.warns(Warning, match="column-vector"):
        clf = tiny(max_epochs=1).fit(X, Y[:, :1])
    assert not clf.multilabel_ and clf.predict(X[:4]).shape == (4,)


def test_cross_val_score_and_grid_search_in_the_tabular_mode():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 6))
    Y = (X[:, :3] + 0.5 * rng.normal(size=(96, 3)) > 0).astype(int)
    clf = DiffMICClassifier(
        hidden_dim=32,
        n_timesteps=50,
        max_epochs=3,
        guidance_epochs=3,
        batch_size=32,
        guidance_learning_rate=1e-2,
        random_state=0,
    )
    scores = cross_val_score(clf, X, Y, cv=KFold(2), scoring="roc_auc")
    assert scores.shape == (2,) and scores.min() > 0.8
    search = GridSearchCV(
        clf, {"max_epochs": [1, 3]}, cv=KFold(2), scoring="roc_auc"
    ).fit(X, Y)
    assert search.best_estimator_.multilabel_
    assert search.predict(X[:5]).shape == (5, 3)


def test_save_load_and_uncertainty(tmp_path, data, fitted):
    X, _ = data
    path = tmp_path / "multi.safetensors"
    fitted.save(path)
    loaded = DiffMICClassifier.load(path)
    assert loaded.multilabel_ and list(loaded.label_names_) == NAMES
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    table = loaded.predict_uncertainty(X[:5], n_samples=4)
    assert list(table.columns) == [
        "prediction",
        "n_labels",
        "least_certain",
        "entropy",
        "interval_width",
        "p_value",
        "feature_distance",
        "ood_p_value",
        "confident",
    ]
    pred = fitted.predict(X[:5])
    expected = ["|".join(np.array(NAMES)[row == 1]) for row in pred]
    # The table's mean is over its own 4 chains; one chain per image and
    # eta=0 make every chain the same.
    assert list(table["prediction"]) == expected
    assert (table["n_labels"] == pred.sum(1)).all()
    assert set(table["least_certain"]) <= set(NAMES)


def test_explain_gives_each_labels_map(data, fitted):
    X, _ = data
    explanation = fitted.explain(X[:2])
    assert explanation.cams.shape[:2] == (2, 3)
    np.testing.assert_allclose(
        explanation.prior_fused, fitted.predict_prior_proba(X[:2])
    )


def test_warm_start_needs_the_same_labels(data, fitted):
    X, Y = data
    clf = tiny(max_epochs=1).fit(X, pd.DataFrame(Y, columns=NAMES))
    clf.set_params(warm_start=True).fit(X, pd.DataFrame(Y, columns=NAMES))
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, pd.DataFrame(Y, columns=["a", "b", "c"]))
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X, Y[:, 0])


@pytest.mark.parametrize("estimator", ["diffmic", "cnn"])
@pytest.mark.parametrize(
    "rows, column, value, message",
    [
        (4, 1, np.inf, "'Mass' \\(column 1\\) is infinite in row 4"),
        (7, 2, 2.0, "only 0 and 1.*'Nodule' \\(column 2\\) has the value 2 in row 7"),
        (slice(None), 0, 0.0, "'Effusion' \\(column 0\\) has no known positive"),
        (slice(None), 1, 1.0, "'Mass' \\(column 1\\) has no known negative"),
        (slice(1, None), 2, np.nan, "'Nodule' \\(column 2\\) has no known"),
    ],
)
def test_bad_targets_are_refused_before_training(
    tmp_path, data, estimator, rows, column, value, message
):
    X, Y = data
    Y = Y.astype(float)
    Y[rows, column] = value
    frame = pd.DataFrame(Y, columns=NAMES)
    if estimator == "diffmic":
        clf = tiny(checkpoint_dir=tmp_path / "ckpt")
    else:
        clf = TimmClassifier("test_resnet", pretrained=False, max_epochs=1)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, frame)
    assert not (tmp_path / "ckpt").exists()
    assert not hasattr(clf, "classes_")


def test_other_bad_targets(data):
    X, Y = data
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        tiny().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="Label 1 has no known positive row"):
        Z = Y.copy()
        Z[:, 1] = 0
        tiny().fit(X, Z)
    with pytest.raises(ValueError, match="only 0 and 1"):
        tiny().fit(X, np.where(Y == 1, "yes", "no"))
    with pytest.raises(ValueError, match="class_weight names the label 'Cough'"):
        tiny(class_weight={"Cough": 2.0}).fit(X, pd.DataFrame(Y, columns=NAMES))


def test_a_hold_out_that_leaves_a_label_unseen_is_refused(data):
    from sklearn.model_selection import ShuffleSplit

    X, Y = data
    Z = Y.copy()
    Z[:, 2] = 0
    Z[0, 2] = 1  # one positive row: a 25% hold-out takes it a quarter of the time
    seed = next(
        s
        for s in range(100)
        if 0 in next(ShuffleSplit(1, test_size=0.25, random_state=s).split(Z))[1]
    )
    clf = tiny(validation_fraction=0.25)
    clf.label_names_ = np.array(NAMES, dtype=object)
    with pytest.raises(ValueError, match="leaves label 'Nodule' with no positive"):
        clf._validation_split(Z, seed)


def test_nullable_and_object_columns():
    from skdiffmic._targets import check_multilabel

    frame = pd.DataFrame(
        {"a": pd.array([1, 0, None, 1], dtype="Int64"), "b": [0, 1, 1, None]}
    )
    Y, _ = check_multilabel(frame, 4)  # pd.NA and None: unknown entries
    np.testing.assert_array_equal(Y, [[1, 0], [0, 1], [np.nan, 1], [1, np.nan]])
    with pytest.raises(ValueError, match="strings or other objects"):
        check_multilabel(np.array([["0", "1"], ["1", "0"]]), 2)
    Y, names = check_multilabel(pd.DataFrame({"x": [True, False], "y": [0, 1]}), 2)
    assert Y.tolist() == [[1, 0], [0, 1]] and list(names) == ["x", "y"]


def test_a_saturated_prior_keeps_a_finite_correctable_logit():
    # A float32 sigmoid of a logit above ~17 is exactly 1.
    prior = torch.tensor([[1.0, 0.0, 0.5]], dtype=torch.float32)
    out = torch.tensor([[-40.0, 40.0, 0.0]])
    y0 = logit_residual_y0(prior, out, multilabel=True)
    assert torch.isfinite(y0).all() and y0[0, 0] < 0.5 and y0[0, 1] > 0.5
    loss = NoiseSchedule.create("linear", 10).training_loss(
        out,
        torch.tensor([[0.0, 1.0, 1.0]]),
        prior,
        torch.tensor([1]),
        torch.zeros(1, 3),
        "logit_residual",
        multilabel=True,
    )
    assert torch.isfinite(loss).all()


def test_positive_weights_and_balanced_sampling_weights():
    Y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    np.testing.assert_allclose(positive_weights(Y, "balanced", None), [1 / 3, 3])
    np.testing.assert_allclose(
        positive_weights(Y, {"b": 5.0}, np.array(["a", "b"])), [1, 5]
    )
    np.testing.assert_allclose(positive_weights(Y, {0: 2.0}, None), [2, 1])
    assert positive_weights(Y, None, None) is None
    # Rows weigh their rarest label's inverse frequency; the unlabelled row
    # is a group of one.
    np.testing.assert_allclose(label_sample_weight(Y), [1 / 3, 1, 1, 1 / 3])


def test_class_weight_is_the_binary_cross_entropys_pos_weight():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = torch.tensor([3.0, 0.5])
    loss = classification_loss(logits, target, weight, multilabel=True)
    p = logits.sigmoid()
    by_hand = -(weight * target * p.log() + (1 - target) * (1 - p).log()).sum(1).mean()
    torch.testing.assert_close(loss, by_hand)


def test_logit_residual_corrects_each_labels_logit():
    prior = torch.tensor([[0.2, 0.9, 0.5]])
    np.testing.assert_allclose(
        logit_residual_y0(prior, torch.zeros(1, 3), multilabel=True), prior, atol=1e-6
    )
    out = torch.tensor([[1.0, -2.0, 0.0]], requires_grad=True)
    schedule = NoiseSchedule.create("linear", 10)
    y0 = torch.tensor([[1.0, 0.0, 1.0]])
    t = torch.tensor([3])
    loss = schedule.training_loss(
        out, y0, prior, t, torch.zeros(1, 3), "logit_residual", multilabel=True
    )
    assert loss.shape == (1, 3)
    loss.sum().backward()
    corrected = logit_residual_y0(prior, out.detach(), multilabel=True)
    # The gradient of each label's log-loss is sigmoid - y, as for the
    # single-label softmax.
    torch.testing.assert_close(out.grad, corrected - y0)


def test_chain_scores_round_trip_and_temperature():
    rng = np.random.default_rng(0)
    y0 = rng.uniform(0.05, 0.95, size=(50, 2, 3))
    scores = chain_scores(y0, "logit_residual", multilabel=True)
    np.testing.assert_allclose(chain_probabilities(scores, 1.0, True), y0)
    truth = (y0.mean(1) > 0.5).astype(int)
    # Probabilities on the right side of 1/2 but timid: a temperature below 1
    # sharpens them.
    assert fit_temperature(scores, truth, multilabel=True) < 1


def test_onnx_export_of_a_multilabel_model(tmp_path, data, fitted):
    pytest.importorskip("onnxruntime")
    from skdiffmic.export import OnnxClassifier, to_onnx

    X, _ = data
    to_onnx(fitted, tmp_path / "multi.onnx")
    onnx = OnnxClassifier(tmp_path / "multi.onnx")
    assert onnx.metadata_["multilabel"] and onnx.metadata_["label_names"] == NAMES
    np.testing.assert_allclose(
        onnx.predict_proba(X), fitted.predict_proba(X), atol=1e-4
    )
    np.testing.assert_array_equal(onnx.predict(X), fitted.predict(X))


def test_command_line_predicts_label_sets(tmp_path, data, fitted, capsys):
    from PIL import Image

    from skdiffmic.cli import main

    X, _ = data
    for i in range(4):
        Image.fromarray(X[i]).save(tmp_path / f"{i}.png")
    model = tmp_path / "multi.safetensors"
    fitted.save(model)
    out = tmp_path / "pred.csv"
    assert (
        main(["predict", str(model), str(tmp_path), "--out", str(out), "--quiet"]) == 0
    )
    table = pd.read_csv(out, keep_default_na=False).sort_values("path")
    assert [f"proba[{n}]" for n in NAMES] == list(table.columns[2:])
    expected = fitted.predict(np.stack([X[i] for i in range(4)]))
    assert list(table["prediction"]) == [
        "|".join(np.array(NAMES)[row == 1]) for row in expected
    ]
    assert main(["info", str(model)]) == 0
    assert (
        'labels (multi-label): ["Effusion", "Mass", "Nodule"]'
        in capsys.readouterr().out
    )


def test_imbalance_options_train_multilabel_models(data):
    """Every imbalance option takes its multi-label meaning and trains."""
    import skdiffmic._training as training

    X, Y = data
    drawn = []
    real = training.epoch_order

    def spy(n, batch_size, generator, sample_weight=None):
        drawn.append(sample_weight)
        return real(n, batch_size, generator, sample_weight)

    options = dict(class_weight="balanced", balanced_sampling=True)
    clf = tiny(max_epochs=1, **options)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "epoch_order", spy)
        clf.fit(X, Y)
    np.testing.assert_allclose(drawn[-1].numpy(), label_sample_weight(Y))
    assert clf.predict_proba(X[:4]).shape == (4, 3)
    cnn = TimmClassifier(
        "test_resnet", pretrained=False, max_epochs=1, batch_size=8, **options
    )
    assert cnn.fit(X, Y).predict(X[:4]).shape == (4, 3)


def _unknown(Y, fraction=0.3, seed=1):
    """``Y`` as floats with a ``fraction`` of its entries unknown (NaN), and
    the mask of those entries; the first six rows (both values of every
    label) stay known."""
    rng = np.random.default_rng(seed)
    mask = rng.random(Y.shape) < fraction
    mask[:6] = False
    return np.where(mask, np.nan, Y.astype(float)), mask


def test_unknown_entries_do_not_reach_the_classification_loss():
    rng = np.random.default_rng(0)
    Y = torch.as_tensor(rng.integers(0, 2, size=(16, 4)), dtype=torch.float32)
    mask = torch.as_tensor(rng.random((16, 4)) < 0.3)
    weight = torch.tensor([2.0, 0.5, 1.0, 3.0])
    logits = torch.randn(16, 4, requires_grad=True)
    nan_target = torch.where(mask, torch.nan, Y)
    loss = classification_loss(logits, nan_target, weight, multilabel=True)
    # The hidden values flipped under the same mask: the same loss.
    for hidden in (Y, 1 - Y, torch.full_like(Y, 1e6)):
        target = torch.where(mask, hidden, Y)
        again = classification_loss(
            logits, target, weight, multilabel=True, known=~mask
        )
        torch.testing.assert_close(again, loss)
    p = logits.sigmoid()
    by_hand = -(weight * Y * p.log() + (1 - Y) * (1 - p).log())
    torch.testing.assert_close(loss, torch.where(mask, 0.0, by_hand).sum(1).mean())
    loss.backward()
    assert torch.isfinite(loss)
    assert (logits.grad[mask] == 0).all() and (logits.grad[~mask] != 0).all()


def test_unknown_entries_leave_weights_and_scores_alone():
    from skdiffmic._targets import known_label_scores

    Y = np.array([[1, 0], [np.nan, 1], [0, np.nan], [1, 1], [0, 0]])
    # Label 0: 2 positives of 4 known rows; label 1: 2 of 4.
    np.testing.assert_allclose(positive_weights(Y, "balanced", None), [1.0, 1.0])
    # Known positives only: label 0 in rows 0 and 3, label 1 in rows 1 and 3.
    np.testing.assert_allclose(label_sample_weight(Y), [0.5, 0.5, 0.5, 0.5, 0.5])
    pred = np.array([[1, 1], [0, 1], [1, 0], [1, 0], [0, 0]])
    scores = known_label_scores(Y, pred)
    # Rows right on every known label: 1 and 4 (row 2's known label 0 is
    # wrong, its unknown label 1 does not count).
    assert scores["accuracy"] == pytest.approx(2 / 5)
    # Label 0: tp 2, fp 1, fn 0 -> 0.8; label 1: tp 1, fp 1, fn 1 -> 0.5.
    assert scores["macro_f1"] == pytest.approx(0.65)
    truth = np.where(np.isnan(Y), 0, Y)
    y0 = np.random.default_rng(0).normal(size=(5, 3, 2))
    # The temperature fit reads the known entries only: filling the unknown
    # ones with 0 (as absent) changes it.
    t = fit_temperature(y0, Y, multilabel=True)
    assert np.isfinite(t)
    assert t != fit_temperature(y0, truth, multilabel=True)


def test_the_hidden_values_of_unknown_entries_change_nothing_in_a_fit(
    data, monkeypatch
):
    """Both stages' losses, the MMD term, the weights, the validation scores
    and the temperature read an unknown entry only through ``known_entries``.
    Filling its hidden value with 1 instead of 0 (flipping it) must give the
    same fit, bit for bit."""
    import skdiffmic._losses
    import skdiffmic._sampling
    import skdiffmic._targets
    import skdiffmic._training

    X, Y = data
    frame = pd.DataFrame(_unknown(Y)[0], columns=NAMES)
    kw = dict(validation_fraction=0.25, class_weight="balanced", balanced_sampling=True)
    as_zeros = tiny(**kw).fit(X, frame)

    original, calls = skdiffmic._targets.known_entries, []

    def as_ones(Y):
        filled, known = original(Y)
        calls.append(bool((~known).any()))
        if isinstance(filled, torch.Tensor):
            return torch.where(known, filled, torch.ones_like(filled)), known
        return np.where(known, filled, 1.0), known

    for module in (
        skdiffmic._targets,
        skdiffmic._losses,
        skdiffmic._training,
        skdiffmic._sampling,
    ):
        monkeypatch.setattr(module, "known_entries", as_ones)
    flipped = tiny(**kw).fit(X, frame)
    assert sum(calls) > 10  # the flipped fill was read, by every step

    def losses(model):
        return [{k: v for k, v in h.items() if k != "time"} for h in model.history_]

    assert losses(flipped) == losses(as_zeros)
    assert flipped.temperature_ == as_zeros.temperature_
    np.testing.assert_array_equal(flipped.predict_proba(X), as_zeros.predict_proba(X))


@pytest.mark.parametrize("estimator", ["diffmic", "cnn"])
def test_both_estimators_train_with_a_third_of_the_labels_unknown(data, estimator):
    X, Y = data
    Y_unknown, mask = _unknown(Y)
    assert 0.2 < mask.mean() < 0.35
    options = dict(class_weight="balanced", balanced_sampling=True)
    if estimator == "diffmic":
        clf = tiny(validation_fraction=0.25, **options)
    else:
        clf = TimmClassifier(
            "test_resnet", pretrained=False, max_epochs=2, batch_size=8, **options
        )
    clf.fit(X, pd.DataFrame(Y_unknown, columns=NAMES))
    # A NaN that reached a loss, a weight or a score would make it NaN.
    for record in clf.history_:
        assert all(np.isfinite(v) for v in record.values() if isinstance(v, float))
    if estimator == "diffmic":
        assert "val_macro_f1" in clf.history_[-1] and np.isfinite(clf.temperature_)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    # Scored on the known entries of each label.
    aucs = [roc_auc_score(Y[~mask[:, j], j], proba[~mask[:, j], j]) for j in range(3)]
    assert np.isfinite(np.mean(aucs))
