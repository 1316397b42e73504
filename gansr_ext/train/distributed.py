"""Multi-process training helpers (torchrun / torch.distributed), all no-ops in a single process.

Launch: `torchrun --nproc_per_node N -m gansr_ext.cli train CONFIG` (multi-node: add `--nnodes`,
`--node_rank`, `--rdzv_endpoint`). NCCL on CUDA, gloo on CPU.

The generator is wrapped in DistributedDataParallel. The discriminator is not: its step runs
several forwards (real, fake, penalty interpolates) and a double backward for the gradient
penalty, which DDP's reducer does not support; its gradients are averaged explicitly
(`average_gradients`) and its buffers (BatchNorm statistics) broadcast from rank 0.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(backend: str = "auto", device_type: str = "cpu") -> bool:
    """Join the process group described by torchrun's environment; False when not launched so."""
    if is_dist():
        return True
    if not launched_by_torchrun():
        return False
    if backend == "auto":
        backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)
    return True


def local_device(device_type: str) -> torch.device:
    if device_type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if is_dist() else torch.cuda.current_device())
    return torch.device("cpu")


def wrap_ddp(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    """`model` in DistributedDataParallel when world > 1 (which broadcasts rank 0's weights), else itself."""
    if world <= 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or `model`)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_true(flag: bool, device: torch.device) -> bool:
    """True on every rank only if `flag` is True on every rank (so all ranks take the same branch)."""
    if not is_dist():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def average_gradients(module: torch.nn.Module) -> None:
    """All-reduce (mean) the gradients of `module` in one flat buffer."""
    if not is_dist():
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def broadcast_buffers(module: torch.nn.Module) -> None:
    if not is_dist():
        return
    for b in module.buffers():
        dist.broadcast(b, src=0)


def gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order (a one-element list without a process group)."""
    if not is_dist():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(Sampler[int]):
    """Per-epoch shuffled indices, sharded across ranks, that can start mid-epoch.

    Epoch e's order is `randperm(n)` from a generator seeded with `seed + e`, padded by wrapping to a
    multiple of the world size; rank r takes every world-th index from r (as DistributedSampler).
    `set_position(epoch, start)` makes the next iteration skip the first `start` indices of this
    rank's share, which is how a resumed run continues from the exact sample it stopped at.
    """

    def __init__(self, n: int, seed: int = 0, num_replicas: int | None = None, rank_: int | None = None):
        if n < 1:
            raise ValueError("ResumableSampler: the dataset is empty")
        self.n, self.seed = n, seed
        self.num_replicas = world_size() if num_replicas is None else num_replicas
        self.rank = rank() if rank_ is None else rank_
        self.per_rank = math.ceil(n / self.num_replicas)
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank * self.num_replicas
        order = (order * math.ceil(total / self.n))[:total]
        mine = order[self.rank:total:self.num_replicas]
        return iter(mine[self.start:])
