"""Every memory mechanism of mnemo on one task, at equal size: the segmented Transformer (no memory),
Transformer-XL, RMT, Memory Mosaics, the Hourglass and a GPT that sees the whole example, on copy and on
associative retrieval, three seeds each. notebooks/12_memory_compared reads the runs.

    python experiments/memory_compared.py            # train what is missing (resumable), then the table
    python experiments/memory_compared.py --table    # the table from the run folders only

The segmented Transformer, XL and RMT are the RMT reproduction's runs (experiments/reproduce.py --claims rmt
rmt_retrieval, in trained/reproduce/rmt: copy 6 segments of 4 for 5,000 steps of 32 examples with the
curriculum over the number of segments; retrieval 4 segments of 3 for 7,500 steps of 128). The three
mechanisms that see the whole example at once train here, into trained/reproduce/memory, with the same
settings, steps, batches and seeds; they have no segments, so no curriculum (a curriculum counts segments).
They keep held-out examples apart (TrainConfig.heldout), as retrieval's runs do and copy's could not (they
predate held-out examples, so their evaluation leaves out every example they drew instead): all are scored on
the same held-out split. A new copy run trained without held-out examples could not be scored at all: drawn
with the evaluation's own seed, its first batches are the evaluation's examples.

Equal size: every model has 2 layers of width 64 with 4 heads (about 99,600 parameters), except the Hourglass,
whose smallest hierarchy has 3 layers (`1@1 1@2 1@1`: one at full length, one at half, one at full); it is
width 52 with 2 heads of 26 (RoPE needs an even head width) to stay within 2% of the others' parameters.

Each run is scored by the evaluation protocol (evaluation.stored_evaluation: greedy answers on examples no
training run drew). Seed 0 of every arm ships its weights, so the notebook can measure, on the trained
models, the bytes of state each carries and how far back each reads (evaluation.state_bytes, evaluation.reach).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runs  # noqa: E402
import tools  # noqa: E402
from config import model_config  # noqa: E402
from experiments import reproduce, rmt_figure4  # noqa: E402
from experiments.runner import Spec, run_all  # noqa: E402

SEEDS = reproduce.SEEDS
TASKS = ("copy", "retrieval")
# arm -> its label; the segmented Transformer, XL and RMT are the RMT reproduction's runs
ARMS = {"tf": "segmented Transformer", "xl": "Transformer-XL", "rmt": "RMT", "mm": "Memory Mosaics",
        "hourglass": "Hourglass", "gpt": "GPT, full context"}
WHOLE = {"gpt": ("gpt", {}),
         "mm": ("memory_mosaics", {"pos": "none"}),
         "hourglass": ("hourglass", {"hierarchy": "1@1 1@2 1@1", "n_layer": 0, "d_model": 52, "n_head": 2})}
SHAPE = {"copy": "6x4", "retrieval": "4x3"}


def folder(arm: str, task: str, seed: int) -> Path:
    """The run folder of one arm on one task at one seed."""
    sub = "rmt" if arm in ("tf", "xl", "rmt") else "memory"
    return tools.TRAINED / "reproduce" / sub / f"{arm}-{task}-{SHAPE[task]}-s{seed}"


def specs(quick: bool = False) -> list[Spec]:
    """The runs this script trains: the three arms that see the whole example, with the settings of the
    reproduction's runs of the same task and seed (seed by seed, every arm before the next seed)."""
    segmented = {(s.name.split("/")[-1]): s for s in reproduce.rmt_runs(quick, TASKS)}
    out = []
    for seed in (reproduce.QUICK_SEEDS if quick else SEEDS):
        for task in TASKS:
            base = segmented[f"rmt-{task}-{SHAPE[task]}-s{seed}"]
            for arm, (arch, fields) in WHOLE.items():
                mcfg = model_config(arch, **{**rmt_figure4.MODEL, **fields})
                out.append(Spec(f"reproduce/memory/{arm}-{task}-{SHAPE[task]}-s{seed}", mcfg,
                                replace(base.train, curriculum=0, heldout=True)))
    return out


# The rule, fixed on 2026-12-07 before any run of the three new arms had finished: each mechanism against the GPT
# that sees the whole example, task by task, on greedy per-token accuracy of held-out answers (val_acc), paired by
# seed, claim "matches" within the protocol's accuracy margin (evaluation.MARGINS["val_acc"]). "Matches" asks
# the question of this comparison: does carrying this much of the past cost accuracy, against carrying all of it?
BASELINE = "gpt"
METRIC = "val_acc"


def finished(arm: str, task: str) -> list[int]:
    """The seeds of SEEDS whose run of `arm` on `task` has finished."""
    return [s for s in SEEDS if runs.run_status(folder(arm, task, s)) == "finished"]


def accuracies(arm: str, task: str, seeds=None) -> list[float]:
    """The arm's val_acc on `task` (stored_evaluation), one per seed of `seeds` (default: every finished one)."""
    from evaluation import stored_evaluation
    return [stored_evaluation(folder(arm, task, s))[METRIC] for s in (finished(arm, task) if seeds is None else seeds)]


def verdicts(task: str) -> dict:
    """arm -> evaluation.Verdict of "the arm matches the full-context GPT" on `task`, paired by seed over the
    seeds both have finished."""
    from evaluation import judge, margin_for
    out, base = {}, finished(BASELINE, task)
    for arm in ARMS:
        if arm != BASELINE:
            both = [s for s in finished(arm, task) if s in base]
            out[arm] = judge(accuracies(arm, task, both), accuracies(BASELINE, task, both), lower_is_better=False,
                             margin=margin_for(METRIC), claim="matches")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", action="store_true", help="no training: the table from the run folders")
    args = p.parse_args(argv)
    if not args.table:
        tools.set_threads(1)
        run_all(specs(), tools.TRAINED)
    judged = {task: verdicts(task) for task in TASKS}
    print("greedy per-token accuracy on held-out examples, seed by seed; verdict of 'matches the GPT'")
    for task in TASKS:
        print(f"\n{task}")
        for arm, label in ARMS.items():
            v = judged[task].get(arm)
            print(f"  {label:22} " + " ".join(f"{a:.3f}" for a in accuracies(arm, task)) +
                  (f"   {v.outcome} (mean difference {v.mean:+.3f})" if v else "   (the baseline)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
