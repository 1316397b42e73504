"""The generator's forward+backward as one CUDA graph (`train.cuda_graph: on`).

`graph_generator(G, sample_lr, amp_dtype)` captures G with `torch.cuda.make_graphed_callables`: the
forward replays as one graph inside one autograd node whose backward replays the backward graph, so
the trainer's step reads as before (loss, `backward()`, an eager optimizer step on the same parameter
storage). What the capture fixes, and how this module holds the caller to it:
- the LR batch's shape, dtype and device (`sample_lr`): `GraphedForward` refuses any other batch with a
  `GraphShapeError` instead of recapturing (the training loader drops the last partial batch, so every
  training batch has the captured shape);
- autocast: captured under `torch.autocast(dtype=amp_dtype, cache_enabled=False)` (make_graphed_callables
  refuses the autocast weight cache: its casts are freed when autocast exits, while the graph reads them);
- requires_grad: the LR input does not require grad, G's parameters do (as in training);
- training mode with grad enabled. Anything else (eval mode, `torch.no_grad()`) runs G's eager forward:
  make_graphed_callables itself falls back only on a training-mode mismatch (torch/cuda/graphs.py,
  `new_fwd`, line 1581 in torch 2.14: `if func.training == graph_training_state`), and a no-grad
  replay would return a view of the graph's static output that the next replay overwrites.
The graph's outputs and parameter gradients live in static buffers: `sr` and `p.grad` are overwritten by
the next G step, which the trainer never reads across steps. G must be graphed before it is wrapped in
DistributedDataParallel (DDP's hooks on the parameters' gradient accumulators then fire after the
backward graph's replay, all buckets at once). A copy of a graphed G (`copy.deepcopy`, e.g. the EMA)
is an eager G.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import nn


class GraphShapeError(RuntimeError):
    """A batch whose shape, dtype or device differs from the one G's CUDA graph was captured for."""


class GraphedForward:
    """G's `forward` after capture: the graphed callable for a training-mode, grad-enabled call on a
    batch like the captured one, G's eager forward in eval mode or without grad, an error otherwise."""

    def __init__(self, module: nn.Module, graphed, eager, sample: torch.Tensor):
        self.module, self.graphed, self.eager = module, graphed, eager
        self.shape, self.dtype, self.device = tuple(sample.shape), sample.dtype, sample.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.module.training and torch.is_grad_enabled()):
            return self.eager(x)
        if tuple(x.shape) != self.shape or x.dtype != self.dtype or x.device != self.device:
            raise GraphShapeError(
                f"train.cuda_graph=on: the generator was captured for LR batches {list(self.shape)} {self.dtype} "
                f"on {self.device}, got {list(x.shape)} {x.dtype} on {x.device}; every training batch must have "
                "the shape (data.batch_size, C, crop/scale, crop/scale); set train.cuda_graph=off for other shapes")
        return self.graphed(x)

    def __deepcopy__(self, memo):
        """The copy of G that `memo` holds gets its class's (eager) forward: the graph belongs to G."""
        twin = memo.get(id(self.module))
        if twin is None:
            raise TypeError("a graphed forward is copied only with its module (copy.deepcopy(G))")
        return types.MethodType(type(twin).forward, twin)


def is_graphed(module: nn.Module) -> bool:
    return isinstance(module.__dict__.get("forward"), GraphedForward)


def graph_generator(G: nn.Module, sample_lr: torch.Tensor, amp_dtype: torch.dtype | None) -> nn.Module:
    """Capture G's training forward+backward for batches like `sample_lr` (on G's CUDA device, not
    requiring grad) under autocast to `amp_dtype` (None: fp32); returns G itself, its state dict and
    parameters unchanged. make_graphed_callables runs its own warm-up iterations on a side stream before
    capturing. The caller checks the device (`builders.resolve_cuda_graph`)."""
    if sample_lr.requires_grad:
        raise ValueError("graph_generator: the sample LR batch must not require grad (training batches do not)")
    G.train()
    autocast = (torch.autocast("cuda", dtype=amp_dtype, cache_enabled=False) if amp_dtype is not None
                else contextlib.nullcontext())
    with torch.enable_grad(), autocast:
        torch.cuda.make_graphed_callables(G, (sample_lr,))
    graphed = G.__dict__.pop("forward")  # make_graphed_callables' new_fwd, replaced by the guarded one
    G.forward = GraphedForward(G, graphed, types.MethodType(type(G).forward, G), sample_lr)
    return G
