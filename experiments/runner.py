"""Train a list of runs one after the other, the way a long reproduction needs: one progress bar for the
whole list (runs done, steps done, time left), and a list that was interrupted resumes where it stopped.

Each run is a `Spec` (a name, a model config, a train config); `run_all` walks the list in order and, for
each run folder under `root`:
- finished (`runs.run_status`): left alone, never retrained;
- interrupted with a checkpoint: resumed bit-exactly (`Trainer.resume`);
- holding an unfinished run without a checkpoint (killed before its first save): started again, said so;
- absent: trained.
The bar counts optimizer steps over the whole list, so its estimate of the time left weighs long runs as
long; runs already finished when the list starts count as done and do not speed up the estimate.

`evaluation(folder)` scores a finished run on fixed data once and keeps the scores in the folder
(evaluation.json, tied to its weights by their hash), so that results pages and tables are written from
files, cheaply, and a test can tell when one is stale.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runs  # noqa: E402
import tools  # noqa: E402
from config import ModelConfig, TrainConfig  # noqa: E402
from data import sha256_of  # noqa: E402
from train import Trainer  # noqa: E402


@dataclass
class Spec:
    """One run of an experiment: its folder name (relative to the experiment's root) and its configs."""
    name: str
    model: ModelConfig
    train: TrainConfig


def steps_done(folder: Path) -> int:
    """Optimizer steps a run folder already holds (its checkpoint's, or its log's last step if finished)."""
    if runs.run_status(folder) == "finished":
        return int(tools.read_log(folder / "log.csv")[-1]["step"])
    if (folder / "checkpoint.pt").exists():
        return int(tools.load_weights(folder / "checkpoint.pt")["step"])
    return 0


# model fields the data fills in when the run starts (a task decides its tokenizer and sequence length)
FILLED_BY_DATA = {"vocab_size", "tokenizer", "block_size", "n_classes"}


def differences(spec: Spec, folder: Path) -> list[str]:
    """How the run in `folder` differs from `spec` (field: folder's value -> spec's), [] when it is the same
    run. A model field the data fills in counts only where the spec sets it (a corpus run's block size)."""
    cfgs = runs.load_configs(folder)
    out = []
    for key, want in (("train", spec.train), ("model", spec.model)):
        have, want = cfgs[key].to_dict(), want.to_dict()
        filled = lambda k: key == "model" and k in FILLED_BY_DATA and (spec.train.task or not want[k])
        out += [f"{key} {k}: {have.get(k)!r} -> {v!r}" for k, v in want.items() if not filled(k) and have.get(k) != v]
    return out


def run_all(specs: list[Spec], root: Path, progress: bool = True) -> list[Path]:
    """Train every spec into root/<name> that is not finished yet (see the module's docstring); returns the
    run folders in the order of `specs`. A folder another process is training is refused by its lock, and a
    folder holding a run of other configs (the experiment was changed since) is refused before anything
    trains, naming the fields: its results would otherwise be reported for configs they do not have."""
    folders = [root / s.name for s in specs]
    stale = {f: d for s, f in zip(specs, folders) if (f / "train_config.json").exists() and (d := differences(s, f))}
    if stale:
        raise SystemExit("these run folders hold runs of other configs than the experiment's now:\n"
                         + "\n".join(f"  {f}: " + "; ".join(d) for f, d in stale.items())
                         + "\nmove them away (or delete them) and run the same command again to retrain them")
    done = [steps_done(f) if f.exists() else 0 for f in folders]
    bar = tqdm(total=sum(s.train.max_iters for s in specs), initial=sum(done), disable=not progress,
               unit="step", dynamic_ncols=True)
    # Ctrl-C while a run trains stops it at a step boundary (train.Trainer.run); here, between runs or while
    # one starts, it ends the list with one line (exit status 130)
    with tools.exit_on_interrupt(Path(sys.argv[0]).name or "experiment", "the start of a run",
                                 "run the same command again to continue the list"):
        _run_list(specs, folders, bar)
    bar.close()
    return folders


def _run_list(specs: list[Spec], folders: list[Path], bar) -> None:
    for i, (spec, folder) in enumerate(zip(specs, folders)):
        bar.set_description(f"run {i + 1}/{len(specs)} {spec.name}")
        status = runs.run_status(folder) if folder.exists() else "absent"
        if status == "finished":
            continue
        if status == "unfinished" and (folder / "checkpoint.pt").exists():
            trainer = Trainer.resume(folder, progress=False, verbose=False)
        else:
            if status == "unfinished":
                bar.write(f"{folder}: an unfinished run without a checkpoint; starting it again")
            trainer = Trainer(spec.model, spec.train, folder, progress=False, verbose=False,
                              overwrite=status == "unfinished")
        trainer.after_step = lambda t: bar.update(1)
        trainer.run()
        if trainer.stopped:
            bar.close()
            raise SystemExit(f"{spec.name}: {trainer.stopped}\nrun the same command again to continue the list")


EVALUATION_VERSION = 3  # what evaluation() stores; a stored evaluation of another version is computed again
BY_POSITION_BATCHES = 32


def evaluation(folder: Path) -> dict:
    """The run's scores on fixed data (`model_comparison.evaluate_run`: corpus runs loss, bits per character,
    top-1/top-5 and loss by position; task runs the task's own metrics), plus its parameters, training
    seconds, tokens per second and best validation loss of its log (the loop's own validation batches, drawn
    with the run's seed); computed once and kept in folder/evaluation.json with the hash of the weights they
    were computed from (recomputed when the weights change, or when this function stores more)."""
    import model_comparison as mc
    path, weights = folder / "evaluation.json", sha256_of(folder / "model.pt")[:16]
    stored = tools.load_json(path) if path.exists() else {}
    if stored.get("weights") == weights and stored.get("version") == EVALUATION_VERSION:
        return stored
    run = mc.load_runs([folder])[0]
    scores = {k: float(v) for k, v in mc.evaluate_run(run).items()}
    if not run.train_cfg.task:
        # 32 x 16 windows: at one position the text of 128 windows varies more than the models do
        by_position = mc.loss_by_position(run.load()[0], mc.validation_batches(run, n=BY_POSITION_BATCHES))
        scores["by_position"] = [round(float(v), 5) for v in by_position]
    last = run.log[-1]
    scores.update(params=run.params, train_s=last["elapsed_s"], tokens_per_s=last["tokens"] / last["elapsed_s"],
                  best_val_loss=min(r["val_loss"] for r in run.log), weights=weights, version=EVALUATION_VERSION)
    tools.save_json(path, scores)
    return scores
