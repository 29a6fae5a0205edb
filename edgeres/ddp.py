"""`edgeres optimize` under ``torchrun --nproc-per-node N``: the fine-tuning runs with DistributedDataParallel on every
rank (the same :func:`edgeres.train.loop.fit` as ``edgeres train``); every other stage runs on rank 0 only.

This module is the messaging only (edgeres.pipeline.Pipeline._follow is what the other ranks do). Rank 0 runs the
pipeline. When its prune stage is about to fine-tune, it broadcasts the job (the prune and fine-tune
configs, with the ratio already resolved, e.g. by the latency search) and every other rank prunes the same model the
same way (same file, same seed, same data) and joins the fine-tuning; ranks > 0 write nothing. When the pipeline has
no fine-tuning to share (pruning off, the stage reused from an earlier run, or a failure), rank 0 broadcasts "no job"
on its way out and the other ranks exit.
"""

from __future__ import annotations

import datetime
import os

_state = {"sent": False, "owns": False}
TIMEOUT = datetime.timedelta(hours=6)  # rank 0 measures and exports before the fine-tuning: the others wait that long


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    return world() > 1


def init() -> None:
    """Join the process group (gloo on CPU, NCCL on GPU) unless already in one."""
    import torch
    import torch.distributed as dist

    if not active() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)
    _state["owns"] = True


def send_job(job) -> None:
    """Rank 0: hand the other ranks their job (or None: nothing to do). Once per run; a no-op without torchrun."""
    if not active() or rank() != 0 or _state["sent"]:
        return
    import torch.distributed as dist

    init()
    dist.broadcast_object_list([job], src=0)
    _state["sent"] = True


def recv_job():
    import torch.distributed as dist

    init()
    box = [None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def finish() -> None:
    """Release the other ranks if no job was sent, and leave the process group this module joined."""
    if not active():
        return
    import torch.distributed as dist

    try:
        send_job(None)
    finally:
        if _state["owns"] and dist.is_initialized():
            dist.destroy_process_group()
        _state.update(sent=False, owns=False)
