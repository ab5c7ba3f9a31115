"""Beyond one CPU (train.py, tools.py): device choice, mixed precision, compilation, and several processes
under torchrun. What needs a GPU is checked by benchmarks/gpu_check.py where one exists; here every check
runs on the CPU (bfloat16 autocast, gloo)."""
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import runs
import tools
from config import TrainConfig, model_config
from train import Trainer

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(n_layer=1, d_model=32, n_head=2, block_size=32)


def run(tmp_path, name="run", **t):
    tcfg = TrainConfig(**{**dict(max_iters=30, eval_interval=15, eval_iters=2, batch_size=8, warmup_iters=0,
                                 sample_len=0), **t})
    return Trainer(model_config("gpt", **TINY), tcfg, tmp_path / name, progress=False, verbose=False).run()


def test_an_unavailable_device_is_refused_with_what_is_available(tmp_path):
    missing = next(d for d in ("cuda", "mps") if d not in tools.available_devices())
    with pytest.raises(ValueError, match=rf"device = '{missing}' is not available.*'cpu'"):
        Trainer(model_config("gpt", **TINY), TrainConfig(device=missing), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before any work
    r = subprocess.run([sys.executable, "train.py", "--device", missing, "--out", str(tmp_path / "y")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not available" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="not a device"):
        tools.pick_device("tpu")
    assert tools.pick_device("auto").type == tools.available_devices()[0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_trains_on_the_cpu_and_keeps_float32_weights(tmp_path, dtype):
    t = run(tmp_path, dtype=dtype)
    losses = [r["val_loss"] for r in t.rows]
    assert losses[-1] < losses[0] - 0.3, losses
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert t.scaler.is_enabled() == (dtype == "float16")
    ck = tools.load_weights(t.out / "checkpoint.pt")
    assert ("scaler" in ck) == (dtype == "float16")


def test_compiled_and_plain_runs_save_the_same_keys(tmp_path, monkeypatch):
    # the eager backend goes through torch.compile's wrapper (which prefixes state dict keys with _orig_mod)
    # without building kernels, so the test stays fast
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain, compiled = run(tmp_path, "plain", max_iters=2, eval_interval=1), run(tmp_path, "compiled", max_iters=2,
                                                                               eval_interval=1, compile=True)
    assert compiled.net is not compiled.model and "_orig_mod" in "".join(compiled.net.state_dict())
    for name in ("model.pt", "checkpoint.pt"):
        a, b = tools.load_weights(plain.out / name), tools.load_weights(compiled.out / name)
        keys = (lambda d: set(d["model"] if "model" in d else d))
        assert keys(a) == keys(b)
    assert [r["train_loss"] for r in compiled.rows] == pytest.approx([r["train_loss"] for r in plain.rows])
    runs.load_run(compiled.out)


def test_run_folders_hold_cpu_tensors_only(tmp_path):
    t = run(tmp_path, max_iters=2, eval_interval=1)
    ck = tools.load_weights(t.out / "checkpoint.pt")
    tensors = [v for v in ck["model"].values()] + [
        v for s in ck["optimizer"]["state"].values() for v in s.values() if isinstance(v, torch.Tensor)]
    assert tensors and all(v.device.type == "cpu" for v in tensors)
    nested = tools.to_cpu({"a": [torch.ones(1)], "b": (torch.zeros(2), 3)})
    assert nested["b"][1] == 3 and nested["a"][0].device.type == "cpu"


def torchrun(tmp_path, out, *args, n=2, resume=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    where = ["--resume", str(resume)] if resume else ["--out", str(out)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "train.py",
           *where, "--progress", "false", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


COMMON = ["--n_layer", 1, "--d_model", 32, "--n_head", 2, "--block_size", 32, "--max_iters", 6,
          "--eval_interval", 3, "--eval_iters", 2, "--warmup_iters", 0, "--sample_len", 0, "--lr", 1e-2]


def test_two_processes_train_like_one_with_the_same_global_batch_and_write_one_folder(tmp_path):
    r = torchrun(tmp_path, tmp_path / "ddp", *COMMON, "--batch_size", 4)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("run folder:") == 1                      # only the main process reports
    single = subprocess.run([sys.executable, "train.py", "--out", str(tmp_path / "one"), "--progress", "false",
                             *map(str, COMMON), "--batch_size", "8"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp, one = tools.read_log(tmp_path / "ddp" / "log.csv"), tools.read_log(tmp_path / "one" / "log.csv")
    assert [r["tokens"] for r in ddp] == [r["tokens"] for r in one]  # the same global batch: 2 x 4 = 8
    for a, b in zip(ddp[1:], one[1:]):                              # float sums in another order: 1e-4
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    # the same weights at the end, scored on the same data (each run's own validation batches have its
    # per-process batch size, so their logged validation losses are not comparable)
    (m1, _, _), (m2, _, _) = runs.load_run(tmp_path / "ddp"), runs.load_run(tmp_path / "one")
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, atol=1e-4, rtol=1e-3, msg=name)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    # a run saved under torchrun resumes in a single process with the same global batch (2 x 4: the one process
    # takes both shares, by gradient accumulation), and so goes on as the one-process run of batch 8 does
    for name in ("ddp", "one"):
        r = subprocess.run([sys.executable, "train.py", "--resume", str(tmp_path / name), "--max_iters", "9",
                            "--progress", "false"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    ddp, one = tools.read_log(tmp_path / "ddp" / "log.csv"), tools.read_log(tmp_path / "one" / "log.csv")
    assert [int(x["step"]) for x in ddp] == [0, 3, 6, 9]
    assert ddp[-1]["tokens"] == one[-1]["tokens"] == 9 * 8 * 32  # not 6 x 8 x 32 + 3 x 4 x 32
    assert ddp[-1]["train_loss"] == pytest.approx(one[-1]["train_loss"], abs=1e-4)
    (m1, _, _), (m2, _, _) = runs.load_run(tmp_path / "ddp"), runs.load_run(tmp_path / "one")
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, atol=1e-4, rtol=1e-3, msg=name)


def test_a_run_is_resumed_only_by_a_number_of_processes_that_shares_its_global_batch(tmp_path):
    t = run(tmp_path, max_iters=2, eval_interval=1)
    ck = tools.load_weights(t.out / "checkpoint.pt")
    assert ck["processes"] == 1
    ck["processes"] = 3  # as if trained by three processes
    tools.save_torch(t.out / "checkpoint.pt", ck)
    r = torchrun(tmp_path, None, "--max_iters", 3, n=2, resume=t.out)
    assert r.returncode != 0 and "trained by 3 process(es)" in r.stderr and "--nproc_per_node=3" in r.stderr
    assert 'train.py", line' not in r.stderr  # a one-line error from each process (torchrun adds its own report)
    resumed = Trainer.resume(t.out, progress=False, verbose=False, max_iters=3)  # one process, three shares
    assert resumed.shards == 3 and resumed.run().step == 3
    assert tools.read_log(t.out / "log.csv")[-1]["tokens"] == 2 * 8 * 32 + 3 * 8 * 32
