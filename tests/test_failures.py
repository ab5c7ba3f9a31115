"""Runs that end for a reason a user can act on (issue 18): a model too large for the memory, an allocation that
fails anyway, another torchrun process that dies. Each ends without a traceback, in a message that says what
happened, which flags help and where to resume; any other error still raises."""
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tools
import train
from config import TrainConfig, model_config
from modules import training_bytes

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--n_layer", "1", "--d_model", "16", "--n_head", "2", "--block_size", "16", "--batch_size", "2",
        "--eval_iters", "1", "--eval_interval", "1", "--max_iters", "2", "--sample_len", "0", "--progress", "false"]

CFG = model_config("gpt", vocab_size=50, n_layer=1, d_model=16, n_head=2, block_size=16)

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: token ids cached in a private folder


# --- a model too large for the memory ---------------------------------------------------------------
def test_free_memory_reads_linux_and_the_containers_limit(tmp_path, monkeypatch):
    meminfo, cgroup = tmp_path / "meminfo", tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(tools, "MEMINFO", meminfo)
    monkeypatch.setattr(tools, "CGROUP", cgroup)
    cpu = torch.device("cpu")
    assert tools.free_memory(cpu) is None  # nothing to read: not known, so not checked
    meminfo.write_text("MemTotal:       9000 kB\nMemAvailable:   2000 kB\n")
    (cgroup / "memory.max").write_text("max\n")
    assert tools.free_memory(cpu) == 2000 * 1024  # no container limit
    (cgroup / "memory.max").write_text(f"{1000 * 1024}\n")
    (cgroup / "memory.current").write_text(f"{400 * 1024}\n")
    assert tools.free_memory(cpu) == 600 * 1024  # the container's limit is the tighter one
    assert tools.free_memory(torch.device("meta")) is None


def test_training_bytes_counts_what_adamw_training_holds_without_building_the_model():
    torch.manual_seed(0)
    rng = torch.get_rng_state()
    params, need = training_bytes(CFG)
    assert torch.equal(torch.get_rng_state(), rng)  # the run's weights do not change for being counted
    model = train.build_model(CFG)
    assert params == model.num_params()
    assert need == 16 * params + sum(b.numel() * b.element_size() for b in model.buffers())


def test_a_model_too_large_for_the_memory_is_refused_before_it_is_built(tmp_path, monkeypatch, capsys):
    build = train.build_model  # counting on the meta device is allowed; building for real is not

    def meta_only(mcfg):
        assert torch.get_default_device().type == "meta", "the model was built"
        return build(mcfg)

    monkeypatch.setattr(train, "build_model", meta_only)
    monkeypatch.setattr(tools, "free_memory", lambda device: 8 * 2 ** 30)
    with pytest.raises(SystemExit) as e:
        train.main(["--d_model", "100000", "--n_layer", "64", "--out", str(tmp_path / "big")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    need = re.search(r"this model \(([\d,]+) parameters\) needs at least ([\d,.]+) GiB to train", err)
    params = int(need[1].replace(",", ""))
    assert params > 64 * 12 * 100000 ** 2 and float(need[2].replace(",", "")) == round(16 * params / 2 ** 30, 1)
    for says in ("cpu has 8.0 GiB free", "--n_layer (now 64)", "--d_model (now 100000)", "--tokenizer (now 'char'",
                 "--block_size (now 128)", "--batch_size (now 32)"):
        assert says in err, err
    assert not (tmp_path / "big").exists()


def test_the_memory_check_compares_the_need_with_what_is_free(monkeypatch):
    t, cpu = TrainConfig(), torch.device("cpu")
    need = training_bytes(CFG)[1]
    monkeypatch.setattr(tools, "free_memory", lambda device: need)
    tools.check_memory(*training_bytes(CFG), cpu, tools.memory_hint(CFG, t))  # the control: exactly enough passes
    monkeypatch.setattr(tools, "free_memory", lambda device: need - 1)
    with pytest.raises(tools.ModelTooLargeError, match="the model's size is fixed by --resume"):
        tools.check_memory(*training_bytes(CFG), cpu, tools.memory_hint(CFG, t, "--resume"))
    monkeypatch.setattr(tools, "free_memory", lambda device: 2 * need)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")  # three torchrun processes on this machine: three copies
    with pytest.raises(tools.ModelTooLargeError, match="for each of 3 processes"):
        tools.check_memory(*training_bytes(CFG), cpu, tools.memory_hint(CFG, t))


# --- an allocation that fails anyway ----------------------------------------------------------------
def test_running_out_of_memory_while_training_is_one_line_with_where_to_resume(tmp_path, monkeypatch, capsys):
    def step(self, lr):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore lines")

    monkeypatch.setattr(train.Trainer, "gradients", step)  # the loop runs gradients, then update
    out = tmp_path / "run"
    assert train.main([*TINY, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    vocab = tools.load_json(out / "model_config.json")["vocab_size"]
    assert err.splitlines() == [
        f"train.py: error: out of memory on cpu after step 0 (CUDA out of memory. Tried to allocate 20.00 GiB); "
        f"shrink the model with --n_layer (now 1), --d_model (now 16) or --tokenizer (now 'char': {vocab} tokens), "
        f"and its activations with --block_size (now 16); lower --batch_size (now 2) and raise --grad_accum to keep "
        f"the batch, or use a device with more memory (--device); the last checkpoint is at step 0: continue with "
        f"python train.py --resume {out}"]


def test_running_out_of_memory_while_building_is_refused_without_a_traceback(tmp_path, monkeypatch, capsys):
    def build(mcfg):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 4000000000000 bytes")

    monkeypatch.setattr(train, "build_model", build)
    with pytest.raises(SystemExit) as e:
        train.main([*TINY, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.startswith("train.py: error: out of memory while setting up the run ([enforce fail")
    assert "shrink the model with --n_layer, --d_model or --tokenizer" in err


def test_any_other_error_still_raises(tmp_path, monkeypatch):
    def step(self, lr):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")  # a bug: its traceback is wanted

    monkeypatch.setattr(train.Trainer, "gradients", step)  # the loop runs gradients, then update
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train.main([*TINY, "--out", str(tmp_path / "run")])


# --- a torchrun process that dies -------------------------------------------------------------------
def test_what_counts_as_a_lost_peer():
    gloo = RuntimeError("[pair.cc:537] Read error [127.0.0.1]:51329: Connection reset by peer. This is typically "
                        "caused by a remote worker hanging or bugs in the application.")
    assert tools.lost_peer(gloo, world=2)
    assert tools.lost_peer(torch.distributed.DistBackendError("NCCL communicator was aborted"), world=2)
    assert not tools.lost_peer(gloo, world=1)  # the controls: one process has no peer,
    assert not tools.lost_peer(RuntimeError("shapes cannot be multiplied"), world=2)  # and a bug is a bug


def test_when_a_process_dies_the_others_say_so_in_one_line_with_where_to_resume(tmp_path):
    """Two processes started as torchrun starts them (its environment variables), without torchrun itself,
    whose agent would also stop the survivor with SIGTERM (Ctrl-C's path, tested in test_train.py): rank 1
    exits at step 2, in the middle of training; rank 0 waits for it in the gradients' all-reduce."""
    script = tmp_path / "dies.py"
    script.write_text(f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport train\n"
                      "step = train.Trainer.gradients\n\n"
                      "def gradients(self, lr):\n"
                      "    if self.procs.rank == 1 and self.step == 2:\n"
                      "        os._exit(3)\n"
                      "    return step(self, lr)\n\n"
                      "train.Trainer.gradients = gradients\nsys.exit(train.main())\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, str(script), *TINY, "--max_iters", "6", "--out", str(out)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in (0, 1)]
    (_, err), _ = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 3], err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("train.py: error: rank 0 of 2: another process of this torchrun stopped after "
                               "step 2, torchrun's report names it (")
    assert lines[0].endswith(f"; the last checkpoint is at step 2: continue with python train.py --resume {out}")
    assert tools.load_weights(out / "checkpoint.pt")["step"] == 2
