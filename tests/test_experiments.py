"""Tests of experiments/ (issue 13): the whole reproduction runs end to end (--quick), an interrupted list
resumes without retraining what finished, and the shipped results page and README table say what the run
folders hold (a test fails when one is stale)."""
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

import evaluation
import runs
import tools
from config import TrainConfig, model_config
from experiments import reference, reproduce, runner
from train import Trainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def trained(tmp_path, monkeypatch):
    """An empty trained/ for the experiments to write into."""
    monkeypatch.setattr(tools, "TRAINED", tmp_path / "trained")
    return tmp_path / "trained"


# --- one command, end to end ------------------------------------------------------------------------
# every word evaluation.judge can write (the rule itself: tests/test_verdicts.py)
OUTCOMES = {"reproduced", "not reproduced: behind", "not reproduced: no difference", "inconclusive",
            "not reproduced: behind on every seed", "not reproduced: ahead (better than a match)"}


def test_quick_reproduction_writes_a_page_with_a_verdict_for_every_comparison(trained):
    assert reproduce.main(["--quick"]) == 0
    page = (trained / "quick" / "RESULTS.md").read_text()
    for claim in reproduce.CLAIMS:
        assert f"## {claim.title}" in page
        assert (trained / "quick" / "figures" / f"{claim.key}.png").stat().st_size > 1000
        for c in claim.comparisons:
            row = next(l for l in page.splitlines() if l.startswith(f"| {c.label} |"))
            assert row.rstrip(" |").rsplit("| ", 1)[1] in OUTCOMES
    assert "Not run yet" not in page
    # each claim opens with its scale, from the folders; the preamble states the rule and every margin
    assert page.count("**Scale.** Ours: ") == len(reproduce.CLAIMS) and "Ours: not run yet" not in page
    assert "**The verdict**" in page and all(f"`{m}` {v:.3f}" in page for m, v in evaluation.MARGINS.items())
    # every run of every claim finished and carries its stored evaluation
    names = {s.name for c in reproduce.CLAIMS for s in c.runs(True)}
    assert all(runs.run_status(trained / "quick" / n) == "finished" for n in names)
    assert all((trained / "quick" / n / "evaluation.json").exists() for n in names)
    # the page is written from the folders alone: rewriting it gives the same text
    assert reproduce.page(True, draw=False) == page


def test_a_claim_not_trained_yet_is_listed_with_its_command(trained):
    text = reproduce.page(True, draw=False)
    assert text.count("**Not run yet**") == len(reproduce.CLAIMS)
    assert "python experiments/reproduce.py --quick --claims hilt" in text


def test_shipped_one_seed_runs_are_reported_not_judged_until_the_seeds_are_trained():
    claim = next(c for c in reproduce.CLAIMS if c.key == "rmt_retrieval")
    text, seconds, verdicts = reproduce.claim_section(claim, False, reproduce.FIGURES, ROOT, draw=False)
    if "**Not run yet**" not in text:
        pytest.skip("the reproduction's retrieval runs are all trained: the claim is judged on its seeds")
    assert "--claims rmt_retrieval" in text and f"seed {reproduce.rmt_figure4.SEED}" in text and not seconds
    assert len(verdicts) == len(claim.comparisons)
    assert all(v.endswith("**one seed: not judged**") for v in verdicts)
    for c in claim.comparisons:
        row = next(l for l in text.splitlines() if l.startswith(f"| {c.label} |"))
        assert row.endswith("| 1 | one seed: not judged |") and "(one seed)" in row


# --- an interrupted list resumes --------------------------------------------------------------------
def tiny(name: str, seed: int) -> runner.Spec:
    return runner.Spec(name, model_config("gpt", n_layer=1, d_model=16, n_head=2, block_size=16),
                       TrainConfig(max_iters=6, batch_size=2, eval_interval=3, eval_iters=1, sample_len=0,
                                   seed=seed))


def test_an_interrupted_list_resumes_where_it_stopped(tmp_path, monkeypatch):
    specs = [tiny("a", 0), tiny("b", 1), tiny("c", 2)]
    step, calls = Trainer.gradients, {"n": 0}

    def interrupted_once(self, lr):
        calls["n"] += 1
        if calls["n"] == 6 + 5:  # run b's 5th step: after its checkpoint at step 3
            raise KeyboardInterrupt
        return step(self, lr)

    monkeypatch.setattr(Trainer, "gradients", interrupted_once)
    with pytest.raises(SystemExit, match="(?s)b: interrupted at step 4.*run the same command again"):
        runner.run_all(specs, tmp_path, progress=False)
    assert runs.run_status(tmp_path / "a") == "finished" and not (tmp_path / "c").exists()
    assert runner.steps_done(tmp_path / "b") == 4
    a_weights = (tmp_path / "a" / "model.pt").stat().st_mtime_ns
    calls["n"] = 0
    runner.run_all(specs, tmp_path, progress=False)
    assert calls["n"] == 2 + 6                     # b's last 2 steps and c: a was not retrained
    assert (tmp_path / "a" / "model.pt").stat().st_mtime_ns == a_weights
    assert all(runs.run_status(tmp_path / n) == "finished" for n in "abc")
    # b resumed bit-exactly: the same final loss as b trained without a stop
    monkeypatch.setattr(Trainer, "gradients", step)
    runner.run_all([tiny("b", 1)], tmp_path / "again", progress=False)
    log = lambda f: tools.read_log(f / "log.csv")[-1]
    assert log(tmp_path / "b")["val_loss"] == log(tmp_path / "again" / "b")["val_loss"]


def test_ctrl_c_between_runs_ends_the_list_with_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    specs = [tiny("a", 0), tiny("b", 1)]
    real = Trainer.__init__

    def start(self, *a, **kw):  # Ctrl-C while run b starts (reading its data)
        if Path(a[2]).name == "b":
            raise KeyboardInterrupt
        real(self, *a, **kw)

    monkeypatch.setattr(Trainer, "__init__", start)
    with pytest.raises(SystemExit) as e:
        runner.run_all(specs, tmp_path, progress=False)
    err = capsys.readouterr().err
    assert e.value.code == 130 and "interrupted during the start of a run" in err and "Traceback" not in err
    assert runs.run_status(tmp_path / "a") == "finished" and not (tmp_path / "b").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    spec = tiny("a", 0)
    Trainer(spec.model, spec.train, tmp_path / "a", progress=False, verbose=False).save_configs()  # no weights
    assert runs.run_status(tmp_path / "a") == "unfinished"
    runner.run_all([spec], tmp_path, progress=False)
    assert runs.run_status(tmp_path / "a") == "finished"


def test_a_stored_evaluation_follows_the_weights(tmp_path):
    spec = tiny("a", 0)
    runner.run_all([spec], tmp_path, progress=False)
    first = evaluation.stored_evaluation(tmp_path / "a")
    assert first["weights"] and math.isfinite(first["val_loss"]) and len(first["by_position"]) == 16
    stored = tools.load_json(tmp_path / "a" / "evaluation.json")
    tools.save_json(tmp_path / "a" / "evaluation.json", {**stored, "val_loss": -1.0})  # cached: read back
    assert evaluation.stored_evaluation(tmp_path / "a")["val_loss"] == -1.0
    tools.save_json(tmp_path / "a" / "evaluation.json", {**stored, "weights": "0" * 16})  # other weights
    assert evaluation.stored_evaluation(tmp_path / "a")["val_loss"] == first["val_loss"]


# --- the shipped results agree with the shipped run folders -----------------------------------------
def shipped(*parts) -> Path:
    return tools.TRAINED.joinpath(*parts)


def test_the_results_page_is_the_one_the_run_folders_give():
    assert (ROOT / "RESULTS.md").read_text() == reproduce.page(False, draw=False), \
        "RESULTS.md is stale: run python experiments/reproduce.py --page"


def test_the_readme_reference_table_is_the_one_the_run_folders_give():
    """The README's table is the larger reference scale's (tiny-shakespeare)."""
    folders = [reference.folder(scale="shakespeare") / s.name for s in reference.specs(scale="shakespeare")]
    command = "python experiments/reference.py --scale shakespeare"
    assert all(runs.run_status(f) == "finished" for f in folders), f"train them: {command}"
    readme = (ROOT / "README.md").read_text()
    table = reference.markdown(reference.results(folders))
    assert readme == reference.readme_with_table(readme, table), f"README's reference table is stale: run {command} --readme"


def test_a_stored_evaluation_is_what_evaluating_the_run_gives_today():
    """evaluation.json is a cache: scoring the weights again gives the same numbers (here for one run of each
    kind: a corpus run and a task run), so a page written from the caches says what the weights do."""
    for folder in (shipped("reference", "gpt-s0"), shipped("reproduce", "hmu", "hmu-hierarchical-s0")):
        if not folder.exists():
            pytest.fail(f"{folder} is not shipped: run python experiments/reproduce.py")
        stored = tools.load_json(folder / "evaluation.json")
        fresh = evaluation.evaluate_run(folder)
        for k, v in fresh.items():
            assert float(v) == pytest.approx(stored[k], rel=1e-4, abs=1e-6), (folder, k)


def test_the_readme_names_the_experiment_commands():
    readme = (ROOT / "README.md").read_text()
    assert "python experiments/reference.py" in readme and "python experiments/reproduce.py" in readme
    assert re.search(r"\[RESULTS\.md\]\(RESULTS\.md\)", readme)


def test_a_folder_holding_a_run_of_other_configs_is_refused_before_anything_trains(tmp_path):
    runner.run_all([tiny("a", 0)], tmp_path, progress=False)
    spec = tiny("a", 0)
    changed = replace(spec, train=replace(spec.train, max_iters=8))
    with pytest.raises(SystemExit, match=r"(?s)a: train max_iters: 6 -> 8.*move them away"):
        runner.run_all([tiny("b", 1), changed], tmp_path, progress=False)
    assert not (tmp_path / "b").exists()


def test_a_run_shipped_without_weights_keeps_its_scores_and_its_command_retrains_it(tmp_path):
    """A run that ships without model.pt (the repository stays lean) keeps its stored scores, which record the
    weights' sha256 and the train.py command that trains them again: that command gives the same weights."""
    from train import main as train_main
    runner.run_all([tiny("a", 0)], tmp_path, progress=False)
    stored = evaluation.stored_evaluation(tmp_path / "a")
    assert stored["weights_sha256"][:16] == stored["weights"] and stored["retrain"].startswith("python train.py")
    for name in ("model.pt", "best_model.pt", "checkpoint.pt"):
        (tmp_path / "a" / name).unlink()
    assert evaluation.stored_evaluation(tmp_path / "a") == stored
    command = stored["retrain"].split()
    assert command[-2] == "--out" and command[command.index("--seed") + 1] == "0"
    assert train_main(command[2:-1] + [str(tmp_path / "again"), "--progress", "false"]) == 0
    assert tools.sha256_of(tmp_path / "again" / "model.pt") == stored["weights_sha256"]


def test_every_shipped_experiment_run_is_finished_and_evaluated():
    collections = runs.shipped_collections()
    assert {c.name for c in collections} == {"reference", "reference_shakespeare", "reproduce", "spread"}
    folders = [p.parent for c in collections for p in c.rglob("model_config.json")]
    assert len(folders) >= 18
    for run in folders:
        assert runs.run_status(run) == "finished", run
        assert tools.load_json(run / "evaluation.json")["version"] == evaluation.EVALUATION_VERSION, run


def test_two_processes_share_a_list_each_skipping_the_run_the_other_trains(tmp_path, monkeypatch, capsys):
    specs = [tiny("a", 0), tiny("b", 1), tiny("c", 2)]
    (tmp_path / "b").mkdir()
    with runs.RunLock(tmp_path / "b"):  # "another process" trains b for the whole list
        runner.run_all(specs, tmp_path, progress=False)
        assert runs.run_status(tmp_path / "b") == "training"
    assert "another process is training it; skipping it here" in capsys.readouterr().out
    assert [runs.run_status(tmp_path / n) for n in "abc"] == ["finished", "unfinished", "finished"]
    assert not (tmp_path / "b" / "model.pt").exists()  # the skipped run was left alone
    # both saw d absent: the other process claims it between this one's look and its start; this one skips it
    real, other = Trainer.run, runs.RunLock(tmp_path / "d")
    monkeypatch.setattr(Trainer, "run", lambda self: (other.__enter__(), real(self)))
    try:
        runner.run_all([tiny("d", 3)], tmp_path, progress=False)
        assert runs.run_status(tmp_path / "d") == "training"
    finally:
        other.__exit__(None, None, None)
    assert "another process started it a moment ago; skipping it here" in capsys.readouterr().out


def test_both_scales_side_by_side_pair_each_contender_with_the_gpt_of_its_seed():
    runs_of = lambda *bpc: [{"bpc": b} for b in bpc]
    by_scale = {"builtin": {"gpt": runs_of(2.0, 2.2), "hilt": runs_of(1.9, 2.3)},
                "shakespeare": {"gpt": runs_of(1.5, 1.6), "hilt": runs_of(1.4, 1.4), "rmt": runs_of(1.7, 1.7)}}
    rows = reference.side_by_side(by_scale).splitlines()
    assert rows[0] == ("| contender | built-in corpus: bpc | built-in corpus: minus gpt's | tiny-shakespeare: bpc "
                       "| tiny-shakespeare: minus gpt's |")
    assert rows[3] == "| hilt | 2.100 ± 0.283 | 0.000 ± 0.141 | 1.400 ± 0.000 | -0.150 ± 0.071 |"  # paired by seed
    assert rows[4] == "| rmt |  |  | 1.700 ± 0.000 | 0.150 ± 0.071 |"  # a contender of one scale only
