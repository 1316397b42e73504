import sys

import pytest
import torch

import gansr_ext
from gansr_ext import _ext


def test_build_info_reports_the_build():
    info = gansr_ext.build_info()
    assert set(info) >= {"version", "torch_version", "cuda", "cuda_version", "cuda_archs", "cufft", "cutlass"}
    assert info["version"] == gansr_ext.__version__
    assert info["torch_version"].split("+")[0] == torch.__version__.split("+")[0]
    if info["cuda"]:
        assert info["cufft"] and info["cuda_version"] and "90" in info["cuda_archs"]
    else:
        assert not info["cufft"] and not info["cutlass"]


def test_cuda_kernels_compiled_when_torch_has_cuda():
    # CI installs the CUDA build of torch and has nvcc: the CUDA kernels must have been compiled
    from gansr_ext import _build_config

    if torch.version.cuda is None:
        pytest.skip("CPU-only torch: CUDA kernels are not built by design (GANSR_CUDA=auto)")
    assert _build_config.WITH_CUDA is True
    assert gansr_ext.build_info()["cuda"] is True
    # requirements-dev.txt installs nvidia-cutlass: the fused RRDB's CUTLASS kernels must be compiled too
    pytest.importorskip("cutlass_library", reason="nvidia-cutlass not installed")
    assert gansr_ext.build_info()["cutlass"] is True


def test_ops_registered():
    gansr_ext._ext.require_extension()
    assert hasattr(torch.ops.gansr, "fft_loss_fwd")
    assert hasattr(torch.ops.gansr, "fft_loss_bwd")


def test_mismatched_torch_is_a_clear_import_error(monkeypatch):
    cfg = sys.modules["gansr_ext._build_config"]
    monkeypatch.setattr(cfg, "TORCH_VERSION", "1.0.0+fake")
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "_load_error", None)
    with pytest.raises(ImportError, match="built against torch 1.0.0"):
        _ext._load()


def test_cpu_kernels_run_on_several_threads():
    """at::parallel_for (every CPU kernel's loop) is a header template: its OpenMP region is compiled
    into _C, so without -fopenmp in the build every CPU kernel silently ran on one thread."""
    _ext.require_extension()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _ext.require_extension().parallel_for_threads(64) == 2
    finally:
        torch.set_num_threads(before)
