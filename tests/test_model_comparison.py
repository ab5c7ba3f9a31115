"""Tests of model_comparison.py and the trained/ folder's place in git (issue 7): only finished runs are
compared unless asked, curves never mix losses that mean different things, every run keeps a distinct style,
the legend stays off the curves, and the runs a user trains do not dirty the checkout."""
import shutil
import subprocess
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import data  # noqa: E402
import evaluation  # noqa: E402
import model_comparison as mc  # noqa: E402
import runs  # noqa: E402
import tools  # noqa: E402
from config import TrainConfig, model_config  # noqa: E402
from train import Trainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# --- git: only shipped runs are tracked -------------------------------------------------------------
def test_gitignore_un_ignores_exactly_the_shipped_runs():
    lines = (ROOT / ".gitignore").read_text().splitlines()
    unignored = {l[len("!/trained/"):].rstrip("/") for l in lines if l.startswith("!/trained/")}
    assert "/trained/*" in lines
    shipped = runs.shipped_runs() + runs.shipped_collections()
    assert unignored - {"shipped.txt"} == {p.name for p in shipped}


def test_a_users_run_does_not_dirty_the_checkout():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored("trained/gpt-builtin-20990101-000000/model.pt")
    assert ignored("trained/my-run/log.csv")
    for p in runs.shipped_runs():
        assert not ignored(f"trained/{p.name}/model.pt") and not ignored(f"trained/{p.name}/README.md")
    for c in runs.shipped_collections():
        for name in ("log.csv", "evaluation.json"):
            assert not ignored(f"trained/{c.name}/gpt-s0/{name}")
        assert ignored(f"trained/{c.name}/gpt-s0/checkpoint.pt")  # the optimizer state stays home
    # an experiment's runs ship without weights (evaluation.json keeps their scores, sha256 and retrain
    # command), but those a notebook or test loads
    for run in ("reference_shakespeare/gpt-s0", "reproduce/rmt/rmt-copy-6x4-s1", "reproduce/rmt/rmt-reverse-4x4-s0"):
        assert ignored(f"trained/{run}/model.pt")
    for run in ("reference/gpt-s0", "reference/gpt-s2", "reproduce/hmu/hmu-random-s0", "reproduce/rmt/rmt-copy-6x4-s0",
                "reproduce/memory/hourglass-retrieval-4x3-s0"):
        assert not ignored(f"trained/{run}/model.pt")
    assert not ignored("trained/shipped.txt")


# --- only finished runs unless asked ----------------------------------------------------------------
@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """A finished run, one stopped half way (as after Ctrl-C), and one still training (its lock held)."""
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("runs")
    mp.setattr(data, "CACHE", base / "cache")
    done = base / "done"
    Trainer(model_config("gpt", n_layer=1, d_model=32, n_head=2, block_size=16),
            TrainConfig(max_iters=2, eval_interval=1, eval_iters=1, batch_size=2, sample_len=0), done,
            progress=False, verbose=False).run()
    half, busy = base / "half", base / "busy"
    for d in (half, busy):
        shutil.copytree(done, d)
    cfg = tools.load_json(half / "train_config.json")
    tools.save_json(half / "train_config.json", {**cfg, "max_iters": 10})
    yield done, half, busy
    mp.undo()


def test_comparison_skips_unfinished_and_training_runs_unless_asked(three_runs, capsys, monkeypatch):
    done, half, busy = three_runs
    with runs.RunLock(busy):
        assert [runs.run_status(d) for d in three_runs] == ["finished", "unfinished", "training"]
        assert mc.main([str(d) for d in three_runs]) == 0
        out, err = capsys.readouterr()
        assert "| done |" in out and "| half |" not in out and "| busy |" not in out
        assert "half (unfinished)" in err and "busy (training)" in err and "--include_unfinished" in err
        assert mc.main([*map(str, three_runs), "--include_unfinished"]) == 0
        out = capsys.readouterr().out
        assert all(f"| {d.name} |" in out for d in three_runs)
        monkeypatch.setattr(mc, "run_dirs", lambda: list(three_runs))  # the default: every run in trained/
        assert [r.name for r in mc.load_runs()] == ["done"]
        assert [r.name for r in mc.load_runs(include_unfinished=True)] == ["done", "half", "busy"]


# --- the plot ---------------------------------------------------------------------------------------
def fake_run(name, task="", tokenizer="char", seed=0):
    log = [{"step": s, "tokens": 100 * s, "elapsed_s": 1.0 * s, "val_loss": 3.0 - s / 10 - seed / 100}
           for s in range(0, 11, 2)]
    return mc.Run(Path(name), model_config("gpt", tokenizer=tokenizer),
                  TrainConfig(task=task, task_len=6 if task else 8), log)


def test_curves_are_grouped_by_what_their_losses_mean_and_every_run_stays_distinguishable():
    runs = ([fake_run(f"lm{i}", seed=i) for i in range(22)] + [fake_run("bpe", tokenizer="bpe-512")]
            + [fake_run(f"copy{i}", task="copy", seed=i) for i in range(3)])
    fig = mc.plot_grouped(runs)
    axes = fig.axes
    assert len(axes) == 3 * 3  # char corpus, BPE corpus, copy task: one row each, step / tokens / seconds
    kinds = {}
    for ax in axes:
        names = {line.get_label() for line in ax.get_lines()}
        kind = {mc.loss_kind(r) for r in runs if r.name in names}
        assert len(kind) == 1, f"an axis mixes losses of different kinds: {kind}"
        kinds.setdefault(kind.pop(), set()).update(names)
    assert len(kinds) == 3 and kinds["corpus builtin, char tokens: nats per token"] == {f"lm{i}" for i in range(22)}
    styles = {}
    for ax in axes:
        for line in ax.get_lines():
            styles.setdefault(line.get_label(), (matplotlib.colors.to_hex(line.get_color()), line.get_linestyle(),
                                                 line.get_marker()))
    assert len(set(styles.values())) == len(runs)  # 26 runs, 26 distinct (colour, line style, marker)
    fig.canvas.draw()
    for ax in axes:
        legend = ax.get_legend()
        if legend is not None:
            box, frame = legend.get_window_extent(), ax.get_window_extent()
            assert box.x0 >= frame.x1, "the legend covers the curves"
    assert sum(ax.get_legend() is not None for ax in axes) == 3  # one per row, beside it


def test_plot_cli_writes_the_grouped_figure(tmp_path):
    out = tmp_path / "curves.png"
    shipped = [str(p) for p in runs.shipped_runs()][:3] + [str(tools.TRAINED / "tf-copy-6x4")]
    assert mc.main([*shipped, "--plot", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_a_plot_path_savefig_would_fail_on_is_refused_before_any_run_is_loaded(tmp_path, monkeypatch, capsys):
    bad = [(tmp_path / "missing" / "c.png", f"the folder {tmp_path / 'missing'} does not exist"),
           (tmp_path / "c.bmp", "'.bmp' is not an image format matplotlib writes"),
           (tmp_path / "c", "the file name has no extension"),
           (tmp_path, "is a folder")]
    if shutil.which("xelatex") is None:  # pgf is a format matplotlib lists, but writing it needs LaTeX
        bad.append((tmp_path / "c.pgf", "matplotlib cannot write .pgf here"))
    with monkeypatch.context() as m:
        m.setattr(mc, "load_runs", lambda *a, **k: pytest.fail("runs were loaded before the --plot check"))
        for path, says in bad:
            with pytest.raises(SystemExit) as e:
                mc.main(["gpt-builtin-reference", "--eval", "--plot", str(path)])
            err = capsys.readouterr().err
            assert e.value.code == 2 and f"--plot {path}" in err and says in err, err
            assert "Traceback" not in err and (".png" in err or "is a folder" in err)  # what would be valid
    assert not (tmp_path / "missing").exists()
    # the control: a good path passes the check, and the evaluation starts
    monkeypatch.setattr(evaluation, "stored_evaluation", lambda *a, **k: pytest.fail("evaluation reached"))
    with pytest.raises(pytest.fail.Exception, match="evaluation reached"):
        mc.main(["gpt-builtin-reference", "--eval", "--plot", str(tmp_path / "C.PDF")])
