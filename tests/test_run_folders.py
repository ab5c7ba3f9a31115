"""Nothing lost, every error clear (issue 7): a run folder is never overwritten silently, is locked while a
process writes it, saves on SIGTERM as on Ctrl-C, is checked to be writable before any work, and is checked
part against part when loaded, with errors that name the file. A run folder's files agree or are refused
(issue 18): the tokenizer recorded in training, configs with every field, the data a resume reads."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import runs
import tools
import train
from config import ConfigError, TrainConfig, model_config
from tokenizers import CharTokenizer
from train import Trainer

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: token ids cached in a private folder


def mcfg(**kw):
    return model_config("gpt", **{**dict(n_layer=1, d_model=32, n_head=2, block_size=16), **kw})


def tcfg(**kw):
    return TrainConfig(**{**dict(max_iters=4, eval_interval=2, eval_iters=1, batch_size=2, warmup_iters=1,
                                 sample_len=0), **kw})


def run(out, **kw):
    return Trainer(mcfg(), tcfg(**kw), out, progress=False, verbose=False).run()


@pytest.fixture(scope="module")
def done(tmp_path_factory, private_cache):
    """A finished tiny run, copied by the tests that damage it."""
    return run(tmp_path_factory.mktemp("runs") / "done").out


def snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


def cli(*args, cache, **popen):
    env = {**os.environ, "MNEMO_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "train.py", *map(str, args)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


TINY = ["--n_layer", 1, "--d_model", 32, "--n_head", 2, "--block_size", 16, "--batch_size", 2, "--eval_iters", 1,
        "--sample_len", 0, "--progress", "false", "--schedule", "constant", "--warmup_iters", 1]


# --- 1. an existing run is never replaced silently --------------------------------------------------
def test_out_on_an_existing_run_is_refused_and_the_run_is_untouched(done, tmp_path, capsys):
    before = snapshot(done)
    with pytest.raises(tools.RunFolderError) as e:
        Trainer(mcfg(), tcfg(), done, progress=False, verbose=False)
    msg = str(e.value)
    assert str(done) in msg and "--resume" in msg and "--overwrite true" in msg
    code = None
    try:
        train.main(["--out", str(done), *map(str, TINY)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and err.startswith("train.py: error:")
    assert snapshot(done) == before


def test_overwrite_replaces_the_run_and_an_empty_folder_is_fine(done, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(done, out)
    (out / "notes.txt").write_text("mine")
    t = Trainer(mcfg(), tcfg(max_iters=2, seed=7), out, progress=False, verbose=False, overwrite=True).run()
    assert [r["step"] for r in tools.read_log(out / "log.csv")] == [0, 2]
    assert tools.load_json(out / "train_config.json")["seed"] == 7 and t.stopped == ""
    assert (out / "notes.txt").read_text() == "mine"  # only run files are replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    run(empty)
    assert runs.run_status(empty) == "finished"


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_of_the_users_own_files_is_refused_even_with_overwrite(tmp_path, capsys, overwrite):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    (mine / "log.csv").write_text("day,weight\n1,70\n")
    before = snapshot(mine)
    code = None
    try:
        train.main(["--out", str(mine), "--overwrite", str(overwrite).lower(), *map(str, TINY)])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "no mnemo run wrote (README.md, log.csv" in err and "already holds a run" not in err
    assert snapshot(mine) == before  # (the next test's negative control: a real run is replaced)


def test_files_named_like_configs_do_not_make_a_run_but_a_real_run_is_replaced(done, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "model_config.json").write_text('{"colour": "blue"}')  # a file of that name, not mnemo's
    (fake / "train_config.json").write_text("[]")
    with pytest.raises(tools.RunFolderError, match="no mnemo run wrote"):
        Trainer(mcfg(), tcfg(), fake, progress=False, verbose=False, overwrite=True)
    assert (fake / "model_config.json").read_text() == '{"colour": "blue"}'
    real = tmp_path / "real"
    shutil.copytree(done, real)
    Trainer(mcfg(), tcfg(max_iters=2), real, progress=False, verbose=False, overwrite=True).run()
    assert [r["step"] for r in tools.read_log(real / "log.csv")] == [0, 2]


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_into_a_folder_of_runs_is_refused(done, tmp_path, overwrite):
    folder = tmp_path / "reference"
    shutil.copytree(done, folder / "gpt-s0")
    before = snapshot(folder / "gpt-s0")
    with pytest.raises(tools.RunFolderError, match=r"is a folder of runs \(gpt-s0\).*--out .*reference/my-run"):
        Trainer(mcfg(), tcfg(), folder, progress=False, verbose=False, overwrite=overwrite)
    assert snapshot(folder / "gpt-s0") == before
    with pytest.raises(tools.RunFolderError, match="folder of runs"):  # what ships: trained/reference/
        runs.prepare_run_folder(tools.TRAINED / "reference", overwrite=True)


def test_overwrite_removes_the_old_runs_summary_and_readme_before_training(done, tmp_path, monkeypatch):
    out = tmp_path / "again"
    shutil.copytree(done, out)
    assert (out / "summary.json").exists() and (out / "README.md").exists()  # the old run's numbers
    (out / "evaluation.json").write_text('{"bpc": 1.0}')
    old = tools.load_json(out / "summary.json")
    seen = {}

    def crash(self, lr):  # the new run dies in its first step, before it writes a README of its own
        seen.update({n: (self.out / n).exists() for n in ("README.md", "evaluation.json")})
        raise RuntimeError("killed")

    monkeypatch.setattr(Trainer, "gradients", crash)
    with pytest.raises(RuntimeError, match="killed"):
        Trainer(mcfg(d_model=48), tcfg(), out, progress=False, verbose=False, overwrite=True).run()
    assert seen == {"README.md": False, "evaluation.json": False}
    assert not (out / "README.md").exists() and not (out / "evaluation.json").exists()
    new = tools.load_json(out / "summary.json")  # the new run's identity only: none of the old run's figures
    assert "final_val_loss" in old and "final_val_loss" not in new and new["params"] != old["params"]


def test_a_run_finished_meanwhile_is_not_overwritten_by_a_trainer_built_before(tmp_path):
    out = tmp_path / "race"
    late = Trainer(mcfg(), tcfg(seed=5), out, progress=False, verbose=False)  # folder empty when built
    run(out)                                                                   # another run lands there
    before = snapshot(out)
    with pytest.raises(tools.RunFolderError, match="already holds a run"):
        late.run()
    assert snapshot(out) == before


# --- 2. one writer at a time ------------------------------------------------------------------------
HOLD = """import sys, time; sys.path.insert(0, {root!r}); import runs
with runs.RunLock({out!r}):
    print("locked", flush=True); time.sleep(60)
"""


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holders_lock_is_stale(tmp_path):
    out = tmp_path / "shared"
    second = Trainer(mcfg(), tcfg(), out, progress=False, verbose=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), out=str(out))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(tools.RunFolderError) as e:
            second.run()
        assert f"process {holder.pid}" in str(e.value) and "training.lock" in str(e.value)
        assert runs.run_files(out) == []  # the refused writer wrote nothing
        with pytest.raises(tools.RunFolderError, match=f"process {holder.pid}"):  # refused before any work too
            Trainer(mcfg(), tcfg(), out, progress=False, verbose=False)
        assert runs.run_status(out) == "training"
    finally:
        holder.kill()
        holder.wait()
    assert (out / "training.lock").exists() and runs.lock_holder(out)["stale"]  # SIGKILL left it behind
    second.run()                                                                   # stale: taken over
    assert runs.run_status(out) == "finished" and not (out / "training.lock").exists()


def test_the_lock_is_released_when_the_run_raises(tmp_path, monkeypatch):
    out = tmp_path / "boom"
    t = Trainer(mcfg(), tcfg(), out, progress=False, verbose=False)
    monkeypatch.setattr(Trainer, "gradients", lambda self, lr: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        t.run()
    assert not (out / "training.lock").exists()


def test_two_cli_writers_at_once_the_second_is_refused(tmp_path):
    out = tmp_path / "both"
    first = cli("--out", out, "--max_iters", 100000, "--eval_interval", 1, *TINY, cache=tmp_path / "cache")
    try:
        assert first.stdout.readline().startswith("step 0")
        second = cli("--out", out, "--max_iters", 2, *TINY, cache=tmp_path / "cache")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2 and "Traceback" not in err
        assert f"being written by process {first.pid}" in err and "train.py --out" in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert tools.load_json(out / "train_config.json")["max_iters"] == 100000  # still the first run's folder


# --- 3. SIGTERM saves like Ctrl-C -------------------------------------------------------------------
def test_sigterm_saves_a_resumable_checkpoint_that_continues_exactly(tmp_path):
    out = tmp_path / "term"
    proc = cli("--out", out, "--max_iters", 100000, "--eval_interval", 3, *TINY, cache=tmp_path / "cache")
    try:
        rows = [proc.stdout.readline(), proc.stdout.readline()]  # step 0, then step 3: training is under way
        assert rows[0].startswith("step 0") and rows[1].startswith("step 3"), rows
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "interrupted by SIGTERM" in stderr and "Traceback" not in stderr
    ck = tools.load_weights(out / "checkpoint.pt")
    stopped = ck["step"]
    assert stopped >= 3 and not (out / "training.lock").exists()
    readme = (out / "README.md").read_text()
    assert f"interrupted by SIGTERM at step {stopped}" in readme and "final_val_loss" not in readme
    logged = tools.read_log(out / "log.csv")[-1]["step"]
    assert f"last evaluation, at step {logged}" in readme

    # resume to a few steps further: the same weights as a run that was never interrupted
    target = stopped + 2
    r = cli("--resume", out, "--max_iters", target, "--progress", "false", cache=tmp_path / "cache")
    assert r.wait(timeout=300) == 0, r.stderr.read()
    straight = tmp_path / "straight"
    s = cli("--out", straight, "--max_iters", target, "--eval_interval", 3, *TINY, cache=tmp_path / "cache")
    assert s.wait(timeout=300) == 0, s.stderr.read()
    a, b = tools.load_weights(out / "model.pt"), tools.load_weights(straight / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "finished" in (out / "README.md").read_text()


def test_ctrl_c_during_start_up_is_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    import data

    def interrupted(*a, **kw):  # Ctrl-C while the corpus is read
        raise KeyboardInterrupt
    monkeypatch.setattr(data.Corpus, "load", interrupted)
    with pytest.raises(SystemExit) as e:
        train.main(["--out", str(tmp_path / "never"), *map(str, TINY)])
    err = capsys.readouterr().err
    assert e.value.code == 130 and err.startswith("train.py: interrupted during start-up") and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_after_an_interruption_the_summary_does_not_call_step_0_final(tmp_path, monkeypatch):
    real = Trainer.gradients

    def interrupted(self, lr):
        if self.step == 1:
            raise KeyboardInterrupt
        return real(self, lr)

    monkeypatch.setattr(Trainer, "gradients", interrupted)
    t = run(tmp_path / "early")
    s = t.summary()
    assert t.stopped.startswith("interrupted at step 1")
    assert "final_val_loss" not in s and s["eval_step"] == 0
    readme = (t.out / "README.md").read_text()
    assert "only evaluation was at step 0, of the untrained model" in readme and "final_val_loss" not in readme


# --- 6. a run folder's parts are checked against each other -----------------------------------------
def damage_json(name, text):
    return lambda d: (d / name).write_text(text)


def edit_config(name, **fields):
    def edit(d):
        cfg = json.loads((d / name).read_text())
        cfg.update(fields)
        (d / name).write_text(json.dumps(cfg))
    return edit


def truncate(name):
    return lambda d: (d / name).write_bytes((d / name).read_bytes()[:500])


def small_tokenizer(d):
    CharTokenizer("abc").save(d / "tokenizer.json")


def swap_chars(a, b):
    """tokenizer.json with the tokens of characters a and b swapped: the same size, other text."""
    def swap(d):
        tok = json.loads((d / "tokenizer.json").read_text())
        tok["chars"] = tok["chars"].translate(str.maketrans(a + b, b + a))
        (d / "tokenizer.json").write_text(json.dumps(tok))
    return swap


def drop_fields(name, *keys):
    def drop(d):
        cfg = json.loads((d / name).read_text())
        for k in keys:
            del cfg[k]
        (d / name).write_text(json.dumps(cfg))
    return drop


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("damage, file, says", [
    (truncate("model.pt"), "model.pt", "truncated or corrupted"),
    (edit_config("model_config.json", n_layer=3), "model.pt", "has weights for 1 block (blocks.0) but "
                                                              "model_config.json says n_layer = 3"),
    (edit_config("model_config.json", d_model=64, n_head=2), "model.pt",
     "is (32, 32) in the file but (64, 64) in the model"),
    (small_tokenizer, "tokenizer.json", "has 8 tokens but model_config.json says vocab_size"),
    (swap_chars("a", "e"), "tokenizer.json", "is not the tokenizer this run was trained with"),
    (drop_fields("model_config.json", "norm", "pos"), "model_config.json", "['norm', 'pos'] are missing"),
    (drop_fields("model_config.json", "d_model"), "model_config.json", "d_model: an int >= 1"),
    (drop_fields("train_config.json", "max_iters"), "train_config.json", "['max_iters'] are missing"),
    (damage_json("model_config.json", '{"arch": "gpt", '), "model_config.json", "not valid JSON"),
    (damage_json("train_config.json", "[1, 2]"), "train_config.json", "not an object of config fields"),
    (edit_config("train_config.json", max_iter=3), "train_config.json", "no field(s) ['max_iter']"),
    (damage_json("tokenizer.json", "{"), "tokenizer.json", "not valid UTF-8 JSON"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json", "does not exist"),
    (lambda d: torch.save({"w": Evil()}, d / "model.pt"), "model.pt", "carries code (posix.system)"),
])
def test_each_damaged_part_is_named_in_the_error(done, tmp_path, capsys, damage, file, says):
    import inference
    folder = tmp_path / "damaged"
    shutil.copytree(done, folder)
    damage(folder)
    with pytest.raises(tools.RunFolderError) as e:
        runs.load_run(folder)
    msg = str(e.value)
    assert str(folder / file) in msg and says in msg, msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    with pytest.raises(SystemExit) as exit_:  # the command line says the same, without a traceback
        inference.main([str(folder), "--max_new_tokens", "2"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and err.startswith("inference.py: error:")


def test_resume_checks_the_checkpoint_and_the_configs(done, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(done, folder)
    truncate("checkpoint.pt")(folder)
    with pytest.raises(tools.RunFolderError, match=f"{folder / 'checkpoint.pt'} is not a readable PyTorch file"):
        Trainer.resume(folder, progress=False, verbose=False, max_iters=6)  # done is finished: extend it
    shutil.copy(done / "checkpoint.pt", folder / "checkpoint.pt")
    edit_config("model_config.json", n_layer=2)(folder)
    with pytest.raises(tools.RunFolderError, match="checkpoint.pt has weights for 1 block .* n_layer = 2"):
        Trainer.resume(folder, progress=False, verbose=False, max_iters=6)


# --- issue 18.3: a run folder's files agree or are refused -------------------------------------------
def test_a_tokenizer_other_than_the_one_recorded_in_training_is_refused_naming_both_files(done, tmp_path):
    folder = tmp_path / "swapped"
    shutil.copytree(done, folder)
    recorded = tools.load_json(folder / "summary.json")["tokenizer_hash"]
    assert runs.load_run(folder)[2].hash() == recorded  # the intact folder loads
    swap_chars("a", "e")(folder)
    with pytest.raises(tools.RunFolderError) as e:
        runs.load_run(folder)
    msg = str(e.value)
    assert str(folder / "tokenizer.json") in msg and f"{folder / 'summary.json'} records {recorded}" in msg, msg
    with pytest.raises(tools.RunFolderError, match="summary.json records"):  # a resume reads it the same way
        Trainer.resume(folder, progress=False, verbose=False, max_iters=6)
    (folder / "summary.json").unlink()  # a folder without the record has nothing to be checked against
    runs.load_run(folder)


def test_the_tokenizer_hash_is_recorded_when_the_run_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "gradients", lambda self, lr: (_ for _ in ()).throw(RuntimeError("killed")))
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="killed"):
        run(out)
    summary = tools.load_json(out / "summary.json")  # begun with the configs: the figures never came
    assert "steps" not in summary and not (out / "README.md").exists()
    assert runs.load_run(out)[2].hash() == summary["tokenizer_hash"]  # the step-0 weights load
    swap_chars("a", "e")(out)
    with pytest.raises(tools.RunFolderError, match="summary.json records"):
        runs.load_run(out)


def test_every_shipped_run_has_complete_configs_and_its_recorded_tokenizer():
    """Shipped runs saved before some fields existed load with config.ADDED_FIELDS, never today's defaults;
    each one's tokenizer is the one its summary.json recorded."""
    folders = [*runs.shipped_runs(), *(p.parent for c in runs.shipped_collections()
                                        for p in sorted(c.rglob("model_config.json")))]
    assert len(folders) > len(runs.shipped_runs())
    for folder in folders:
        cfgs = runs.load_configs(folder)
        runs.load_tokenizer(folder, cfgs["model"])
        assert "tokenizer_hash" in tools.load_json(folder / "summary.json"), folder


def test_resume_of_a_finished_run_says_it_is_finished_and_how_to_extend_it(done, tmp_path, capsys):
    folder = tmp_path / "finished"
    shutil.copytree(done, folder)
    before = snapshot(folder)
    with pytest.raises(ConfigError) as e:
        Trainer.resume(folder, progress=False, verbose=False)
    msg = str(e.value)
    assert f"{folder} is finished" in msg and f"--resume {folder} --max_iters M, with M > 4" in msg, msg
    with pytest.raises(ConfigError, match="is finished: its log reached step 4 and max_iters = 3"):
        Trainer.resume(folder, progress=False, verbose=False, max_iters=3)  # no step left to train either
    with pytest.raises(SystemExit) as exit_:
        train.main(["--resume", str(folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("train.py: error:") and "is finished" in err
    assert snapshot(folder) == before  # nothing rewritten
    t = Trainer.resume(folder, progress=False, verbose=False, max_iters=6).run()  # a larger max_iters extends it
    assert [r["step"] for r in t.rows] == [0, 2, 4, 6] and t.stopped == ""


def test_a_run_whose_final_evaluation_was_cut_short_is_not_finished(done, tmp_path):
    folder = tmp_path / "cut"
    shutil.copytree(done, folder)
    rows = tools.read_log(folder / "log.csv")
    columns = (folder / "log.csv").read_text().splitlines()[0].split(",")
    tools.write_log(folder / "log.csv", rows[:-1], columns)  # as if Ctrl-C hit the step-4 evaluation
    t = Trainer.resume(folder, progress=False, verbose=False).run()
    assert [r["step"] for r in t.rows] == [0, 2, 4] and runs.run_status(folder) == "finished"


TEXT = "the quick brown fox jumps over the lazy dog. " * 10


def test_resume_on_an_edited_data_file_names_the_file_not_vocab_size(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    out = run(tmp_path / "run", data=str(data), max_iters=2).out
    Trainer.resume(out, progress=False, verbose=False, max_iters=4)  # the same file: resumes
    for edited in (TEXT + "Zebras!", TEXT.replace("z", "Z")):  # characters added; the same number, others
        data.write_text(edited)
        with pytest.raises(tools.RunFolderError) as e:
            Trainer.resume(out, progress=False, verbose=False, max_iters=4)
        msg = str(e.value)
        assert f"the data file {data} changed since the run began" in msg and "vocab_size" not in msg, msg
        assert str(out / "tokenizer.json") in msg and f"--init_from {out} --data {data}" in msg
    with pytest.raises(SystemExit) as exit_:
        train.main(["--resume", str(out), "--max_iters", "4"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"the data file {data} changed" in err
    data.write_text(TEXT)  # put back, it resumes again
    assert Trainer.resume(out, progress=False, verbose=False, max_iters=4).run().step == 4


@pytest.mark.parametrize("text", ["", "ab", "x" * 169], ids=["empty", "2 tokens", "169 tokens"])
def test_a_data_file_too_short_for_a_window_is_refused_naming_it_and_the_size_it_needs(tmp_path, capsys, text):
    data = tmp_path / "tiny.txt"
    data.write_text(text)
    with pytest.raises(ValueError) as e:
        train.make_source(mcfg(), tcfg(data=str(data)), progress=False)
    msg = str(e.value)
    assert msg.startswith(f"{data} is too short for block_size = 16: it holds {len(text)} tokens") and \
        "needs at least 170" in msg, msg
    with pytest.raises(SystemExit) as exit_:
        train.main(["--data", str(data), "--out", str(tmp_path / "run"), *map(str, TINY)])
    assert exit_.value.code == 2 and f"{data} is too short" in capsys.readouterr().err
    data.write_text("ab" * 85)  # 170 tokens: one window for validation (its last 10%) and one for training
    src, _ = train.make_source(mcfg(), tcfg(data=str(data)), progress=False)
    assert src.val and src.train_batch(np.random.default_rng(0), 0).x.shape == (2, 16)


def test_inference_on_a_run_still_training_says_it_reads_the_latest_saved_weights(done, tmp_path, capsys):
    import inference
    folder = tmp_path / "live"
    shutil.copytree(done, folder)
    inference.main([str(folder), "--max_new_tokens", "2"])
    assert "still being trained" not in capsys.readouterr().err  # a finished run: no note
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), out=str(folder))],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        inference.main([str(folder), "--max_new_tokens", "2"])
        err = capsys.readouterr().err
        assert err.strip() == (f"note: {folder} is still being trained; this reads the latest weights it saved, "
                               f"model.pt of step 4"), err
        inference.main([str(folder), "--max_new_tokens", "2", "--best"])
        assert "best_model.pt, the best up to step 4" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    inference.main([str(folder), "--max_new_tokens", "2"])  # its process is gone (a stale lock): no note
    assert "still being trained" not in capsys.readouterr().err


# --- 8. the run folder must be writable, checked before any work ------------------------------------
def test_an_unwritable_out_fails_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    def no_data(*a, **k):
        raise AssertionError("the data was read before the run folder was checked")

    monkeypatch.setattr(train, "make_source", no_data)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(tools.RunFolderError, match=f"cannot write the run folder {blocker / 'run'}"):
        Trainer(mcfg(), tcfg(), blocker / "run", progress=False, verbose=False)
    with pytest.raises(SystemExit) as e:
        train.main(["--out", str(blocker / "run")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "cannot write the run folder" in err and "--out" in err
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder stops only other users
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(tools.RunFolderError, match="cannot write the run folder"):
            Trainer(mcfg(), tcfg(), ro / "run", progress=False, verbose=False)


# --- 12/13. finished runs, and a run's README names a path that loads -------------------------------
def test_run_status_tells_finished_from_interrupted(done, tmp_path):
    assert runs.run_status(done) == "finished"
    folder = tmp_path / "more"
    shutil.copytree(done, folder)
    edit_config("train_config.json", max_iters=8)(folder)  # as if stopped half way
    assert runs.run_status(folder) == "unfinished"
    assert all(runs.run_status(p) == "finished" for p in runs.shipped_runs())


def test_the_readme_of_a_run_outside_trained_names_a_path_load_run_takes(done, tmp_path, monkeypatch):
    readme = (done / "README.md").read_text()
    assert f"runs.load_run({str(done.resolve())!r})" in readme
    monkeypatch.chdir(tmp_path)
    model, cfgs, tok = runs.load_run(str(done.resolve()))
    assert cfgs["train"].max_iters == 4
    assert runs.run_ref(tools.TRAINED / "gpt-builtin-reference") == "gpt-builtin-reference"
    runs.load_run("gpt-builtin-reference")  # a name under trained/, from any working directory


def test_a_run_that_fails_before_it_starts_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "deep" / "er" / "run"
    with pytest.raises(ValueError, match="neither a corpus name"):
        Trainer(mcfg(), tcfg(data=str(tmp_path / "no_such.txt")), out, progress=False, verbose=False)
    assert not (tmp_path / "deep").exists()
