"""`train.cuda_graph`: the config key, its device check, and the graphed generator's shape/state handling.

No GPU here: `torch.cuda.make_graphed_callables` is replaced by `FakeGraphing`, which follows its
protocol (it sets `G.forward` to a callable that runs the "graph" in the captured training mode) and
records how it was called, while the "graph" is G's eager forward counted per call. These tests show
that the builder captures G with the loader's batch shape, under grad, in training mode, without the
autocast cache, before DDP wrapping, that the trainer's batches reach the graphed path and other shapes
are refused, that eval/no-grad calls and copies (the EMA) run eagerly with their own weights. They cannot
show that the capture works on a GPU, that replays match eager numerically, or the speed-up:
python/gpu_graph_check.py does (run by python/gpu_check.sh).
"""

import copy

import pytest
import torch

from gansr_ext.models import RRDBNet
from gansr_ext.train import builders, graphed
from gansr_ext.train.builders import resolve_cuda_graph
from gansr_ext.train.config import ConfigError, load_config
from gansr_ext.train.graphed import GraphedForward, GraphShapeError, graph_generator, is_graphed
from gansr_ext.train.trainer import Trainer
from test_train_helpers import TinyImages, one_thread, tiny_cfg  # noqa: F401


class FakeGraphing:
    """Stands in for torch.cuda.make_graphed_callables(module, sample_args) on the CPU."""

    def __init__(self):
        self.calls, self.replays = [], 0

    def __call__(self, module, sample_args):
        self.calls.append({
            "shape": tuple(sample_args[0].shape), "channels_last": sample_args[0].is_contiguous(
                memory_format=torch.channels_last) and not sample_args[0].is_contiguous(),
            "grad": torch.is_grad_enabled(), "training": module.training,
            "autocast_cache": torch.is_autocast_cache_enabled(), "autocast_dtype": torch.get_autocast_dtype("cuda"),
            "hooks": len(module._forward_hooks) + len(module._backward_hooks)})
        eager, mode = module.forward, module.training

        def new_fwd(x):  # torch's new_fwd: the graph in the captured mode, else the original forward
            if module.training == mode:
                self.replays += 1
            return eager(x)

        module.forward = new_fwd
        return module


@pytest.fixture
def fake_graphing(monkeypatch):
    fake = FakeGraphing()
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake)
    return fake


def tiny_g():
    return RRDBNet(nf=8, nb=1, gc=4)


# ---------------------------------------------------------------- config and device

@pytest.mark.parametrize("text,value", [("auto", "auto"), ("on", "on"), ("off", "off"), ("true", "on"),
                                        ("false", "off")])
def test_cuda_graph_key_parses_yaml_on_off(text, value):
    """YAML 1.1 reads a bare on/off (and true/false) as a boolean; the key takes them as on/off."""
    assert load_config(None, [f"train.cuda_graph={text}"])["train"]["cuda_graph"] == value


def test_cuda_graph_key_in_a_file_defaults_and_bad_values(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  cuda_graph: on\n")
    assert load_config(tmp_path / "a.yaml")["train"]["cuda_graph"] == "on"
    assert load_config(None)["train"]["cuda_graph"] == "auto"
    with pytest.raises(ConfigError, match="train.cuda_graph"):
        load_config(None, ["train.cuda_graph=always"])


def test_auto_is_off_on_every_device_and_on_needs_cuda():
    """auto stays off even on CUDA until the GPU check validates the graphed step (README)."""
    assert resolve_cuda_graph("auto", torch.device("cuda", 0)) is False
    assert resolve_cuda_graph("auto", torch.device("cpu")) is False
    assert resolve_cuda_graph("off", torch.device("cuda", 0)) is False
    assert resolve_cuda_graph("on", torch.device("cuda", 0)) is True
    with pytest.raises(ConfigError, match=r"train.cuda_graph=on needs a CUDA device.*cpu") as e:
        resolve_cuda_graph("on", torch.device("cpu"))
    assert "\n" not in str(e.value)


def test_on_with_a_cpu_run_is_a_config_error(tmp_path, fake_graphing):
    with pytest.raises(ConfigError, match="train.cuda_graph=on needs a CUDA device"):
        Trainer(tiny_cfg(tmp_path, "train.cuda_graph=on"), train_set=TinyImages(), val_set=None)
    assert not fake_graphing.calls


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_auto_and_off_leave_the_generator_eager(tmp_path, fake_graphing, mode):
    tr = Trainer(tiny_cfg(tmp_path, f"train.cuda_graph={mode}"), train_set=TinyImages(), val_set=None)
    tr.train(stop_at=2)
    assert not fake_graphing.calls and not is_graphed(tr.G) and "forward" not in vars(tr.G)


# ---------------------------------------------------------------- the guarded forward

@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # autocast("cuda") on this CPU machine
def test_graphed_forward_routes_by_mode_and_refuses_other_batches(fake_graphing):
    G = tiny_g().eval()  # graph_generator captures in training mode whatever mode G is in
    sample = torch.zeros(2, 3, 4, 4)
    x = torch.rand(2, 3, 4, 4)
    ref = G(x).detach()
    assert graph_generator(G, sample, torch.bfloat16) is G and is_graphed(G)
    (call,) = fake_graphing.calls
    assert call["training"] and call["grad"] and call["shape"] == (2, 3, 4, 4) and call["hooks"] == 0
    assert call["autocast_cache"] is False and call["autocast_dtype"] == torch.bfloat16
    assert list(G.state_dict()) == list(tiny_g().state_dict())  # checkpoints unchanged

    out = G(x)
    assert fake_graphing.replays == 1 and torch.equal(out.detach(), ref)
    for bad in (torch.rand(1, 3, 4, 4), torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4, dtype=torch.float64)):
        with pytest.raises(GraphShapeError, match=r"captured for LR batches \[2, 3, 4, 4\].*cuda_graph=off"):
            G(bad)
    assert fake_graphing.replays == 1  # nothing recaptured, nothing replayed

    with torch.no_grad():  # train mode without grad: eager, any shape (torch's new_fwd would replay)
        assert torch.equal(G(x), ref) and G(torch.rand(1, 3, 6, 6)).shape == (1, 3, 24, 24)
    G.eval()  # eval: eager, any shape
    assert G(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)
    assert fake_graphing.replays == 1


def test_a_copy_of_a_graphed_generator_is_eager_with_its_own_weights(fake_graphing):
    G = graph_generator(tiny_g(), torch.zeros(2, 3, 4, 4), None)
    twin = copy.deepcopy(G)
    assert not is_graphed(twin) and isinstance(vars(G)["forward"], GraphedForward)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    x = torch.rand(2, 3, 4, 4)
    assert not torch.equal(twin(x), G(x))  # the copy computes with its own weights ...
    assert torch.equal(twin(x), type(twin).forward(twin, x))  # ... eagerly, in training mode too
    assert fake_graphing.replays == 1  # only G's call replayed
    with pytest.raises(TypeError, match="copied only with its module"):
        copy.deepcopy(vars(G)["forward"])


def test_graph_generator_refuses_an_input_that_requires_grad(fake_graphing):
    with pytest.raises(ValueError, match="must not require grad"):
        graph_generator(tiny_g(), torch.zeros(2, 3, 4, 4, requires_grad=True), None)
    assert not fake_graphing.calls


# ---------------------------------------------------------------- wiring in the builder and trainer

def _graph_on_cpu(monkeypatch):
    """train.cuda_graph=on accepted on the CPU, so the builder's wiring runs with FakeGraphing."""
    monkeypatch.setattr(builders, "resolve_cuda_graph", lambda mode, device: mode == "on")


def test_the_trainer_graphs_g_for_its_batches_and_keeps_ema_and_validation_eager(tmp_path, monkeypatch,
                                                                               fake_graphing):
    """Sample shape = (batch_size, C, crop/scale, crop/scale) in the run's memory format: every training
    batch (7 images, batch 2: the loader drops the last one) replays; the EMA copy and validation do not."""
    _graph_on_cpu(monkeypatch)
    wrapped = []
    monkeypatch.setattr(builders.dist_utils, "wrap_ddp", lambda G, d, w: wrapped.append(is_graphed(G)) or G)
    cfg = tiny_cfg(tmp_path, "train.cuda_graph=on", "train.total_iters=5", "train.channels_last=true",
                   "checkpoint.every=0")
    tr = Trainer(cfg, train_set=TinyImages(n=7), val_set=TinyImages(n=1, size=32, crop=None),
                 metrics={"psnr": lambda sr, hr: 0.0})
    assert wrapped == [True]  # graphed before the DDP wrapper
    (call,) = fake_graphing.calls
    assert call["shape"] == (2, 3, 4, 4) and call["channels_last"]
    assert any("CUDA-graphed for LR batches [2, 3, 4, 4]" in n for n in tr.notes)
    assert not is_graphed(tr.ema.module)
    tr.train()
    assert tr.iteration == 5 and fake_graphing.replays == 5  # 3 batches per epoch, none partial


def test_a_batch_of_another_shape_stops_the_run_with_a_clear_error(tmp_path, monkeypatch, fake_graphing):
    _graph_on_cpu(monkeypatch)
    tr = Trainer(tiny_cfg(tmp_path, "train.cuda_graph=on"), train_set=TinyImages(crop=32), val_set=None)
    with pytest.raises(GraphShapeError, match=r"captured for LR batches \[2, 3, 4, 4\].* got \[2, 3, 8, 8\]"):
        tr.train(stop_at=1)
    assert fake_graphing.replays == 0
