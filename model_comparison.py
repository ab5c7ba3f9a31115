"""Compare trained runs side by side: learning curves, a results table, top-k accuracy, loss by position.

    python model_comparison.py                       # every finished run under trained/
    python model_comparison.py trained/a trained/b --plot curves.png
    python model_comparison.py --include_unfinished  # also runs still training, interrupted or stopped

Honest comparison needs the same yardstick: `--eval` scores every run with `evaluation.stored_evaluation`
(one code path: the experiments read the same evaluation.json it writes into each run folder) on data no
training run draws: a fixed, seeded set of windows of its corpus's validation split, scored as loss per token
and bits per character, because two tokenizers' per-token losses are not comparable (a BPE token carries
several characters), and the same validation text read in order (`stream_bpc`: a model with a memory carries
it from window to window). Task runs (trained with --task) are scored by their task's metrics on held-out
examples instead. For the same reason the
curves are drawn on one axis per kind of loss (`loss_kind`: a corpus with a tokenizer, or a task with its
sizes), never mixing losses that mean different things.

Only finished runs are compared unless asked (`runs.run_status`): a run still training, interrupted or
stopped early would be compared on numbers that are not its final ones.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import evaluation
import tools
from runs import find_run, load_configs, load_run, run_dirs, run_status, shipped_runs


@dataclass
class Run:
    """A run folder's configs, log and README summary; the model is loaded on demand."""
    path: Path
    model_cfg: object
    train_cfg: object
    log: list[dict]
    device: str = "cpu"         # where `load` puts the model (and evaluation its batches)
    _model: tuple | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def load(self):
        """(model, cfgs, tokenizer), loaded once."""
        if self._model is None:
            self._model = load_run(self.path, device=self.device)
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


def partition_runs(dirs) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(finished run folders, [(unfinished folder, its status)]) — see runs.run_status."""
    done, other = [], []
    for d in map(Path, dirs):
        status = run_status(d)
        (done.append(d) if status == "finished" else other.append((d, status)))
    return done, other


def load_runs(paths=None, include_unfinished: bool = False) -> list[Run]:
    """Runs from the given folders (paths, or names under trained/), or every finished run under trained/
    (with `include_unfinished`, also those still training, interrupted or stopped early)."""
    dirs = [find_run(p) for p in paths] if paths is not None else run_dirs()
    if paths is None and not include_unfinished:
        dirs = partition_runs(dirs)[0]
    runs = []
    for d in dirs:
        cfgs = load_configs(d)
        try:
            log = tools.read_log(d / "log.csv")
        except FileNotFoundError:
            raise tools.RunFolderError(f"{d / 'log.csv'} is missing") from None
        except (ValueError, KeyError) as e:
            raise tools.RunFolderError(f"{d / 'log.csv'} is not a mnemo log ({e})") from None
        runs.append(Run(d, cfgs["model"], cfgs["train"], log))
    return runs


# --- evaluation on the same validation windows ------------------------------------------------------
# --- tables and plots -------------------------------------------------------------------------------
def markdown_table(runs: list[Run], digits: int = 3, stored: bool = False) -> str:
    """One row per run: architecture, size, data or task, how long, final and best validation loss, and
    for task runs the final greedy answer accuracy (per token and whole answer), or for icll the rate of
    legal greedy next tokens, as its log has them. `stored`: the scores of each run's evaluation.json instead
    (`evaluation.stored_evaluation`, on held-out data): bits per character on random windows and read as a
    stream for a corpus run, the task's metrics on 512 held-out examples for a task run."""
    scored = ("bpc", "stream_bpc", "val_acc", "val_exact", "val_legal") if stored else ("val_acc", "val_exact",
                                                                                       "val_legal")
    head = ["run", "arch", "params", "data", "tokenizer", "steps", "tokens", "train s", "final val loss",
            "best val loss", *(k.replace("_", " ") + (" (held out)" if stored else "") for k in scored)]
    fmt = lambda v: "" if v is None else f"{v:.{digits}f}"
    rows = []
    for r in runs:
        score = evaluation.stored_evaluation(r.path).get if stored else r.last
        rows.append([r.name, r.model_cfg.arch, f"{r.params:,}", r.train_cfg.task or r.train_cfg.data,
                     r.model_cfg.tokenizer, f"{r.last('step'):.0f}", f"{r.last('tokens'):,.0f}",
                     f"{r.last('elapsed_s'):.0f}", fmt(r.last("val_loss")), fmt(r.best("val_loss")),
                     *(fmt(score(k)) for k in scored)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


README = tools.ROOT / "README.md"
MARKERS = ("<!-- results:start (written by python model_comparison.py --readme) -->", "<!-- results:end -->")


def readme_with_results(text: str, table: str) -> str:
    """README text with the results section between the markers replaced by `table`."""
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    return text[:start] + "\n" + table + "\n" + text[end:]


def loss_kind(run: Run) -> str:
    """What a run's losses mean: runs of the same kind can share an axis, others cannot (a loss per character
    token is not a loss per BPE token, nor a loss on a task's answers)."""
    t, m = run.train_cfg, run.model_cfg
    if t.task:
        keys = f", n_keys {t.n_keys}" if t.task == "retrieval" else ""
        sizes = f"task_len {t.task_len}, task_vocab {t.task_vocab}{keys}"
        return f"task {t.task} ({sizes}): nats per answer token"
    return f"corpus {t.data}, {m.tokenizer} tokens: nats per token"


LINESTYLES = ("-", "--", ":", "-.")


def run_styles(runs: list[Run]) -> dict[str, dict]:
    """A distinct (colour, line style) per run: ten colours, then the same ten dashed, dotted, dash-dotted
    (40 runs), then markers on top; the same run keeps its style on every axis."""
    import matplotlib.pyplot as plt
    colours = plt.get_cmap("tab10").colors
    markers = (".", "o", "s", "^", "v", "D", "x", "+")
    return {r.name: {"color": colours[i % 10], "ls": LINESTYLES[i // 10 % 4], "marker": markers[i // 40 % 8]}
            for i, r in enumerate(runs)}


def plot_curves(runs: list[Run], x: str = "step", y: str = "val_loss", ax=None, styles: dict | None = None,
                legend: bool = True):
    """y against x ('step', 'tokens' or 'elapsed_s') for every run, on one axis, the legend outside it.
    Give runs whose losses mean the same thing (`loss_kind`); `plot_grouped` sorts them for you."""
    import matplotlib.pyplot as plt
    if x not in ("step", "tokens", "elapsed_s"):
        raise ValueError(f"x = {x!r}; choose step, tokens or elapsed_s")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    styles = styles or run_styles(runs)
    for r in runs:
        pts = [(row[x], row[y]) for row in r.log if row.get(y) is not None]
        if pts:
            ax.plot(*zip(*pts), label=r.name, **styles[r.name])
    ax.set_xlabel({"elapsed_s": "training seconds"}.get(x, x))
    ax.set_ylabel(y)
    if legend:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return ax


def plot_grouped(runs: list[Run], y: str = "val_loss", xs=("step", "tokens", "elapsed_s")):
    """One row of axes per kind of loss (`loss_kind`), one column per x; every run keeps one distinct style,
    and each row's legend sits outside its axes, right of the last column. Returns the figure."""
    import matplotlib.pyplot as plt
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(loss_kind(r), []).append(r)
    styles = run_styles(runs)
    fig, axes = plt.subplots(len(groups), len(xs), figsize=(5 * len(xs) + 3, 3.6 * len(groups)), squeeze=False)
    for row, (kind, members) in zip(axes, groups.items()):
        for i, (ax, x) in enumerate(zip(row, xs)):
            plot_curves(members, x, y, ax=ax, styles=styles, legend=i == len(xs) - 1)
            ax.grid(alpha=0.3)
        row[0].set_title(kind, loc="left", fontsize="medium")
    fig.tight_layout()
    return fig


def check_plot_path(path) -> Path:
    """`path` if the figure can be saved there, else a ValueError naming it and what would be valid: its folder
    must exist and be writable, and its extension name a format matplotlib writes here (a small figure is saved
    in that format in memory, which also catches one that needs a missing program, e.g. pgf without LaTeX).
    Called before any run is loaded or evaluated, so a typo costs nothing."""
    import io

    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix[1:].lower()
    if path.is_dir():
        raise ValueError(f"--plot {path} is a folder; give a file in it, e.g. {path / 'curves.png'}")
    if not path.parent.is_dir():
        raise ValueError(f"--plot {path}: the folder {path.parent} does not exist; create it, or save elsewhere")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"--plot {path}: the folder {path.parent} is not writable; save elsewhere")
    if fmt not in formats:
        what = f"'.{fmt}' is not an image format matplotlib writes" if fmt else "the file name has no extension"
        raise ValueError(f"--plot {path}: {what}; use one of {', '.join('.' + f for f in sorted(formats))}")
    fig = plt.figure(figsize=(1, 1))
    fig.text(0.5, 0.5, "x")
    try:
        fig.savefig(io.BytesIO(), format=fmt)
    except (RuntimeError, OSError, ValueError, ImportError) as e:
        raise ValueError(f"--plot {path}: matplotlib cannot write .{fmt} here ({e}); use .png, .pdf or .svg") from None
    finally:
        plt.close(fig)
    return path


SCORES = ("val_loss", "bpc", "stream_bpc", "top1", "top5", "val_acc", "val_exact", "val_legal", "val_f1",
          "drawn_in_training")  # what --eval prints of each run's stored evaluation, where the run has it


def main(argv=None) -> int:
    p = tools.ArgParser(prog="model_comparison.py", description="Compare trained runs.")
    p.add_argument("runs", nargs="*", help="run folders, or names under trained/ (default: every finished run "
                                           "under trained/)")
    p.add_argument("--include_unfinished", action="store_true",
                   help="also compare runs that are still training, were interrupted or stopped early")
    p.add_argument("--plot", metavar="FILE", help="save validation-loss curves (vs step, tokens, seconds) here, "
                                                  "one row per kind of loss; the extension picks the format "
                                                  "(.png, .pdf, .svg, ...)")
    p.add_argument("--eval", action="store_true", help="also score every run on held-out data and store the "
                                                       "scores in its evaluation.json (what experiments read)")
    p.add_argument("--device", default="cpu", help="where --eval runs the models: auto, cpu, cuda, cuda:N or mps "
                                                   "(default: cpu)")
    p.add_argument("--readme", action="store_true", help="write the table of the shipped runs "
                                                         "(trained/shipped.txt) into README.md")
    a = p.parse_args(argv)
    tools.set_threads(1)
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        try:
            check_plot_path(a.plot)
        except ValueError as e:
            p.error(str(e))
    try:
        dirs = [find_run(r) for r in a.runs] if a.runs else run_dirs()
        if not a.include_unfinished:
            dirs, skipped = partition_runs(dirs)
            if skipped:
                print(f"skipped {len(skipped)} unfinished run(s): "
                      + ", ".join(f"{d.name} ({status})" for d, status in skipped)
                      + "; --include_unfinished compares them too", file=sys.stderr)
        runs = load_runs(dirs)
        tools.pick_device(a.device)  # an unavailable device is refused before any work
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    for r in runs:
        r.device = a.device
    if not runs:
        p.error("no finished runs to compare" + ("" if a.runs else " under trained/; train one with python train.py"))
    table = markdown_table(runs)
    print(table)
    if a.readme:
        table = markdown_table(load_runs(shipped_runs()), stored=True)
        tools.atomic_write_text(README, readme_with_results(README.read_text(encoding="utf-8"), table))
        print(f"wrote the table into {README}")
    if a.eval:
        from data import DownloadError
        for r in runs:
            try:
                scores = evaluation.stored_evaluation(r.path, device=r.device, loaded=r.load())
            except (DownloadError, ValueError) as e:  # its corpus cannot be read here
                p.error(f"cannot evaluate {r.path}: {e}")
            print(r.name, "  ".join(f"{k} {scores[k]:.3f}" for k in SCORES if k in scores),
                  f"(stored in {r.path / 'evaluation.json'})")
    if a.plot:
        plot_grouped(runs).savefig(a.plot, bbox_inches="tight")
        print(f"saved {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
