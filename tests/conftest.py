import os

import pytest
import torch

# 2-core CI machine: keep intra-op threads at the core count
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

_NO_CUDA = "no CUDA GPU on this machine"
# Skips without a GPU; every test carrying it also gets the `cuda` marker (hook below), so GPU runs
# select them with `-m cuda` (or `-k cuda`: marker names are keywords too).
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=_NO_CUDA)
CUDA = [pytest.mark.cuda, requires_cuda]
# One test body per property, run on each device (torchvision's test_ops.py): ids `[cpu]`, `[cuda]`.
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def device_dtype_params(table):
    """The (device, dtype) keys of a tolerance table as parameters `[cpu-float64]`, `[cuda-float32]`..."""
    return [pytest.param(d, t, marks=CUDA if d == "cuda" else (), id=f"{d}-{str(t)[6:]}") for d, t in table]


def pytest_collection_modifyitems(items):
    for item in items:
        if any(m.kwargs.get("reason") == _NO_CUDA for m in item.iter_markers("skipif")):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture
def poison():
    """Make every gansr op fill its outputs with NaN before kernels write them."""
    from gansr_ext._ext import require_extension

    C = require_extension()
    C.set_poison(True)
    yield
    C.set_poison(False)


@pytest.fixture
def fresh_seed():
    """A fresh random seed each run (printed for reproduction)."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    torch.manual_seed(seed)
    return seed
