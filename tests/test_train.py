"""Tests of train.py and the run-folder helpers in runs.py: exact resume after Ctrl-C, the run folder,
loading without executing code, the NaN stop, the schedule, gradient accumulation, the task path and the
command line (docs/design.md: training, run folders, names other scripts rely on)."""
import csv
import math
import os
import pickle
import random
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluation
import runs
import tools
from config import MODEL_CONFIGS, GPTConfig, TrainConfig, config_from_dict, model_config
from modules import Batch
from tokenizers import Tokenizer
from train import Trainer, lr_at

ROOT = Path(__file__).resolve().parent.parent
LOG_HEADER = "step,tokens,elapsed_s,tokens_per_s,lr,train_loss,val_loss,grad_norm"  # docs/design.md#log-columns
COMPARED = ["step", "tokens", "lr", "train_loss", "val_loss", "grad_norm"]


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: token ids cached in a private folder


def mcfg(**kw):
    return model_config("gpt", **{**dict(n_layer=1, d_model=16, n_head=2, block_size=16, dropout=0.1), **kw})


def tcfg(**kw):
    return TrainConfig(**{**dict(max_iters=8, eval_interval=2, eval_iters=2, batch_size=4, warmup_iters=2,
                                 lr=1e-2, min_lr=1e-3, sample_len=0), **kw})


def trainer(out, m=None, t=None):
    return Trainer(m or mcfg(), t or tcfg(), out, progress=False, verbose=False)


def log_rows(run):
    return tools.read_log(Path(run) / "log.csv")


def compared(rows):
    return [{k: r[k] for k in COMPARED} for r in rows]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, private_cache):
    """One uninterrupted reference run (dropout > 0, so the RNG state matters)."""
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    t = trainer(out, t=tcfg(sample_len=12)).run()
    return t


# --- resume -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("at_step", [0, 3, 4])  # first step, inside an evaluation interval, right after a checkpoint
def test_resume_after_ctrl_c_equals_the_uninterrupted_run(finished, tmp_path, monkeypatch, at_step):
    real = Trainer.gradients
    fired = []

    def interrupted(self, lr):
        if self.step == at_step and not fired:
            fired.append(True)
            # the step has begun: it drew a batch and used every RNG, then Ctrl-C
            self.src.train_batch(self.data_rng, self.step)
            torch.rand(10), random.random(), np.random.rand()
            raise KeyboardInterrupt
        return real(self, lr)

    monkeypatch.setattr(Trainer, "gradients", interrupted)
    out = tmp_path / "run"
    t = trainer(out).run()
    assert fired and t.step == at_step
    assert t.stopped.startswith("interrupted")
    assert "interrupted" in (out / "README.md").read_text()
    assert weights(out / "checkpoint.pt")["step"] == at_step
    monkeypatch.setattr(Trainer, "gradients", real)

    resumed = Trainer.resume(out, progress=False, verbose=False)
    assert resumed.step == at_step
    resumed.run()
    assert resumed.step == 8 and resumed.stopped == ""
    assert compared(log_rows(out)) == compared(log_rows(finished.out))
    assert same_state(weights(out / "model.pt"), weights(finished.out / "model.pt"))


def test_resume_after_ctrl_c_inside_a_micro_batch(tmp_path):
    """Ctrl-C in the middle of the second micro-batch: half a gradient was accumulated and must not count."""
    t_cfg = tcfg(grad_accum=2)
    ref = trainer(tmp_path / "ref", t=t_cfg).run()

    out = tmp_path / "run"
    t = trainer(out, t=t_cfg)
    real, calls = t.model.forward, []

    def forward(batch, state=None):
        if t.model.training:
            calls.append(1)
            if len(calls) == 2 * 5 + 2:  # step 6, second micro-batch
                raise KeyboardInterrupt
        return real(batch, state)

    t.model.forward = forward
    t.run()
    assert t.stopped.startswith("interrupted") and t.step == 5
    Trainer.resume(out, progress=False, verbose=False).run()
    assert compared(log_rows(out)) == compared(log_rows(ref.out))
    assert same_state(weights(out / "model.pt"), weights(ref.out / "model.pt"))


# Real signals, raised deterministically at chosen points of step 6 (0-based call 5) of an 8-step run: a first
# Ctrl-C or SIGTERM is acted on at the next step boundary; a second one stops at once, except inside the
# update, where it waits for the boundary right after. Whatever the point, the resumed run equals the straight
# one, and Adam's own step count in the checkpoint equals the checkpoint's step (the race this replaced: a
# signal between the optimizer step and the step count saved an Adam one step ahead).
SIGNAL_POINTS = {
    "drawing a batch": ("train_batch", 1), "inside a forward": ("forward", 1),
    "just after the optimizer step": ("optimizer", 1), "during an evaluation": ("evaluate", 1),
    "twice inside a forward": ("forward", 2), "twice just after the optimizer step": ("optimizer", 2),
    "twice during an evaluation": ("evaluate", 2)}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", SIGNAL_POINTS)
def test_a_signal_at_any_point_of_a_step_resumes_exactly(finished, tmp_path, monkeypatch, point, signum):
    where, times = SIGNAL_POINTS[point]
    out = tmp_path / "run"
    t = trainer(out)
    calls = []

    def fire():
        for _ in range(times):
            signal.raise_signal(signum)

    def at_call(real, n, after=False, training_only=False):
        def wrapped(*a, **kw):
            counted = not training_only or t.model.training
            calls.append(1) if counted else None
            hit = counted and len(calls) == n
            if hit and not after:
                fire()
            result = real(*a, **kw)
            if hit and after:
                fire()
            return result
        return wrapped

    if where == "train_batch":
        t.src.train_batch = at_call(t.src.train_batch, 6)
    elif where == "forward":
        t.model.forward = at_call(t.model.forward, 6, training_only=True)
    elif where == "optimizer":
        t.optimizer.step = at_call(t.optimizer.step, 6, after=True)
    else:  # evaluations at steps 0, 2, 4, 6: the fourth
        monkeypatch.setattr(evaluation, "validation_scores", at_call(evaluation.validation_scores, 4))
    t.run()
    assert len(calls) >= 4 and t.stopped.startswith("interrupted"), (calls, t.stopped)
    ck = weights(out / "checkpoint.pt")
    adam = {int(s["step"]) for s in ck["optimizer"]["state"].values()}
    assert adam == {ck["step"]}, (adam, ck["step"])                  # Adam's count is the saved step
    monkeypatch.undo()
    Trainer.resume(out, progress=False, verbose=False).run()
    assert compared(log_rows(out)) == compared(log_rows(finished.out))
    assert same_state(weights(out / "model.pt"), weights(finished.out / "model.pt"))


def test_the_signal_handlers_are_restored_after_a_run(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    trainer(tmp_path / "run", t=tcfg(max_iters=1)).run()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_resume_after_ctrl_c_during_an_evaluation(finished, tmp_path, monkeypatch):
    """Ctrl-C while the step-4 evaluation runs (evaluation is the slow part of a log row): the resumed run
    must still log step 4, with the training loss of steps 3-4."""
    real, calls = evaluation.validation_scores, []

    def evaluate(model, batches, task):
        calls.append(1)
        if len(calls) == 3:  # evaluations at steps 0, 2, then 4
            raise KeyboardInterrupt
        return real(model, batches, task)

    monkeypatch.setattr(evaluation, "validation_scores", evaluate)
    out = tmp_path / "run"
    t = trainer(out).run()
    assert t.stopped.startswith("interrupted") and len(calls) == 3
    monkeypatch.setattr(evaluation, "validation_scores", real)
    Trainer.resume(out, progress=False, verbose=False).run()
    assert [int(r["step"]) for r in log_rows(out)] == [0, 2, 4, 6, 8]
    assert compared(log_rows(out)) == compared(log_rows(finished.out))


def test_resume_with_a_longer_schedule_continues_from_the_checkpoint(finished, tmp_path):
    import shutil
    out = tmp_path / "more"
    shutil.copytree(finished.out, out)
    t = Trainer.resume(out, progress=False, verbose=False, max_iters=12)
    assert t.step == 8 and t.tcfg.max_iters == 12
    t.run()
    steps = [int(r["step"]) for r in log_rows(out)]
    assert steps == [0, 2, 4, 6, 8, 10, 12]
    assert compared(log_rows(out))[:5] == compared(log_rows(finished.out))


def test_resume_refuses_a_folder_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        Trainer.resume(tmp_path)


# --- the run folder ---------------------------------------------------------------------------------
def test_run_folder_contents(finished):
    out = finished.out
    names = {p.name for p in out.iterdir()}
    assert {"model_config.json", "train_config.json", "tokenizer.json", "model.pt", "best_model.pt",
            "checkpoint.pt", "log.csv", "README.md"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert ",".join(rows[0]) == LOG_HEADER
    assert [int(r[0]) for r in rows[1:]] == [0, 2, 4, 6, 8]
    assert [int(r[1]) for r in rows[1:]] == [0, 2 * 64, 4 * 64, 6 * 64, 8 * 64]  # 4 x 16 tokens per step
    logged = log_rows(out)
    assert logged[0]["train_loss"] is None and logged[0]["grad_norm"] is None  # no training yet
    assert all(r["val_loss"] > 0 and math.isfinite(r["val_loss"]) for r in logged)
    assert logged[-1]["val_loss"] < logged[0]["val_loss"]  # it learned something
    assert all(r["tokens_per_s"] > 0 for r in logged[1:])
    assert logged[1]["lr"] == pytest.approx(lr_at(1, finished.tcfg))  # lr of the row's last step
    m = config_from_dict(tools.load_json(out / "model_config.json"))
    assert m == finished.mcfg and m.vocab_size == finished.src.tokenizer.vocab_size
    assert config_from_dict(tools.load_json(out / "train_config.json")) == finished.tcfg
    assert Tokenizer.load(out / "tokenizer.json").hash() == finished.src.tokenizer.hash()
    readme = (out / "README.md").read_text()
    assert finished.src.tokenizer.hash() in readme and "gpt" in readme and "finished" in readme
    assert f"{logged[-1]['val_loss']:.4f}" in readme  # the final numbers
    assert "## Sample" in readme and finished.sample_text and finished.sample_text in readme


def test_best_model_is_the_lowest_validation_loss(finished):
    ck = weights(finished.out / "checkpoint.pt")
    val = [r["val_loss"] for r in log_rows(finished.out)]
    assert ck["best"] == pytest.approx(min(val))
    best_is_last = val.index(min(val)) == len(val) - 1
    assert same_state(weights(finished.out / "best_model.pt"), weights(finished.out / "model.pt")) == best_is_last


def test_load_run_rebuilds_the_trained_model(finished):
    model, cfgs, tok = runs.load_run(finished.out)
    assert cfgs["model"] == finished.mcfg and cfgs["train"] == finished.tcfg
    assert tok.hash() == finished.src.tokenizer.hash()
    assert not model.training
    x = finished.src.val[0].x
    trained = finished.model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).logits, trained(x).logits)
    best, _, _ = runs.load_run(finished.out, "best_model")
    with pytest.raises(ValueError, match="which"):
        runs.load_run(finished.out, "latest")
    with pytest.raises(FileNotFoundError, match="run folder"):
        runs.load_run(finished.out / "nope")


def test_every_run_in_trained_still_loads_and_reproduces_its_logged_loss():
    """The run folders under trained/ (shipped ones included) rebuild with the current code, strictly (no
    missing or renamed parameter), and give the validation loss their log says: a change to a model's
    computation that would silently invalidate saved weights fails here."""
    import train
    problems = []
    for run in runs.run_dirs():
        model, cfgs, tok = runs.load_run(run)
        src, _ = train.make_source(cfgs["model"], cfgs["train"], progress=False)
        got = evaluation.validation_scores(model, src.val, src.task)
        last = log_rows(run)[-1]
        ck = run / "checkpoint.pt"
        if ck.exists() and weights(ck)["step"] != last["step"]:
            continue  # stopped early: model.pt is the last checkpoint, not the last row
        for k in ("val_loss", "val_acc", "val_exact"):
            if last.get(k) is not None and abs(got[k] - last[k]) > 1e-3 * max(1.0, abs(last[k])):
                problems.append(f"{run.name}: {k} {got[k]:.5f}, logged {last[k]:.5f}")
    assert not problems, "\n".join(problems)


def test_atomic_writes_never_leave_half_a_file(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    tools.atomic_write_text(path, "old\n")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~tools._UMASK)  # readable by others, like open()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        tools.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # the temporary file was removed


def test_weights_load_with_weights_only(finished):
    sd = torch.load(finished.out / "model.pt", weights_only=True)
    assert set(sd) == set(finished.model.state_dict())
    ck = torch.load(finished.out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "step", "rng", "data_rng"} <= set(ck) and ck["step"] == 8
    torch.load(finished.out / "best_model.pt", weights_only=True)


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Custom:
    def __init__(self):
        self.x = 1


@pytest.mark.parametrize("payload", ["evil", "custom"])
def test_a_checkpoint_that_carries_code_is_refused(finished, tmp_path, payload):
    marker = tmp_path / "pwned"
    obj = {"model": Evil(marker)} if payload == "evil" else {"model": Custom(), "step": 1}
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    with pytest.raises(pickle.UnpicklingError):
        tools.load_weights(bad)
    assert not marker.exists()
    # the same through a run folder: load_run and resume refuse it too
    import shutil
    run = tmp_path / "run"
    shutil.copytree(finished.out, run)
    shutil.copy(bad, run / "model.pt")
    shutil.copy(bad, run / "checkpoint.pt")
    with pytest.raises(pickle.UnpicklingError):
        runs.load_run(run)
    with pytest.raises(pickle.UnpicklingError):
        Trainer.resume(run, progress=False, verbose=False, max_iters=12)  # finished at 8: extended
    assert not marker.exists()


# --- the NaN stop -----------------------------------------------------------------------------------
@pytest.mark.parametrize("good_steps, kept", [(5, 4), (0, 0)])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, good_steps, kept):
    out = tmp_path / "run"
    t = trainer(out, t=tcfg(max_iters=10))
    real, calls = t.model.forward, []

    def forward(batch, state=None):
        o = real(batch, state)
        if t.model.training:
            calls.append(1)
            if len(calls) > good_steps:
                return o._replace(loss=o.loss * float("nan"))
        return o

    t.model.forward = forward
    t.run()
    assert t.step == good_steps
    assert "non-finite loss" in t.stopped and f"step {kept})" in t.stopped
    ck = weights(out / "checkpoint.pt")
    assert ck["step"] == kept
    assert same_state(ck["model"], weights(out / "model.pt"))
    assert all(v.isfinite().all() for v in ck["model"].values())
    rows = log_rows(out)
    assert int(rows[-1]["step"]) == kept and all(math.isfinite(r["val_loss"]) for r in rows)
    assert "non-finite" in (out / "README.md").read_text()
    # the step that produced NaN did not update the parameters
    assert all(p.isfinite().all() for p in t.model.parameters())
    # the kept checkpoint resumes
    r = Trainer.resume(out, progress=False, verbose=False)
    assert r.step == kept


# --- the learning-rate schedule ---------------------------------------------------------------------
def lrs(**kw):
    c = TrainConfig(**{**dict(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110), **kw})
    return c, [lr_at(s, c) for s in range(c.max_iters + 5)]


def test_warmup_is_linear_up_to_lr():
    c, lr = lrs()
    assert lr[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lr[10] == pytest.approx(1.0)


def test_cosine_decays_to_min_lr():
    c, lr = lrs(schedule="cosine")
    assert lr[60] == pytest.approx(0.55)  # half way: the mean of lr and min_lr
    assert lr[35] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert lr[110] == pytest.approx(0.1) and lr[114] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))  # never rises after warm-up


def test_linear_decays_to_min_lr():
    c, lr = lrs(schedule="linear")
    assert lr[60] == pytest.approx(0.55) and lr[35] == pytest.approx(1.0 - 0.9 * 0.25)
    assert lr[110] == pytest.approx(0.1) and lr[114] == pytest.approx(0.1)
    steps = np.diff(lr[10:111])
    assert np.allclose(steps, steps[0])  # a straight line


def test_step_schedule_drops_by_ten_after_two_thirds():
    c, lr = lrs(schedule="step", min_lr=0.01)
    assert lr[10] == lr[75] == 1.0
    assert lr[78] == pytest.approx(0.1) and lr[114] == pytest.approx(0.1)
    assert set(np.round(lr[10:], 6)) == {1.0, 0.1}
    _, floored = lrs(schedule="step", min_lr=0.5)
    assert floored[100] == pytest.approx(0.5)  # never below min_lr


def test_constant_schedule():
    c, lr = lrs(schedule="constant")
    assert lr[10:] == [1.0] * (len(lr) - 10)


def test_no_warmup():
    _, lr = lrs(warmup_iters=0)
    assert lr[0] == pytest.approx(1.0)


def test_the_loop_uses_the_schedule(finished):
    lr = [r["lr"] for r in log_rows(finished.out)]
    assert lr == [lr_at(s, finished.tcfg) for s in (0, 1, 3, 5, 7)]


# --- gradient accumulation --------------------------------------------------------------------------
def first_step(tmp_path, accum, batch_size, batches):
    t = trainer(tmp_path / f"acc{accum}", m=mcfg(dropout=0.0), t=tcfg(grad_accum=accum, batch_size=batch_size,
                                                                      grad_clip=0.0))
    feed = iter(batches)
    t.src.train_batch = lambda rng, step: next(feed)
    grads = {}

    def capture():
        grads.update({n: p.grad.clone() for n, p in t.model.named_parameters()})

    t.optimizer.step = capture
    loss, norm, tokens, _ = t.train_step(1e-3)
    return loss, norm, tokens, grads


def test_grad_accum_2_equals_one_batch_twice_the_size(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 50, (8, 17), generator=g)
    b1, b2 = Batch(x[:4, :-1], x[:4, 1:]), Batch(x[4:, :-1], x[4:, 1:])
    big = Batch(x[:, :-1], x[:, 1:])
    loss1, norm1, tok1, g1 = first_step(tmp_path, 1, 8, [big])
    loss2, norm2, tok2, g2 = first_step(tmp_path, 2, 4, [b1, b2])
    assert tok1 == tok2 == 8 * 16
    assert loss2 == pytest.approx(loss1, rel=1e-5)
    assert norm2 == pytest.approx(norm1, rel=1e-4)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], rtol=1e-4, atol=1e-7)
    # ...and the loss is a mean, not a sum, of the micro-batches
    loss_a, *_ = first_step(tmp_path, 1, 4, [b1])
    loss_b, *_ = first_step(tmp_path, 1, 4, [b2])
    assert loss2 == pytest.approx((loss_a + loss_b) / 2, rel=1e-5)


# --- the task path ----------------------------------------------------------------------------------
def test_task_run_logs_accuracy(tmp_path):
    out = tmp_path / "copy"
    t = trainer(out, m=mcfg(dropout=0.0), t=tcfg(task="copy", task_len=3, task_vocab=4, max_iters=4,
                                                   eval_interval=2, sample_len=5))
    t.run()
    with open(out / "log.csv", newline="") as f:
        header = next(csv.reader(f))
    assert ",".join(header) == LOG_HEADER + ",val_acc,val_exact"
    rows = log_rows(out)
    assert len(rows) == 3
    for r in rows:
        assert 0 <= r["val_exact"] <= r["val_acc"] <= 1
    assert t.mcfg.block_size == 3 + 1 + 6 - 1 and t.mcfg.tokenizer == "task-copy"
    model, cfgs, tok = runs.load_run(out)
    assert tok.name == "task-copy" and cfgs["train"].task == "copy"
    readme = (out / "README.md").read_text()
    assert "val_acc" in readme and "(true " in readme  # sample answers next to the true ones


# --- command line -----------------------------------------------------------------------------------
def cli(*args, tmp_path, timeout=300):
    env = {**os.environ, "MNEMO_CACHE": str(tmp_path / "cache"), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_help_lists_every_field_with_its_default(tmp_path):
    r = cli("--help", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip().startswith("--")}
    for cls in (GPTConfig, TrainConfig):
        for f in fields(cls):  # a ClassVar (display_name) is no field, and no flag
            line = lines.get(f"--{f.name}")
            assert line is not None, f"--{f.name} missing from --help"
            shown = str(f.default).lower() if isinstance(f.default, bool) else repr(f.default)  # as typed
            assert f"(default: {shown})" in line, line
            assert f.metadata["help"][:20] in line, line
    for flag in ("--out", "--resume"):
        assert flag in lines


@pytest.mark.parametrize("arch", sorted(MODEL_CONFIGS))
def test_cli_has_a_flag_for_every_field_of_every_architecture(arch):
    import train
    parser = train.build_parser(arch)
    flags = {o for a in parser._actions for o in a.option_strings}
    for cls in (MODEL_CONFIGS[arch], TrainConfig):
        for name in (f.name for f in fields(cls)):
            assert f"--{name}" in flags, f"{arch}: --{name} missing"
    args = vars(parser.parse_args([]))
    assert args == {}  # no default is injected: unset flags keep the dataclass defaults


def test_cli_task_run_in_process(tmp_path, capsys):
    import train
    out = tmp_path / "task"
    code = train.main(["--task", "copy", "--task_len", "3", "--task_vocab", "4", "--max_iters", "2",
                       "--eval_interval", "1", "--eval_iters", "1", "--batch_size", "4", "--n_layer", "1",
                       "--d_model", "16", "--n_head", "2", "--sample_len", "3", "--progress", "false",
                       "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "val_acc" in printed and str(out) in printed
    with open(out / "log.csv", newline="") as f:
        assert next(csv.reader(f))[-2:] == ["val_acc", "val_exact"]


def test_cli_bad_flag_suggests_the_right_one(tmp_path):
    r = cli("--n_layr", 3, tmp_path=tmp_path)
    assert r.returncode == 2
    assert "--n_layr" in r.stderr and "--n_layer" in r.stderr


def test_cli_invalid_value_names_the_field(tmp_path):
    r = cli("--d_model", 100, "--n_head", 3, tmp_path=tmp_path)
    assert r.returncode == 2 and "d_model" in r.stderr and "n_head" in r.stderr
    assert "Traceback" not in r.stderr


def main_exit(capsys, *args):
    """train.main in this process (the same parser as the subprocess, without paying for a new Python)."""
    import train
    with pytest.raises(SystemExit) as e:
        train.main([str(a) for a in args])
    return e.value.code, capsys.readouterr().err


@pytest.mark.parametrize("args, says", [
    (("--bias", "yes"), ["--bias", "true or false"]),
    (("--tie_weights", "1"), ["--tie_weights", "true or false"]),
    (("--norm", "batch"), ["norm", "rms"]),
    (("--lr", "fast"), ["--lr"]),
    (("--n_layer", 0), ["n_layer"]),
    (("--min_lr", 0.1, "--lr", 0.01), ["min_lr"]),
    (("--arch", "nope"), ["nope", "gpt"]),
    (("--tokenizer", "wordpiece"), ["tokenizer", "bpe-N"]),
])
def test_cli_rejects_bad_values_with_exit_2(capsys, args, says):
    code, err = main_exit(capsys, *args)
    assert code == 2
    for s in says:
        assert s in err, err


def test_cli_tiny_run_and_resume(tmp_path, capsys):
    out = tmp_path / "tiny"
    common = ["--eval_interval", 1, "--eval_iters", 1, "--sample_len", 5, "--progress", "false"]
    r = cli("--max_iters", 2, "--n_layer", 1, "--d_model", 16, "--n_head", 2, "--block_size", 16,
            "--batch_size", 2, "--out", out, *common, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert str(out) in r.stdout
    assert [int(x["step"]) for x in log_rows(out)] == [0, 1, 2]
    m = config_from_dict(tools.load_json(out / "model_config.json"))
    assert (m.n_layer, m.d_model, m.n_head, m.block_size) == (1, 16, 2, 16)
    assert config_from_dict(tools.load_json(out / "train_config.json")).batch_size == 2
    r = cli("--resume", out, "--max_iters", 4, "--progress", "false", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [int(x["step"]) for x in log_rows(out)] == [0, 1, 2, 3, 4]
    assert weights(out / "checkpoint.pt")["step"] == 4
    code, err = main_exit(capsys, "--resume", out, "--n_layer", 2)  # the model cannot change on resume
    assert code == 2 and "n_layer" in err


# --- a corpus is text, whatever it says -------------------------------------------------------------
def test_a_corpus_containing_special_token_text_trains_with_bpe(tmp_path):
    """mnemo's own README and sources mention <eos>, <bos>, <pad> and <sep>: they train with --tokenizer bpe-N,
    and the README's sample (whose prompt holds such text) is generated from them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8") + (ROOT / "tokenizers" / "base.py").read_text()
    assert all(s in text for s in ("<eos>", "<bos>", "<pad>", "<sep>"))
    corpus = tmp_path / "mnemo_text.txt"
    corpus.write_text(text * 2)
    t = trainer(tmp_path / "bpe", m=mcfg(tokenizer="bpe-512"), t=tcfg(data=str(corpus), max_iters=2, sample_len=8))
    t.src.val[0].x[0, :16] = torch.tensor(t.src.tokenizer.encode_ordinary("stop at <eos> or <pad>")[:16])
    t.run()
    assert t.stopped == "" and t.mcfg.vocab_size == 512 and "## Sample" in (t.out / "README.md").read_text()
    model, _, tok = runs.load_run(t.out)
    assert tok.name == "bpe-512"


# --- command-line errors lead with the reason -------------------------------------------------------
@pytest.mark.parametrize("module, args", [("train", ["--lr", "fast"]), ("train", ["--n_layr", "3"]),
                                          ("inference", []), ("model_comparison", ["--plott", "x.png"])])
def test_every_cli_error_leads_with_the_reason_and_a_one_line_hint(module, args, capsys):
    import importlib
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert e.value.code == 2 and lines[0].startswith(f"{module}.py: error: ")
    assert "usage:" not in err and lines[-1].strip() == f"(python {module}.py --help lists every flag)"
    assert len(lines) <= 3, err
