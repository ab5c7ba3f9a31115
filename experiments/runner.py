"""Train a list of runs one after the other, the way a long reproduction needs: one progress bar for the
whole list (runs done, steps done, time left), and a list that was interrupted resumes where it stopped.

Each run is a `Spec` (a name, a model config, a train config); `run_all` walks the list in order and, for
each run folder under `root`:
- finished (`runs.run_status`): left alone, never retrained;
- interrupted with a checkpoint: resumed bit-exactly (`Trainer.resume`);
- holding an unfinished run without a checkpoint (killed before its first save): started again, said so;
- being trained by another process (its lock is live): skipped, said so; two processes given the same list
  share it out this way, and the list's results wait until both have finished;
- absent: trained.
The bar counts optimizer steps over the whole list, so its estimate of the time left weighs long runs as
long; runs already finished when the list starts count as done and do not speed up the estimate.

Each finished run is then scored once by `evaluation.stored_evaluation(folder)`, which keeps its scores in
the folder (evaluation.json, tied to its weights by their hash), so that results pages and tables are written
from files, cheaply, and a test can tell when one is stale.
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
    run folders in the order of `specs`. A folder another process is training is skipped, and a folder holding
    a run of other configs (the experiment was changed since) is refused before anything trains, naming the
    fields: its results would otherwise be reported for configs they do not have."""
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
        if status == "training":  # another process runs the same list (or this run): leave it to that one
            bar.write(f"{folder}: another process is training it; skipping it here")
            bar.update(spec.train.max_iters - steps_done(folder))
            continue
        try:
            if status == "unfinished" and (folder / "checkpoint.pt").exists():
                trainer = Trainer.resume(folder, progress=False, verbose=False)
            else:
                if status == "unfinished":
                    bar.write(f"{folder}: an unfinished run without a checkpoint; starting it again")
                trainer = Trainer(spec.model, spec.train, folder, progress=False, verbose=False,
                                  overwrite=status == "unfinished")
            trainer.after_step = lambda t: bar.update(1)
            trainer.run()
        except tools.RunFolderError:
            if runs.run_status(folder) != "training":
                raise
            bar.write(f"{folder}: another process started it a moment ago; skipping it here")  # both saw it absent
            continue
        if trainer.stopped:
            bar.close()
            raise SystemExit(f"{spec.name}: {trainer.stopped}\nrun the same command again to continue the list")
