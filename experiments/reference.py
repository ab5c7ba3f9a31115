"""Every decoder-only architecture at an equal budget: equal parameters (within 10%), equal training tokens,
the same data, schedule and seeds — the comparison mnemo exists for.

    python experiments/reference.py                      # the built-in scale: 12 contenders x 3 seeds, one thread
    python experiments/reference.py --scale shakespeare  # the tiny-shakespeare scale (below; the README's table)
    python experiments/reference.py --quick      # the same pipeline on tiny models (about a minute; CI)
    python experiments/reference.py --table      # no training: the table from the run folders
    python experiments/reference.py --readme     # ... and write it into README.md

Runs go to trained/reference/<contender>-s<seed> (trained/reference_shakespeare/ for the tiny-shakespeare scale;
normal run folders; `--quick` ones under trained/quick/, shared with `experiments/reproduce.py --quick`). Two
processes given the same command share its list (each skips the run the other trains). An interrupted list resumes
where it stopped: run the same command again (finished runs are never retrained; see experiments/runner.py).

Every model: 4 layers' worth of width 64, 4 heads, RoPE, RMSNorm, GELU MLP, block 128 characters of the
built-in corpus; AdamW, lr 3e-3 cosine to 3e-4 after 30 warm-up steps, batch 16, 600 steps (1.2 M tokens).
What each architecture adds, chosen to keep the parameters equal (its config's `equal_budget`, so that every
registered causal language model is in the comparison):
- transformer_xl: segments of 32 with a memory of the 32 previous positions per layer;
- rmt: segments of 32 with 4 memory tokens (the 4 x 64 memory embedding: +0.1%);
- hourglass: `1@1 2@2 1@1` (the same 4 layers, the middle two at half length: avg shortening and repeat
  upsampling add no parameters; less compute than the GPT);
- memory_mosaics: 4 blocks of contextual and persistent associative memories (+0.1%);
- hilt: 3 inter-layer transformers of width 16, one layer each (+7.6%).
Transformer-XL and RMT train as Transformer-XL's paper trains (`--stream true`): each of the 16 batch rows
reads its own contiguous part of the text, window after window, with the memory carried from step to step;
the others read random windows, each alone (they carry nothing from one window to the next).
Beside them, the variants that tell a lead's causes apart (`contenders`): the GPT and the Hourglass with
nanoGPT's learned positions and LayerNorm, the Hourglass at equal compute, XL and RMT at each other's memory
size, XL trained on random windows.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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

# The tiny-shakespeare scale: nanoGPT's CPU "baby" run of its README (4 layers, width 128, 4 heads, context 64,
# batch 12, 2,000 steps, no dropout) with the schedule of its config/train_shakespeare_char.py (lr 1e-3 cosine to
# 1e-4 after 100 warm-up steps, AdamW beta2 0.99, weight decay 0.1, gradients clipped at 1; its weight decay also
# reaches the embeddings, mnemo's never does). About 0.8 M parameters, 1.5 M characters seen a run.
SHAKESPEARE_MODEL = dict(tokenizer="char", block_size=64, n_layer=4, d_model=128, n_head=4)
SHAKESPEARE_TRAIN = dict(data="shakespeare", max_iters=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_iters=100,
                         beta2=0.99, weight_decay=0.1, eval_interval=250, eval_iters=20, sample_len=200, threads=1)
NANOGPT = dict(pos="learned", norm="layer")  # nanoGPT's blocks: learned absolute positions, LayerNorm (no biases)


@dataclass(frozen=True)
class Arm:
    """One contender of a scale: its architecture and the fields beyond the scale's model that make it."""
    arch: str
    fields: dict
    what: str = ""  # how it differs from the architecture at equal budget, for tables (empty: it is that)


def archs(model: dict) -> dict[str, dict]:
    """Every registered causal language model -> the fields beyond `model` that make it the peer of a GPT of
    that size (its config's `equal_budget`): a newly registered architecture joins the comparison by itself."""
    return {arch: MODEL_CONFIGS[arch].equal_budget(model["n_layer"], model["d_model"], model["block_size"])
            for arch in architectures(CAUSAL)}


def contenders(model: dict, hilt: dict | None = None) -> dict[str, Arm]:
    """Every registered causal language model at equal budget (`archs`; HILT's fields `hilt` where given), and the
    variants that tell a lead's causes apart:
    - gpt-nanogpt, hourglass-nanogpt: nanoGPT's learned positions and LayerNorm in place of RoPE and RMSNorm
      (the GPT most papers beat; a lead that comes from the positions shows as gpt ahead of gpt-nanogpt too);
    - hourglass-equal-compute: `1@1 N@2 1@1` for the GPT's N layers, N + 2 layers at the same matrix work per
      token (1 + N/2 + 1) with 1.5 x its parameters at N = 4: the Hourglass paper's own comparison;
    - transformer_xl-rmt-memory, rmt-xl-memory: RMT against XL at equal memory, two sizes (XL's mem_len set to
      RMT's n_mem, to compare with rmt; RMT's n_mem set to XL's mem_len, to compare with transformer_xl);
    - transformer_xl-windows: XL trained on random windows like the GPT (no stream), evaluated with its memory."""
    fields = archs(model) | ({"hilt": hilt} if hilt else {})
    arms = {a: Arm(a, f, "inter-layer transformers of " + str(f["ilt_dim"]) if a == "hilt" and hilt else "")
            for a, f in fields.items()}
    xl, rmt, hg, n = fields["transformer_xl"], fields["rmt"], fields["hourglass"], model["n_layer"]
    return {**arms,
            "gpt-nanogpt": Arm("gpt", NANOGPT, "learned positions, LayerNorm"),
            "hourglass-nanogpt": Arm("hourglass", {**hg, **NANOGPT}, "learned positions, LayerNorm"),
            "hourglass-equal-compute": Arm("hourglass", {"hierarchy": f"1@1 {n}@2 1@1", "n_layer": 0},
                                           "equal compute, more parameters"),
            "transformer_xl-rmt-memory": Arm("transformer_xl", {**xl, "mem_len": rmt["n_mem"]},
                                             f"memory of RMT's size ({rmt['n_mem']})"),
            "rmt-xl-memory": Arm("rmt", {**rmt, "n_mem": xl["mem_len"]}, f"memory of XL's size ({xl['mem_len']})"),
            "transformer_xl-windows": Arm("transformer_xl", xl, "trained on random windows, not a stream")}


def shakespeare_arms(model: dict) -> dict[str, Arm]:
    """`contenders`, HILT's inter-layer transformers 1/8 of the width (16 at 128: 2 heads of 8, 1 layer; +2.7 %
    parameters, where equal_budget's quarter would add 7.7 %)."""
    d = model["d_model"]
    return contenders(model, {"ilt_dim": max(8, d // 8), "ilt_heads": max(1, d // 64), "ilt_layers": 1})


@dataclass(frozen=True)
class Scale:
    """A reference scale: its model, training, runs folder and contenders (name -> Arm)."""
    name: str
    folder: str             # under trained/
    model: dict
    train: dict
    arms: Callable[[dict], dict[str, Arm]]
    corpus: str             # its corpus in words
    what: str               # the scale in words, for tables and pages


SCALES = {
    "builtin": Scale("builtin", "reference", MODEL, TRAIN, contenders, "built-in corpus",
                     "0.2 M parameters, 600 steps of 16 x 128 characters of the built-in corpus"),
    "shakespeare": Scale("shakespeare", "reference_shakespeare", SHAKESPEARE_MODEL, SHAKESPEARE_TRAIN,
                         shakespeare_arms, "tiny-shakespeare",
                         "0.8 M parameters, 2,000 steps of 12 x 64 characters of tiny-shakespeare"),
}
QUICK = {"builtin": (QUICK_MODEL, QUICK_TRAIN),
         "shakespeare": (QUICK_MODEL, {**QUICK_TRAIN, "data": "shakespeare", "beta2": 0.99})}


def arms(scale: str = "builtin", quick: bool = False) -> dict[str, Arm]:
    sc = SCALES[scale]
    return sc.arms(QUICK[scale][0] if quick else sc.model)


def specs(quick: bool = False, seeds=SEEDS, scale: str = "builtin") -> list[Spec]:
    """The runs of the comparison at `scale`, seed by seed, contender by contender (a list cut short holds
    every contender of the first seeds). Transformer-XL and RMT train on a stream unless the arm says not."""
    sc = SCALES[scale]
    model, train = QUICK[scale] if quick else (sc.model, sc.train)
    out = []
    for seed in seeds:
        for name, arm in sc.arms(model).items():
            stream = model_class(arm.arch).carries_memory and not name.endswith("-windows")
            out.append(Spec(f"{name}-s{seed}", model_config(arm.arch, **{**model, **arm.fields}),
                            TrainConfig(**train, seed=seed, stream=stream)))
    return out


def folder(quick: bool = False, scale: str = "builtin") -> Path:
    name = SCALES[scale].folder
    return tools.TRAINED / "quick" / name if quick else tools.TRAINED / name


# --- results ----------------------------------------------------------------------------------------
def results(folders: list[Path]) -> dict[str, list[dict]]:
    """contender (the run name without its seed) -> the stored evaluation of each of its runs
    (evaluation.stored_evaluation)."""
    out: dict[str, list[dict]] = {}
    for f in folders:
        out.setdefault(f.name.rpartition("-s")[0], []).append(stored_evaluation(f))
    return out


def mean_std(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{round(statistics.mean(values), digits) + 0.0:.{digits}f} ± {sd:.{digits}f}"  # + 0.0: no "-0.000"


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


def side_by_side(by_scale: dict[str, dict[str, list[dict]]], metric: str = "bpc") -> str:
    """One row per contender, at each scale (`by_scale`: scale -> `results`) its `metric`, mean ± std over seeds,
    and its difference from the GPT of the same seed, mean ± std (negative: ahead of the GPT on bits)."""
    head = ["contender"] + [f"{SCALES[sc].corpus}: {col}" for sc in by_scale for col in (metric, "minus gpt's")]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in dict.fromkeys(a for by_arch in by_scale.values() for a in by_arch):
        cells = [arm]
        for by_arch in by_scale.values():
            rs, base = by_arch.get(arm, []), by_arch["gpt"]
            diffs = [r[metric] - b[metric] for r, b in zip(rs, base)]
            cells += [mean_std([r[metric] for r in rs], 3), mean_std(diffs, 3)] if rs else ["", ""]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def readme_with_table(text: str, table: str) -> str:
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    return text[:start] + "\n" + table + "\n" + text[end:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=sorted(SCALES), default="builtin",
                   help="builtin: " + SCALES["builtin"].what + "; shakespeare: " + SCALES["shakespeare"].what)
    p.add_argument("--quick", action="store_true", help="tiny models, a few steps: the pipeline in about a minute")
    p.add_argument("--table", action="store_true", help="no training: print the table from the run folders")
    p.add_argument("--readme", action="store_true", help="no training: write the table into README.md")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    a = p.parse_args(argv)
    tools.set_threads(1)
    runs = specs(a.quick, a.seeds, a.scale)
    root = folder(a.quick, a.scale)
    if not (a.table or a.readme):
        run_all(runs, root)
    folders = [root / s.name for s in runs]
    missing = [f.name for f in folders if not f.exists() or run_status(f) != "finished"]
    if missing:
        again = " ".join(["python experiments/reference.py", *(["--scale", a.scale] if a.scale != "builtin" else []),
                          *(["--quick"] if a.quick else [])])
        raise SystemExit(f"not finished yet in {root}: {', '.join(missing)}; train them with: {again}")
    table = markdown(results(folders))
    print(table)
    if a.readme:
        readme = tools.ROOT / "README.md"
        tools.atomic_write_text(readme, readme_with_table(readme.read_text(), table))
        print(f"wrote the table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
