"""Compare trained runs side by side: learning curves, a results table, top-k accuracy, loss by position.

    python model_comparison.py                       # every run under trained/
    python model_comparison.py trained/a trained/b --plot curves.png

Honest comparison needs the same yardstick: `evaluate_run` scores every run on a fixed, seeded set of
validation windows of its own corpus, and reports bits per character next to the loss per token, because
two tokenizers' per-token losses are not comparable (a BPE token carries several characters).
Task runs (trained with --task) are scored by greedy answer accuracy instead.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

import tools
from config import config_from_dict


@dataclass
class Run:
    """A run folder's configs, log and README summary; the model is loaded on demand."""
    path: Path
    model_cfg: object
    train_cfg: object
    log: list[dict]
    _model: tuple | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def load(self):
        """(model, cfgs, tokenizer), loaded once."""
        if self._model is None:
            self._model = tools.load_run(self.path)
        return self._model

    @property
    def params(self) -> int:
        """Parameter count, as the run's summary.json recorded it (older folders: counted from the model)."""
        summary = self.path / "summary.json"
        return tools.load_json(summary)["params"] if summary.exists() else self.load()[0].num_params()

    def last(self, column: str):
        values = [r[column] for r in self.log if r.get(column) is not None]
        return values[-1] if values else None

    def best(self, column: str = "val_loss"):
        values = [r[column] for r in self.log if r.get(column) is not None]
        return min(values) if values else None


def load_runs(paths=None) -> list[Run]:
    """Runs from the given folders, or every run under trained/."""
    dirs = [Path(p) for p in paths] if paths else tools.run_dirs()
    runs = []
    for d in dirs:
        if not (d / "model_config.json").exists():
            raise FileNotFoundError(f"{d} is not a run folder (no model_config.json)")
        runs.append(Run(d, config_from_dict(tools.load_json(d / "model_config.json")),
                        config_from_dict(tools.load_json(d / "train_config.json")), tools.read_log(d / "log.csv")))
    return runs


# --- evaluation on the same validation windows ------------------------------------------------------
def validation_batches(run: Run, n: int = 8, batch_size: int = 16, seed: int = 0):
    """A fixed, seeded set of validation batches from the run's own data (corpus windows or task examples)."""
    from config import model_class
    from data import Corpus, layout_of, make_task
    _, _, tok = run.load()
    t = run.train_cfg
    if t.task:
        layout = layout_of(model_class(run.model_cfg.arch))
        return make_task(t.task, t.task_len, t.task_vocab, t.n_keys).val_batches(n, batch_size, seed, layout)
    corpus = Corpus.load(t.data, tok, progress=False)
    return corpus.val_batches(n, batch_size, run.model_cfg.block_size, seed)


@torch.no_grad()
def topk_accuracy(model, batches, ks=(1, 5)) -> dict[int, float]:
    """Teacher-forced top-k next-token accuracy over the non-ignored targets."""
    from modules import IGNORE
    hits, total = {k: 0 for k in ks}, 0
    for b in batches:
        logits, keep = model(b).logits, b.y != IGNORE
        top = logits.topk(max(ks), dim=-1).indices                      # (B, T, kmax)
        match = (top == b.y[..., None]) & keep[..., None]
        for k in ks:
            hits[k] += int(match[..., :k].any(-1).sum())
        total += int(keep.sum())
    return {k: hits[k] / total for k in ks}


@torch.no_grad()
def loss_by_position(model, batches) -> torch.Tensor:
    """Mean cross-entropy (nats) at each position of the context, (T,): does more context help?"""
    losses = []
    for b in batches:
        logits = model(b).logits
        losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), b.y, reduction="none"))
    return torch.cat(losses).mean(0)


@torch.no_grad()
def evaluate_run(run: Run, n: int = 8, batch_size: int = 16, seed: int = 0) -> dict:
    """Loss per token, bits per character, top-1/top-5 accuracy on fixed validation data (tasks: the task's
    own metrics, e.g. greedy per-token and whole-answer accuracy)."""
    from data import make_task
    model, _, tok = run.load()
    batches = validation_batches(run, n, batch_size, seed)
    t = run.train_cfg
    if t.task:
        return make_task(t.task, t.task_len, t.task_vocab, t.n_keys).score(model, batches)
    loss = sum(model(b).loss.item() for b in batches) / len(batches)
    chars = sum(len(tok.decode(row.tolist())) for b in batches for row in b.y)
    tokens = sum(b.y.numel() for b in batches)
    out = {"val_loss": loss, "bpc": loss * tokens / chars / math.log(2)}
    out.update({f"top{k}": v for k, v in topk_accuracy(model, batches).items()})
    return out


# --- tables and plots -------------------------------------------------------------------------------
def markdown_table(runs: list[Run], digits: int = 3) -> str:
    """One row per run: architecture, size, data or task, how long, final and best validation loss, and
    for task runs the final greedy answer accuracy (per token and whole answer), or for icll the rate of
    legal greedy next tokens."""
    head = ["run", "arch", "params", "data", "tokenizer", "steps", "tokens", "train s", "final val loss",
            "best val loss", "val acc", "val exact", "val legal"]
    fmt = lambda v: "" if v is None else f"{v:.{digits}f}"
    rows = []
    for r in runs:
        rows.append([r.name, r.model_cfg.arch, f"{r.params:,}", r.train_cfg.task or r.train_cfg.data,
                     r.model_cfg.tokenizer, f"{r.last('step'):.0f}", f"{r.last('tokens'):,.0f}",
                     f"{r.last('elapsed_s'):.0f}", fmt(r.last("val_loss")), fmt(r.best("val_loss")),
                     fmt(r.last("val_acc")), fmt(r.last("val_exact")), fmt(r.last("val_legal"))])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


README = tools.ROOT / "README.md"
MARKERS = ("<!-- results:start (written by python model_comparison.py --readme) -->", "<!-- results:end -->")


def readme_with_results(text: str, table: str) -> str:
    """README text with the results section between the markers replaced by `table`."""
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    return text[:start] + "\n" + table + "\n" + text[end:]


def plot_curves(runs: list[Run], x: str = "step", y: str = "val_loss", ax=None):
    """y against x ('step', 'tokens' or 'elapsed_s') for every run, on one axis."""
    import matplotlib.pyplot as plt
    if x not in ("step", "tokens", "elapsed_s"):
        raise ValueError(f"x = {x!r}; choose step, tokens or elapsed_s")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    for r in runs:
        pts = [(row[x], row[y]) for row in r.log if row.get(y) is not None]
        ax.plot(*zip(*pts), marker=".", label=r.name)
    ax.set_xlabel({"elapsed_s": "training seconds"}.get(x, x))
    ax.set_ylabel(y)
    ax.legend(fontsize="small")
    return ax


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="model_comparison.py", description="Compare trained runs.")
    p.add_argument("runs", nargs="*", help="run folders (default: every run under trained/)")
    p.add_argument("--plot", metavar="PNG", help="save validation-loss curves (vs step, tokens, seconds) here")
    p.add_argument("--eval", action="store_true", help="also score every run on fixed validation data")
    p.add_argument("--readme", action="store_true", help="write the table of the shipped runs "
                                                         "(trained/shipped.txt) into README.md")
    a = p.parse_args(argv)
    tools.set_threads(1)
    try:
        runs = load_runs(a.runs)
    except FileNotFoundError as e:
        p.error(str(e))
    if not runs:
        p.error("no runs found under trained/; train one with python train.py")
    table = markdown_table(runs)
    print(table)
    if a.readme:
        table = markdown_table(load_runs(tools.shipped_runs()))
        tools.atomic_write_text(README, readme_with_results(README.read_text(encoding="utf-8"), table))
        print(f"wrote the table into {README}")
    if a.eval:
        for r in runs:
            print(r.name, "  ".join(f"{k} {v:.3f}" for k, v in evaluate_run(r).items()))
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for ax, x in zip(axes, ("step", "tokens", "elapsed_s")):
            plot_curves(runs, x, ax=ax)
        fig.tight_layout()
        fig.savefig(a.plot)
        print(f"saved {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
