"""The margins of the verdicts, measured before the runs they judge: the baseline's seed-to-seed spread.

    python experiments/margins.py            # trains the spare-seed baselines that are missing, prints the spread
    python experiments/margins.py --quick    # the pipeline on tiny models (CI)

A difference between two architectures smaller than the spread of one architecture over seeds is not a
difference the page should call one. So the margin of a language-modelling verdict is the sample standard
deviation of the GPT baseline's score over SPREAD_SEEDS, seeds that no comparison uses (the comparisons use
0, 1, 2), trained with the reference configs (experiments/reference.py). The rule was fixed before these runs
were trained; `evaluation.MARGINS` holds the numbers they gave, and a test checks that the two agree.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools  # noqa: E402
from config import TrainConfig, model_config  # noqa: E402
from evaluation import stored_evaluation  # noqa: E402
from experiments import reference  # noqa: E402
from experiments.runner import Spec, run_all  # noqa: E402

SPREAD_SEEDS = (10, 11, 12, 13, 14)
QUICK_SEEDS = (10, 11)
METRICS = ("bpc", "stream_bpc")


def specs(quick: bool = False) -> list[Spec]:
    """The GPT of the reference comparison at every spare seed."""
    model, train = (reference.QUICK_MODEL, reference.QUICK_TRAIN) if quick else (reference.MODEL, reference.TRAIN)
    return [Spec(f"gpt-s{seed}", model_config("gpt", **model), TrainConfig(**train, seed=seed))
            for seed in (QUICK_SEEDS if quick else SPREAD_SEEDS)]


def folder(quick: bool = False) -> Path:
    return tools.TRAINED / "quick" / "spread" if quick else tools.TRAINED / "spread" / "reference"


def spread(folders: list[Path]) -> dict[str, float]:
    """metric -> sample standard deviation of the runs' stored scores."""
    scores = [stored_evaluation(f) for f in folders]
    return {m: statistics.stdev(s[m] for s in scores) for m in METRICS if all(m in s for s in scores)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, a few steps: the pipeline, not results")
    a = p.parse_args(argv)
    tools.set_threads(1)
    folders = run_all(specs(a.quick), folder(a.quick))
    for m, sd in spread(folders).items():
        print(f"{m}: seed-to-seed standard deviation of the GPT over {len(folders)} spare seeds: {sd:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
