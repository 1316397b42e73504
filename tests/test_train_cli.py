"""`gansr train CONFIG key=value ...` and `gansr train --resume RUN_DIR` end to end (sample images)."""

import json

from gansr_ext.cli import main
from test_train_helpers import one_thread  # noqa: F401

TINY = ["device=cpu", "model.generator.nb=1", "model.generator.nf=8", "model.generator.gc=4", "data.crop=16",
        "data.batch_size=2", "data.num_workers=0", "data.train.type=samples", "data.val.type=samples",
        "val.every=0", "val.metrics=[psnr]", "log.progress=false", "log.tensorboard=false", "checkpoint.every=2"]


def test_train_then_resume_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "exp"
    assert main(["train", "esrgan_psnr", *TINY, f"output_dir={tmp_path}", "name=exp", "train.total_iters=3"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 3
    assert main(["train", "--resume", str(run_dir), "train.total_iters=5"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 5 and summary["final_validation"]["psnr"] > 0
    log = (run_dir / "train.log").read_text()
    assert "resumed from" in log and "iter_00000003.pt" in log
    assert main(["train", "esrgan_psnr", "optim.g.lrx=1"]) == 2
    assert "unknown config key 'optim.g.lrx'" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
