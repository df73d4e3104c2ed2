"""Data-parallel training across processes: the process group's life cycle and a few collectives.

Processes are started by torch's own launcher, ``torchrun`` (``torch.distributed.run``), which
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each
one's environment. :func:`process_group` reads them and joins the group with the ``gloo``
backend on CPU or ``nccl`` on CUDA; without them (a plain ``stetho train``) everything here is
a no-op and ``world_size() == 1``, so single-process code paths need no special case.

The division of labour, used by :mod:`stetho.training.experiment` and :mod:`stetho.training.loop`:
every rank decodes the data and trains (PyTorch ``DistributedDataParallel`` averages the
gradients, a ``DistributedSampler`` gives each rank its share of every epoch); rank 0 alone
evaluates and writes artifacts, and the others wait at a :func:`barrier` and then read what
rank 0 wrote. The run folder must therefore be on a file system every node sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

#: How long a rank waits at a collective for the others: rank 0 evaluates and writes
#: while the others wait, so this bounds one fold's evaluation plus writing.
TIMEOUT = timedelta(minutes=60)


def env_world_size() -> int:
    """``WORLD_SIZE`` set by the launcher (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """``RANK`` set by the launcher (0 without one), readable before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def env_local_rank() -> int:
    """``LOCAL_RANK`` set by the launcher: this process's index on its node (0 without one)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    """Whether this process belongs to an initialised group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0, the process that evaluates and writes artifacts."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` for CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the launcher's process group for the duration of the block.

    A no-op when ``WORLD_SIZE`` is unset or 1, or when a group is already initialised (the
    caller owns it then). On CUDA each rank uses its own GPU, the one ``device`` names.
    """
    n = env_world_size()
    if n <= 1 or dist.is_initialized():
        yield
        return
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={n} but {', '.join(missing)} not set: start distributed runs with "
            "torchrun (torchrun --nproc_per_node=N -m stetho train ...) or stetho train --nproc N"
        )
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    logger.info(
        "rank %d of %d joined the process group (backend %s, device %s)",
        dist.get_rank(),
        dist.get_world_size(),
        backend,
        device,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def mean_across_ranks(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (``value`` itself when not distributed)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world_size()


def gather_ints(value: int, device: torch.device) -> list[int]:
    """``value`` from every rank, in rank order (``[value]`` when not distributed)."""
    if not is_distributed():
        return [value]
    t = torch.tensor([value], dtype=torch.int64, device=device)
    out = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [int(x.item()) for x in out]
