"""The README is the front door: its commands must be the ones CI runs, and its results table must be the
one the code writes from the shipped run folders."""
from pathlib import Path

import model_comparison as mc
import tools

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_results_table_matches_the_shipped_runs():
    runs = mc.load_runs(tools.shipped_runs())
    assert runs, "trained/shipped.txt lists no run"
    expected = mc.readme_with_results(README, mc.markdown_table(runs))
    assert README == expected, "README results are stale: run python model_comparison.py --readme"


def test_two_setup_commands_are_the_ones_ci_runs():
    assert "pip install -r requirements.txt && python train.py\n" in README
    assert "pip install -r requirements.txt && bash tests/run.sh\n" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "-r requirements.txt" in ci and "bash tests/run.sh" in ci


def test_requirements_pin_torch():
    lines = [l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [l for l in lines if l and not l.startswith("#")]
    assert "torch==2.13.0" in reqs
    assert all("==" in r for r in reqs), f"every requirement is pinned: {reqs}"
