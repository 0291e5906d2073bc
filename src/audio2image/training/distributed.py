"""Several processes for one run (`torchrun --nproc_per_node N -m audio2image transfer ...`): DDP.

Every process reads its share of each batch; gradients are averaged by DistributedDataParallel; process 0 writes
the run's files. Without torchrun these functions are no-ops, so single-process code needs no branches.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> None:
    if launched() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not (dist.is_available() and dist.is_initialized()):
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def broadcast_object(value):
    """Process 0's value on every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def agreed_stop(requested: bool, main_can_stop: bool, device: torch.device) -> bool:
    """Whether every process stops now (SIGTERM: training/preemption.py): some process was asked to (the signal
    may reach one before another, or only one) and process 0, which writes the checkpoint, can. Every process
    must ask at the same points: under DDP this is one all-reduce of two numbers; alone, no communication."""
    if not (dist.is_available() and dist.is_initialized()):
        return requested and main_can_stop
    votes = torch.tensor([float(requested), float(main_can_stop) if is_main() else 0.0], device=device)
    dist.all_reduce(votes)  # summed: how many were asked, and process 0's answer
    return bool(votes[0] > 0 and votes[1] > 0)
