"""One fit across several processes, on ``torch.distributed``.

Two ways in:

- ``device=["cuda:0", "cuda:1", ...]`` (or ``["cpu", "cpu"]``):
  :func:`fit_on_devices` starts one worker process per entry (gloo on the
  CPU, nccl on CUDA, on a free local port), each fitting a copy of the
  estimator on its own device; rank 0's fitted estimator comes back to the
  caller, which stays an ordinary single-process object.
- Under an external launcher (``torchrun``, or a cluster job that sets
  ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``):
  :func:`join_launched_group` joins that process group, and every rank's
  ``fit`` trains one model together.

Inside the group the training loops of both estimators call the helpers
below: each rank reads a disjoint share of every global batch
(:func:`shard_order`), gradients are averaged across ranks after each
backward pass (:func:`average_gradients`), BatchNorm statistics are averaged
after each epoch (:func:`average_buffers`), rank 0 validates and its decision
is broadcast (:func:`broadcast`), and rank 0 alone writes checkpoints
(:func:`is_main`). The weights therefore stay identical on every rank.

The gradients are averaged by one ``all_reduce`` of the flattened gradients
per step rather than by wrapping the networks in
``DistributedDataParallel``: DiffMIC's denoiser is run as separate calls
(``encode`` once, ``head`` once per prior path) that DDP's forward hook does
not see. The arithmetic is DDP's: the mean of the ranks' gradients.
"""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = [
    "average_buffers",
    "average_gradients",
    "broadcast",
    "epoch_generator",
    "fit_on_devices",
    "is_main",
    "join_launched_group",
    "mean_across",
    "shard_order",
    "world",
]

# How long a collective waits for a missing rank before failing: a rank that
# died mid-fit ends the others' fit with an error, not a hang.
TIMEOUT = timedelta(seconds=120)


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the current process group; ``(0, 1)``
    outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Whether this process writes (checkpoints) for the group: rank 0."""
    return world()[0] == 0


def shard_order(order: np.ndarray, batch_size: int):
    """This rank's share of an epoch's row order: ``(rows, batch size)``.

    The order is cut into global batches of ``batch_size``; rank ``r`` of
    ``w`` takes rows ``r, r + w, ...`` of each, the same number on every rank
    (``len(batch) // w``), so every rank takes the same number of steps. A
    last batch that would leave a rank fewer than 2 rows (BatchNorm cannot
    train on one) is dropped. Outside a group, ``(order, batch_size)``.
    """
    rank, size = world()
    if size == 1:
        return order, batch_size
    if batch_size < 2 * size:
        raise ValueError(
            f"batch_size={batch_size} is too small for {size} processes: each "
            f"needs at least 2 rows of every batch (batch_size >= {2 * size})."
        )
    parts = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        share = len(batch) // size
        if share < 2:
            break
        parts.append(batch[rank::size][:share])
    rows = np.concatenate(parts) if parts else order[:0]
    return rows, batch_size // size


def epoch_generator(generator: torch.Generator) -> torch.Generator:
    """The generator of an epoch's per-step draws (augmentation, timesteps,
    noise). In one process, ``generator`` itself. In a group, a generator of
    this rank's own, seeded from one draw of the shared ``generator`` (the
    same draw on every rank, which keeps the ranks' shared streams, and so
    the epoch orders, in step) plus the rank: the ranks' rows get
    independent draws. These draws then depend on the number of ranks."""
    rank, size = world()
    if size == 1:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator().manual_seed(seed + rank)


def average_gradients(parameters) -> None:
    """Replace every gradient by its mean across the ranks (one all-reduce)."""
    if world()[1] == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world()[1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(*modules) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) of
    ``modules`` across the ranks, so that every rank predicts alike."""
    if world()[1] == 1:
        return
    buffers = [b for m in modules for b in m.buffers() if torch.is_floating_point(b)]
    if not buffers:
        return
    flat = torch.cat([b.reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= world()[1]
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def mean_across(values: dict, device) -> dict:
    """The mean of each number of ``values`` across the ranks (epoch losses)."""
    if world()[1] == 1 or not values:
        return values
    keys = sorted(values)
    flat = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    flat = flat.to(device)
    dist.all_reduce(flat)
    flat /= world()[1]
    return dict(zip(keys, flat.cpu().tolist()))


def broadcast(value):
    """Rank 0's ``value`` on every rank (a picklable object)."""
    if world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------ launching --
def device_list(device) -> list[str] | None:
    """The entries of a list-valued ``device`` parameter, checked; None for a
    single device."""
    if isinstance(device, str):
        return None
    devices = list(device)
    if not devices or not all(isinstance(d, str) for d in devices):
        raise ValueError(
            f"device must be a string or a non-empty list of strings; got {device!r}."
        )
    kinds = {torch.device(d).type for d in devices}
    if len(kinds) > 1 or not kinds <= {"cpu", "cuda"}:
        raise ValueError(
            f"device={devices!r}: a distributed fit runs on CPU processes or on "
            "CUDA devices, not a mix."
        )
    if kinds == {"cuda"}:
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={devices!r} was requested but CUDA is not available."
            )
        if len(set(devices)) < len(devices):
            raise ValueError(f"device={devices!r} names a GPU twice.")
    return devices


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _started(directory, rank: int) -> Path:
    """The file a worker touches first, in the fit's temporary directory: a
    worker that died without it never got past re-importing the main
    module."""
    return Path(directory, f"started-{rank}")


def _worker(rank, payload: str, out: str, devices, port, threads):
    """One rank of :func:`fit_on_devices`: join the group, fit, and (rank 0)
    write the fitted estimator."""
    _started(Path(out).parent, rank).touch()
    torch.set_num_threads(threads)
    backend = "nccl" if devices[0].startswith("cuda") else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=len(devices),
        timeout=TIMEOUT,
    )
    try:
        with open(payload, "rb") as f:
            estimator, X, y = pickle.load(f)
        if devices[rank].startswith("cuda"):
            torch.cuda.set_device(torch.device(devices[rank]))
        estimator.set_params(device=devices[rank])
        estimator.fit(X, y)
        if rank == 0:
            estimator.set_params(device=list(devices))
            with open(out, "wb") as f:
                pickle.dump(estimator, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _start_method() -> str:
    """``"forkserver"`` where the platform has it, else ``"spawn"``.

    A fork server is one process, started with the first distributed fit,
    that imports skdiffmic (torch, timm, scikit-learn: seconds) once and
    then forks each worker from that state, so later fits start their
    workers in a fraction of a second instead of re-importing everything in
    a fresh interpreter each; it never touches CUDA, so the forked workers
    can. It stays idle until the caller exits, as multiprocessing's
    resource tracker does. Windows has no fork server: its workers are
    spawned.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    multiprocessing.get_context("forkserver").set_forkserver_preload(["skdiffmic"])
    return "forkserver"


def fit_on_devices(estimator, X, y, devices):
    """Fit ``estimator`` with one process per entry of ``devices``; return the
    fitted rank-0 estimator (its ``device`` the list again).

    The workers are forked from a fork server that has imported skdiffmic
    (spawned where there is none, on Windows; :func:`_start_method`), and
    each re-imports the caller's main module, so a script that fits this way
    needs the usual ``if __name__ == "__main__":`` guard. A worker
    that raises, is killed or runs out of memory ends the fit with a
    ``RuntimeError`` naming its rank and device; the others are terminated.
    """
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    with tempfile.TemporaryDirectory(prefix="skdiffmic-ddp-") as tmp:
        payload, out = Path(tmp, "payload.pkl"), Path(tmp, "fitted.pkl")
        with open(payload, "wb") as f:
            pickle.dump((estimator, X, y), f)
        try:
            mp.start_processes(
                _worker,
                args=(str(payload), str(out), list(devices), _free_port(), threads),
                nprocs=len(devices),
                join=True,
                start_method=_start_method(),
            )
        except mp.ProcessRaisedException as exc:
            rank = exc.error_index
            cause = str(exc).strip().splitlines()[-1]
            raise RuntimeError(
                f"distributed fit: worker {rank} (device {devices[rank]!r}) failed: "
                f"{cause}"
            ) from exc
        except mp.ProcessExitedException as exc:
            rank = exc.error_index
            how = (
                f"was killed by {exc.signal_name}"
                if exc.signal_name
                else f"exited with code {exc.exit_code}"
            )
            if not _started(tmp, rank).exists():
                raise RuntimeError(
                    f"distributed fit: worker {rank} (device {devices[rank]!r}) "
                    f"{how} before it started fitting: it failed while "
                    "re-importing the main module (its error is printed above). "
                    "A script that fits on several devices must keep its top "
                    'level under `if __name__ == "__main__":`.'
                ) from exc
            raise RuntimeError(
                f"distributed fit: worker {rank} (device {devices[rank]!r}) {how} "
                "(out of memory, or killed); the other workers were stopped."
            ) from exc
        with open(out, "rb") as f:
            return pickle.load(f)


def join_launched_group(device) -> bool:
    """Join the process group of an external launcher, if there is one.

    ``torchrun`` and cluster jobs set ``WORLD_SIZE`` (> 1), ``RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``: the group is then initialised from
    them (``env://``; nccl on CUDA, gloo on the CPU) unless the caller did it
    already. Returns whether this process trains in a group.
    """
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    return True


def launched_device(device: str) -> str:
    """A launched rank's device: with ``device="auto"`` or ``"cuda"`` and
    CUDA present, the GPU of its ``LOCAL_RANK``."""
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
