import os

import pytest
import torch

# 2-core CI machine: keep intra-op threads at the core count
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


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
