"""Every decoder-only architecture at an equal budget: equal parameters (within 10%), equal training tokens,
the same data, schedule and seeds — the comparison mnemo exists for.

    python experiments/reference.py              # 6 architectures x 3 seeds, one after the other, one thread
    python experiments/reference.py --quick      # the same pipeline on tiny models (about a minute; CI)
    python experiments/reference.py --table      # no training: the table from the run folders
    python experiments/reference.py --readme     # ... and write it into README.md

Runs go to trained/reference/<arch>-s<seed> (normal run folders; `--quick` ones to
trained/quick/reference/, shared with `experiments/reproduce.py --quick`). An interrupted list resumes
where it stopped: run the same command again (finished runs are never retrained; see experiments/runner.py).

Every model: 4 layers' worth of width 64, 4 heads, RoPE, RMSNorm, GELU MLP, block 128 characters of the
built-in corpus; AdamW, lr 3e-3 cosine to 3e-4 after 30 warm-up steps, batch 16, 600 steps (1.2 M tokens).
What each architecture adds, chosen to keep the parameters equal (its config's `equal_budget`, so that every
registered causal language model is in the comparison):
- transformer_xl: segments of 32 with a memory of the 32 previous positions per layer;
- rmt: segments of 32 with 4 memory tokens (the 4 x 64 memory embedding: +0.1%);
- hourglass: `1@1 2@2 1@1` (the same 4 layers, the middle two at half length: avg shortening and repeat
  upsampling add no parameters; less compute than the GPT, the equal-compute claim is in reproduce.py);
- memory_mosaics: 4 blocks of contextual and persistent associative memories (+0.1%);
- hilt: 3 inter-layer transformers of width 16, one layer each (+7.6%).
Transformer-XL and RMT train as Transformer-XL's paper trains (`--stream true`): each of the 16 batch rows
reads its own contiguous part of the text, window after window, with the memory carried from step to step;
the others read random windows, each alone (they carry nothing from one window to the next).
Evaluation (`evaluation.evaluate_run`, kept in each folder's evaluation.json): the same 8 x 16
validation windows for every run (seed 0): loss of the final weights, bits per character, top-1 and top-5
accuracy; loss by position in the context; and the validation text read in order (`stream_bpc`: XL and RMT
carry their memory from window to window, the others read consecutive windows each alone). From each run's log: the best validation loss the loop measured
(on validation batches drawn with the run's own seed) and tokens per second of training (one thread, on a
machine other jobs shared: only a ratio between runs means anything, and only roughly).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools  # noqa: E402
from config import MODEL_CONFIGS, TrainConfig, model_class, model_config  # noqa: E402
from evaluation import stored_evaluation  # noqa: E402
from experiments.runner import Spec, run_all  # noqa: E402
from modules import CAUSAL, architectures  # noqa: E402
from runs import run_status  # noqa: E402

SEEDS = (0, 1, 2)
MODEL = dict(tokenizer="char", block_size=128, n_layer=4, d_model=64, n_head=4)
TRAIN = dict(data="builtin", max_iters=600, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_iters=30,
             eval_interval=100, eval_iters=8, sample_len=200, threads=1)
QUICK_MODEL = dict(tokenizer="char", block_size=32, n_layer=2, d_model=16, n_head=2)
QUICK_TRAIN = dict(data="builtin", max_iters=6, batch_size=4, warmup_iters=0, eval_interval=3, eval_iters=1,
                   sample_len=0, threads=1)


def archs(model: dict) -> dict[str, dict]:
    """Every registered causal language model -> the fields beyond `model` that make it the peer of a GPT of
    that size (its config's `equal_budget`): a newly registered architecture joins the comparison by itself."""
    return {arch: MODEL_CONFIGS[arch].equal_budget(model["n_layer"], model["d_model"], model["block_size"])
            for arch in architectures(CAUSAL)}


def specs(quick: bool = False, seeds=SEEDS) -> list[Spec]:
    """The runs of the comparison, architecture by architecture, seed by seed."""
    model, train = (QUICK_MODEL, QUICK_TRAIN) if quick else (MODEL, TRAIN)
    return [Spec(f"{arch}-s{seed}", model_config(arch, **{**model, **fields}),
                 TrainConfig(**train, seed=seed, stream=model_class(arch).carries_memory))
            for arch, fields in archs(model).items() for seed in seeds]


def folder(quick: bool = False) -> Path:
    return tools.TRAINED / "quick" / "reference" if quick else tools.TRAINED / "reference"


# --- results ----------------------------------------------------------------------------------------
def results(folders: list[Path]) -> dict[str, list[dict]]:
    """arch -> the stored evaluation of each of its runs (evaluation.stored_evaluation)."""
    out: dict[str, list[dict]] = {}
    for f in folders:
        out.setdefault(tools.load_json(f / "model_config.json")["arch"], []).append(stored_evaluation(f))
    return out


def mean_std(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def part(by_position, start: int, stop: int, eighths: int = 8) -> float:
    """Mean loss over the context positions from start/8 to stop/8 of its length."""
    T = len(by_position)
    return statistics.mean(by_position[T * start // eighths: T * stop // eighths])


def markdown(by_arch: dict[str, list[dict]]) -> str:
    """One row per architecture, mean ± std over its seeds."""
    head = ["arch", "seeds", "params", "tokens/s", "best val loss (log)", "val loss", "bits per char", "top-1",
            "top-5", "stream bits per char", "loss, first 1/8 of the context", "loss, second half"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch, rs in by_arch.items():
        col = lambda k: [r[k] for r in rs]
        rows.append("| " + " | ".join([
            arch, str(len(rs)), f"{rs[0]['params']:,}", f"{statistics.mean(col('tokens_per_s')):,.0f}",
            mean_std(col("best_val_loss"), 3), mean_std(col("val_loss"), 3), mean_std(col("bpc"), 3),
            mean_std(col("top1"), 3), mean_std(col("top5"), 3), mean_std(col("stream_bpc"), 3),
            mean_std([part(r["by_position"], 0, 1) for r in rs], 3),
            mean_std([part(r["by_position"], 4, 8) for r in rs], 3)]) + " |")
    return "\n".join(rows)


MARKERS = ("<!-- reference:start (written by python experiments/reference.py --readme) -->",
           "<!-- reference:end -->")


def readme_with_table(text: str, table: str) -> str:
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    return text[:start] + "\n" + table + "\n" + text[end:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny models, a few steps: the pipeline in about a minute")
    p.add_argument("--table", action="store_true", help="no training: print the table from the run folders")
    p.add_argument("--readme", action="store_true", help="no training: write the table into README.md")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    a = p.parse_args(argv)
    tools.set_threads(1)
    runs = specs(a.quick, a.seeds)
    root = folder(a.quick)
    if a.table or a.readme:
        folders = [root / s.name for s in runs]
        missing = [str(f) for f in folders if run_status(f) != "finished"] if root.exists() else [str(root)]
        if missing:
            raise SystemExit(f"not finished yet: {missing}; train them with: python experiments/reference.py"
                             + (" --quick" if a.quick else ""))
    else:
        folders = run_all(runs, root)
    table = markdown(results(folders))
    print(table)
    if a.readme:
        readme = tools.ROOT / "README.md"
        tools.atomic_write_text(readme, readme_with_table(readme.read_text(), table))
        print(f"wrote the table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
