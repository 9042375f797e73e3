"""Cross-validation and grid search on a Dask cluster, one fit per worker.

scikit-learn spreads the fits of ``GridSearchCV``, ``cross_validate`` and
``cross_val_score`` with joblib; joblib's ``"dask"`` backend sends them to a
``dask.distributed`` cluster. This module starts such a cluster on one machine
with the right shape for training networks:

* one worker process per GPU, each seeing only its own card
  (``CUDA_VISIBLE_DEVICES``), so that ``device="auto"`` picks it;
* each worker runs one fit at a time, and its torch uses its share of the CPU
  cores (no oversubscription);
* each worker advertises a ``GPU`` resource, so that
  ``parallel_backend("dask", resources={"GPU": 1})`` never puts two fits on
  one card, on this cluster or on a real one started the same way.

Example::

    from sklearn.model_selection import GridSearchCV
    from skdiffmic import DiffMICClassifier
    from skdiffmic.parallel import gpu_backend, local_cluster

    with local_cluster() as cluster, gpu_backend(cluster.get_client()):
        search = GridSearchCV(DiffMICClassifier(), grid, n_jobs=-1)
        search.fit(paths, y)

On a real cluster, start one ``dask worker`` per GPU with the same settings
(see :func:`worker_command`) and connect with ``Client("tcp://host:8786")``.
Pass images as file paths on storage every worker can read: a path list is
a few kilobytes to send, where arrays would be copied to every worker.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["local_cluster", "gpu_backend", "worker_command", "visible_gpus"]


def _require_distributed():
    try:
        import distributed
    except ImportError:  # pragma: no cover - exercised without the extra
        raise ImportError(
            'skdiffmic.parallel needs dask.distributed: pip install "skdiffmic[dask]"'
        ) from None
    return distributed


def visible_gpus() -> list[str]:
    """Identifiers of the CUDA devices this process may use.

    The entries of ``CUDA_VISIBLE_DEVICES`` when it is set (indices or UUIDs),
    else ``"0"`` to ``"n-1"`` for the ``n`` devices torch sees; an empty list
    without CUDA.

    Returns
    -------
    gpus : list of str
        One identifier per usable GPU, suitable for ``CUDA_VISIBLE_DEVICES``.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    import torch

    if not torch.cuda.is_available():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def _thread_env(threads: int) -> dict[str, str]:
    """Environment limiting torch / BLAS / OpenMP to ``threads`` threads."""
    value = str(threads)
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
    }


def local_cluster(
    n_workers=None,
    *,
    gpus="auto",
    gpus_per_worker=1,
    threads_per_worker=None,
    memory_limit="auto",
    host="127.0.0.1",
    dashboard_address=None,
):
    """Start a Dask cluster on this machine shaped for training networks.

    Each worker is a separate process (a ``Nanny``) that runs one task at a
    time, with torch limited to ``threads_per_worker`` CPU threads and, with
    GPUs, exactly one GPU visible. Use it as a context manager, or call
    ``close()`` when done.

    Parameters
    ----------
    n_workers : int or None, default=None
        Number of worker processes. ``None``: one per GPU, or, without GPUs,
        one per two CPU cores.
    gpus : "auto", list of str or int, or None, default="auto"
        GPUs to hand out, ``gpus_per_worker`` per worker in turn: ``"auto"``
        uses :func:`visible_gpus`; a list gives their
        ``CUDA_VISIBLE_DEVICES`` identifiers; ``None`` or ``[]`` starts
        CPU-only workers (which see no GPU).
    gpus_per_worker : int, default=1
        GPUs each worker sees and advertises (``GPU=k``). With ``k > 1``
        each fit of the worker is one ``k``-GPU fit: give the estimator
        ``device=["cuda:0", ..., "cuda:<k-1>"]`` and the backend
        ``gpu_backend(client, gpus_per_fit=k)``. Workers are started as
        non-daemonic processes, so that such a fit may start its own worker
        processes; closing the cluster stops them.
    threads_per_worker : int or None, default=None
        CPU threads of each worker's torch (and OpenMP / BLAS). ``None``
        divides the machine's cores evenly among the workers.
    memory_limit : str, float or int, default="auto"
        Memory limit of each worker, as for ``dask.distributed``.
    host : str, default="127.0.0.1"
        Address the scheduler and workers listen on: loopback by default, so
        nothing is reachable from other machines.
    dashboard_address : str or None, default=None
        Address of the Dask dashboard (needs ``bokeh``), e.g. ``":8787"``;
        ``None`` starts none.

    Returns
    -------
    cluster : distributed.SpecCluster
        The running cluster; ``cluster.get_client()`` or
        ``distributed.Client(cluster)`` connects to it.
    """
    distributed = _require_distributed()
    if gpus == "auto":
        gpus = visible_gpus()
    gpus = [str(g) for g in (gpus or [])]
    n_cpus = os.cpu_count() or 1
    if not isinstance(gpus_per_worker, int) or gpus_per_worker < 1:
        raise ValueError(
            f"gpus_per_worker must be a positive int; got {gpus_per_worker!r}."
        )
    if len(gpus) % gpus_per_worker:
        raise ValueError(
            f"{len(gpus)} GPUs do not split into workers of {gpus_per_worker}."
        )
    groups = [
        ",".join(gpus[i : i + gpus_per_worker])
        for i in range(0, len(gpus), gpus_per_worker)
    ]
    if n_workers is None:
        n_workers = len(groups) or max(1, n_cpus // 2)
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive int; got {n_workers!r}.")
    if threads_per_worker is None:
        threads_per_worker = max(1, n_cpus // n_workers)
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise ValueError(
            f"threads_per_worker must be a positive int; got {threads_per_worker!r}."
        )

    workers = _worker_specs(
        distributed.Nanny,
        n_workers,
        groups,
        threads_per_worker,
        memory_limit,
        host,
        gpus_per_worker,
    )
    scheduler = {
        "cls": distributed.Scheduler,
        "options": {"host": host, "dashboard_address": dashboard_address},
    }
    import dask

    # A daemonic process may not start processes: a worker must not be one
    # for a fit with a list ``device`` to run on it. The nanny reads this
    # when it starts its worker, inside the constructor.
    with dask.config.set({"distributed.worker.daemon": False}):
        return distributed.SpecCluster(
            workers=workers, scheduler=scheduler, silence_logs=40, name="skdiffmic"
        )


def _worker_specs(nanny, n_workers, gpus, threads, memory_limit, host, per_worker=1):
    """``SpecCluster`` worker specs: one-task workers, the entries of ``gpus``
    (``CUDA_VISIBLE_DEVICES`` values of ``per_worker`` cards) handed out in
    turn."""
    workers = {}
    for i in range(n_workers):
        env = _thread_env(threads)
        # "" hides every GPU: a CPU worker must not grab a card.
        env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)] if gpus else ""
        workers[f"worker-{i}"] = {
            "cls": nanny,
            "options": {
                "nthreads": 1,  # one fit at a time; torch threads: env + preload
                "env": env,
                "memory_limit": memory_limit,
                "resources": {"GPU": per_worker} if gpus else {},
                "host": host,
                "preload": ["skdiffmic.parallel"],
                "silence_logs": 40,
            },
        }
    return workers


@contextmanager
def gpu_backend(client=None, gpus_per_fit="auto"):
    """joblib's Dask backend, each task holding ``gpus_per_fit`` GPU slots.

    Inside this context, ``GridSearchCV(..., n_jobs=-1)``, ``cross_validate``
    and every other joblib user send their tasks to the Dask cluster of
    ``client``, and the scheduler only runs a task on a worker with a free
    ``GPU`` resource (workers started by :func:`local_cluster` or
    :func:`worker_command` have one each), so no two fits share a card.

    Parameters
    ----------
    client : distributed.Client or None, default=None
        The client of the cluster; ``None`` uses the current default client.
    gpus_per_fit : "auto" or int, default="auto"
        GPU resource units each task needs. ``"auto"``: 1 when a worker of
        the cluster advertises a ``GPU`` resource, else 0 (no constraint: a
        task asking for a resource that no worker has would wait forever).

    Yields
    ------
    client : distributed.Client
        The client the tasks go to.
    """
    distributed = _require_distributed()
    from joblib import parallel_backend

    client = client if client is not None else distributed.get_client()
    if gpus_per_fit == "auto":
        workers = client.scheduler_info()["workers"].values()
        has_gpu = any(w.get("resources", {}).get("GPU") for w in workers)
        gpus_per_fit = 1 if has_gpu else 0
    if not isinstance(gpus_per_fit, int) or gpus_per_fit < 0:
        raise ValueError(
            f'gpus_per_fit must be "auto" or an int >= 0; got {gpus_per_fit!r}.'
        )
    kwargs = {"resources": {"GPU": gpus_per_fit}} if gpus_per_fit else {}
    with parallel_backend("dask", client=client, **kwargs):
        yield client


def worker_command(scheduler_address, gpu, threads):
    """The shell command that starts one GPU worker of a real cluster.

    Run it once per GPU on every machine (``gpu`` = the card's index there).
    Each worker then matches those of :func:`local_cluster`: one task at a
    time, one GPU visible and advertised as a ``GPU`` resource, torch limited
    to ``threads`` CPU threads.

    For workers that each run one fit on several GPUs, give ``gpu`` a list
    (``[0, 1, 2, 3]``): the worker sees those cards, advertises ``GPU=4``,
    and is not a daemon process, so that a fit with ``device=["cuda:0",
    ..., "cuda:3"]`` (and ``gpu_backend(client, gpus_per_fit=4)``) can start
    its worker processes there.

    Parameters
    ----------
    scheduler_address : str
        The scheduler, e.g. ``"tcp://10.0.0.1:8786"`` (``dask scheduler``
        prints it).
    gpu : int, str or list of them
        The GPU's (or GPUs') ``CUDA_VISIBLE_DEVICES`` identifier on that
        machine.
    threads : int
        CPU threads for the worker's torch: the machine's cores divided by
        its number of GPUs (times the GPUs of the worker).

    Returns
    -------
    command : str
        A ``dask worker`` command line with its environment.
    """
    cards = [str(g) for g in gpu] if isinstance(gpu, (list, tuple)) else [str(gpu)]
    env = _thread_env(int(threads))
    env["CUDA_VISIBLE_DEVICES"] = ",".join(cards)
    if len(cards) > 1:
        env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    prefix = " ".join(f"{k}={v}" for k, v in env.items())
    return (
        f"{prefix} dask worker {scheduler_address} --nworkers 1 --nthreads 1 "
        f"--resources GPU={len(cards)} --preload skdiffmic.parallel"
    )


def dask_setup(worker):  # noqa: ARG001 - the signature Dask preloads call
    """Dask preload hook: limit torch to the worker's ``OMP_NUM_THREADS``.

    Workers started with ``--preload skdiffmic.parallel`` (as
    :func:`local_cluster` and :func:`worker_command` do) call it at start-up.
    torch may already have been imported by then with another thread count,
    so the environment alone is not enough.
    """
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        import torch

        torch.set_num_threads(int(threads))
