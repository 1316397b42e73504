"""RRDBNet with the fused RRDB trunk (`fused=True` / `set_fused`) against the reference trunk."""

import pytest
import torch

from conftest import requires_cuda

from gansr_ext.models import RRDBNet
from gansr_ext.ops import rrdb_trunk


def grads_of(model, x, g):
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.backward(g)
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("scale,nf,gc,shape,layout", [(4, 16, 8, (2, 3, 5, 6), torch.contiguous_format),
                                                       (2, 8, 4, (1, 3, 6, 4), torch.channels_last)])
def test_fused_rrdbnet_equals_reference_outputs_and_all_param_grads(scale, nf, gc, shape, layout, fresh_seed):
    model = RRDBNet(scale=scale, nf=nf, nb=2, gc=gc).double().to(memory_format=layout)
    with torch.no_grad():  # BasicSR's 0.1-scaled init makes the trunk nearly the identity: perturb it
        for p in model.body.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(*shape, dtype=torch.float64)
    g = torch.randn(shape[0], 3, shape[2] * scale, shape[3] * scale, dtype=torch.float64)
    out_r, grads_r = grads_of(model, x, g)
    model.set_fused(True)
    assert model.fused
    out_f, grads_f = grads_of(model, x, g)
    torch.testing.assert_close(out_f, out_r, atol=1e-11, rtol=1e-10)
    assert grads_f.keys() == grads_r.keys()
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], atol=1e-11, rtol=1e-10, msg=name)


def test_fused_flag_keeps_parameter_names_and_checkpoints():
    ref = RRDBNet(nf=8, nb=1, gc=4)
    fused = RRDBNet(nf=8, nb=1, gc=4, fused=True)
    assert fused.fused and list(fused.state_dict()) == list(ref.state_dict())
    fused.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref(x), atol=1e-5, rtol=1e-5)
    assert list(fused.set_fused(False).state_dict()) == list(ref.state_dict())


def test_cutlass_option_reaches_the_trunk_and_keeps_checkpoints():
    """RRDBNet(cutlass=...) runs its fused trunk with that option (on the CPU: the CUTLASS-shaped
    path, emulated), equal to the reference; the state_dict is the same either way."""
    torch.manual_seed(19)
    ref = RRDBNet(nf=8, nb=2, gc=4).double()
    model = RRDBNet(nf=8, nb=2, gc=4, fused=True, cutlass="all").double()
    assert model.cutlass == "all" and list(model.state_dict()) == list(ref.state_dict())
    model.load_state_dict(ref.state_dict())
    x = torch.rand(1, 3, 5, 4, dtype=torch.float64)
    g = torch.randn(1, 3, 20, 16, dtype=torch.float64)
    for mode in ("all", "fwd", "bwd", "off"):
        model.cutlass = mode
        (out_f, grads_f), (out_r, grads_r) = grads_of(model, x, g), grads_of(ref, x, g)
        torch.testing.assert_close(out_f, out_r, atol=1e-11, rtol=1e-10)
        for name in grads_r:
            torch.testing.assert_close(grads_f[name], grads_r[name], atol=1e-11, rtol=1e-10, msg=name)
    with pytest.raises(ValueError, match="cutlass"):
        RRDBNet(nf=8, nb=1, gc=4, cutlass="yes")


def test_rrdb_trunk_rejects_a_body_that_is_not_made_of_rrdbs():
    with pytest.raises(TypeError, match="RRDB"):
        rrdb_trunk(torch.rand(1, 8, 4, 4), torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1)))


def _autocast_errors(device, dtype):
    """Relative errors (output, worst parameter grad) of RRDBNet under autocast, fused and eager, vs fp64."""
    torch.manual_seed(11)
    model = RRDBNet(nf=16, nb=2, gc=8).to(device)
    with torch.no_grad():
        for p in model.body.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = torch.rand(2, 3, 6, 5, device=device)
    g = torch.randn(2, 3, 24, 20, device=device)
    ref_out, ref_grads = grads_of(model.double(), x.double(), g.double())
    model.float()
    errs = {}
    for fused in (False, True):
        model.set_fused(fused)
        with torch.autocast(device, dtype=dtype):
            out, grads = grads_of(model, x, g)
        errs[fused] = ((out.double() - ref_out).abs().max().item() / ref_out.abs().max().item(),
                       max(((grads[n].double() - r).abs().max() / r.abs().max()).item() for n, r in ref_grads.items()))
    return errs


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_fused_rrdbnet_under_autocast_bf16_is_as_accurate_as_eager(device):
    errs = _autocast_errors(device, torch.bfloat16)
    assert errs[True][0] <= 1.5 * errs[False][0] + 2e-3, errs
    assert errs[True][1] <= 1.5 * errs[False][1] + 2e-2, errs
