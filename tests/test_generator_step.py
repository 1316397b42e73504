"""A whole generator training step through the fused ops (RRDB trunk + L1 + FFT loss, forward and
backward): fused equals reference on CPU, and on a GPU the step captured in one CUDA graph replays
the eager result (issue 7: no host sync, no allocation outside PyTorch's caching allocator)."""

import torch

from conftest import requires_cuda
from gansr_ext.models import RRDBNet
from gansr_ext.ops import fft_loss


def _step(G, lr, hr, fused):
    sr = G(lr)
    loss = (sr - hr).abs().mean() + 0.3 * fft_loss(sr, hr.to(sr.dtype), fused=fused)
    loss.backward()
    return loss


def _grads(G):
    return {n: p.grad.detach().clone() for n, p in G.named_parameters()}


def test_generator_step_fused_equals_reference_cpu_fp64():
    # the CPU side of the property below: the step that the GPU test captures computes the reference
    torch.manual_seed(0)
    G = RRDBNet(nb=2, nf=16, gc=8).double()
    lr = torch.rand(2, 3, 9, 7, dtype=torch.float64)
    hr = torch.rand(2, 3, 36, 28, dtype=torch.float64)
    results = {}
    for fused in (False, True):
        G.zero_grad(set_to_none=True)
        G.set_fused(fused)
        results[fused] = (_step(G, lr, hr, fused), _grads(G))
    torch.testing.assert_close(results[True][0], results[False][0], rtol=1e-12, atol=1e-12)
    for name, g in results[False][1].items():
        torch.testing.assert_close(results[True][1][name], g, rtol=1e-9, atol=1e-12, msg=name)


@requires_cuda
def test_cuda_graph_whole_generator_step_replays_eager():
    torch.manual_seed(0)
    cl = torch.channels_last
    G = RRDBNet(nb=2, nf=32, gc=16).cuda().to(memory_format=cl).set_fused(True)
    static_lr = torch.rand(2, 3, 16, 16, device="cuda").contiguous(memory_format=cl)
    static_hr = torch.rand(2, 3, 64, 64, device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            return _step(G, static_lr, static_hr, True)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up outside the capture: cuFFT plans, cuDNN algorithms
        for _ in range(3):
            G.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(s)
    G.zero_grad(set_to_none=True)  # gradients are then allocated inside the graph's pool
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
    static_grads = {n: p.grad for n, p in G.named_parameters()}

    new_lr, new_hr = torch.rand_like(static_lr), torch.rand_like(static_hr)
    static_lr.copy_(new_lr)
    static_hr.copy_(new_hr)
    graph.replay()
    torch.cuda.synchronize()

    G.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        eager_loss = _step(G, new_lr.contiguous(memory_format=cl), new_hr, True)
    # same kernels on the same data; only the RRDB bias gradients' float atomics may reorder sums
    torch.testing.assert_close(static_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for name, p in G.named_parameters():
        scale = p.grad.abs().max().item() + 1e-12
        torch.testing.assert_close(static_grads[name] / scale, p.grad / scale, rtol=0, atol=1e-2, msg=name)
