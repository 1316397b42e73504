"""Launch economy of the fused RRDB's CUDA path, counted on the CPU proxy (python/bench_rrdb.py
`rrdb_launch_counts`: the CPU op, i.e. the sliced algorithm with the C++ twins of its kernels,
profiled; the table is bench/results/rrdb_launches_cpu.md). Each count is a GPU launch the CUDA
backend makes."""

import importlib.util
from pathlib import Path

import pytest

from gansr_ext._ext import require_extension


@pytest.fixture(scope="module")
def bench():
    require_extension()
    path = Path(__file__).resolve().parents[1] / "python" / "bench_rrdb.py"
    spec = importlib.util.spec_from_file_location("bench_rrdb", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rrdb_total(counts):
    total = {}
    for part in ("fwd", "bwd"):
        for c in [*counts[part]["blocks"], counts[part]["rrdb"]]:
            for k, v in c.items():
                total[k] = total.get(k, 0) + v
    return total


CUDNN_BLOCK_FWD = {"conv fprop": 5, "prefix copy": 4, "epilogue": 5}
# convs 1-4 and conv5 with the block's residual, one CUTLASS kernel each, no prefix copies; block 3's
# conv5 writes rdb3, and the RRDB's own residual (x0 + 0.2 rdb3: two sources, which the conv epilogue
# cannot take) is one elementwise kernel at the RRDB level
CUTLASS_BLOCK_FWD = {"cutlass conv": 5}
BLOCK_BWD = {"conv dgrad": 5, "conv wgrad": 5, "prefix copy": 4, "gather": 5}


# accumulating dgrad + wgrad on the prefixes: no copies, one gather per slice and the block input's
CUTLASS_BLOCK_BWD = {"cutlass dgrad": 5, "cutlass wgrad": 5, "gather": 5}


@pytest.mark.parametrize("cutlass_fwd,cutlass_bwd,total", [(False, False, 102), (True, False, 76), (True, True, 64)],
                         ids=["cudnn", "cutlass-fprop", "cutlass-fprop-dgrad-wgrad"])
def test_launches_per_dense_block_and_rrdb(bench, cutlass_fwd, cutlass_bwd, total):
    counts = bench.rrdb_launch_counts(nf=16, gc=8, shape=(1, 5, 4), cutlass_fwd=cutlass_fwd, cutlass_bwd=cutlass_bwd)
    fwd = CUTLASS_BLOCK_FWD if cutlass_fwd else CUDNN_BLOCK_FWD
    assert counts["fwd"]["blocks"] == [fwd] * 3
    assert counts["bwd"]["blocks"] == [CUTLASS_BLOCK_BWD if cutlass_bwd else BLOCK_BWD] * 3
    if cutlass_fwd and cutlass_bwd:  # issue 14's target: <= 20 per dense block fwd+bwd, no prefix copies
        assert sum(fwd.values()) + sum(CUTLASS_BLOCK_BWD.values()) == 20
    # per RRDB: x into the first buffer (fwd); the bias-gradient accumulator's fill and the first
    # gather (gradient of rdb3's output and of its conv5) (bwd)
    assert counts["fwd"]["rrdb"] == ({"other copy_": 1, "epilogue": 1} if cutlass_fwd else {"other copy_": 1})
    assert counts["bwd"]["rrdb"] == {"other zero_": 1, "gather": 1}
    assert sum(_rrdb_total(counts).values()) == total


def test_deterministic_bias_gradients_add_one_row_sum_per_gather(bench):
    counts = bench.rrdb_launch_counts(nf=16, gc=8, shape=(1, 5, 4), deterministic=True)
    # every gather with a bias gradient reduces its partial rows with one ATen sum (block 0's input
    # gather has none); deterministic mode also fills every fresh allocation (torch's
    # fill_uninitialized_memory): 11 glue allocations per block backward, 9 in block 0
    det = {**BLOCK_BWD, "other sum": 5, "other fill_": 11}
    assert counts["bwd"]["blocks"] == [det, det, {**det, "other sum": 4, "other fill_": 9}]
    assert counts["bwd"]["rrdb"] == {"other zero_": 1, "gather": 1, "other sum": 1, "other fill_": 4}
