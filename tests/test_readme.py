"""The README is the front door: its commands must be the ones CI runs, and its results table must be the
one the code writes from the shipped run folders."""
from pathlib import Path

import model_comparison as mc
import runs

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_results_table_matches_the_shipped_runs():
    shipped = mc.load_runs(runs.shipped_runs())
    assert shipped, "trained/shipped.txt lists no run"
    expected = mc.readme_with_results(README, mc.markdown_table(shipped, stored=True))
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


def test_the_main_job_is_short_and_its_measured_time_is_stated():
    """The README states times that were measured, with the conditions, and the default job fits them."""
    from config import GPTConfig, TrainConfig
    t, m = TrainConfig(), GPTConfig()  # what python train.py trains
    assert t.max_iters * t.batch_size * m.block_size <= 1_000_000  # measured: 819,200 tokens in 111 s, one core
    start = README.index("## Two commands")
    section = README[start:README.index("## What you can do")]
    assert f"{t.max_iters} steps" in section and "about 3 minutes" not in README
    assert "measured" in section and "2 CPU cores" in section and "load average" in section
    assert "TESTS_TIME" not in section and "NOTEBOOKS_TIME" not in section
    assert "`python train.py`" in section and "`bash tests/run.sh`" in section


def test_the_readme_gives_the_cpu_only_torch_install():
    pin = next(l.strip() for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch=="))
    # one try only (pip retries an unreachable index for minutes), then the default index as the fallback
    cpu = f"pip install --retries 0 --timeout 15 {pin} --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in README and "out of reach" in README.split(cpu)[1].split("```")[0]
    assert "CUDA build" in README and "keep it pinned (an unpinned torch" not in README
    assert "unpinned torch pulls" not in (ROOT / "requirements.txt").read_text()
