"""`torchrun --nproc-per-node 2 edgeres optimize`: the fine-tuning after pruning runs with DistributedDataParallel on
both (CPU, gloo) processes; every other stage runs on rank 0 only (edgeres.ddp)."""

import json
import os
import subprocess
import sys

from edgeres.models import load_model


def test_optimize_finetunes_with_ddp_on_two_cpu_processes(tmp_path, tiny_ckpt, demo_data):
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # what the `torchrun` script runs
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([*torchrun, "--standalone", "--nproc-per-node", "2", "-m", "edgeres", "optimize",
                           "--model", str(tiny_ckpt), "--data", str(demo_data), "--target", "x86-cpu",
                           "--prune", "0.3", "--finetune-epochs", "1", "--calib-size", "8", "--latency-min-time", "0.1",
                           "--no-memory", "--out", str(run)], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[:6000])
    # one report, written by rank 0; the fine-tuning log shows the shared (DDP) epoch
    assert proc.stdout.count("edgeres report:") == 1, proc.stdout[-2000:]
    stage = json.loads((run / "prune" / "stage.json").read_text())
    assert stage["status"] == "ok" and stage["info"]["finetune"]["epochs"] == 1
    assert (run / "prune" / "model.log.csv").exists()
    assert load_model(run / "prune" / "model.pt").meta.extra["val_top1"] is not None
    assert json.loads((run / "quantize" / "stage.json").read_text())["status"] == "ok"
    assert not list(tmp_path.glob("**/edgeres-rank1-*"))  # rank 1 wrote nothing that stays
