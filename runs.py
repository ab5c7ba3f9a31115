"""The run folder: what it holds and its whole life, in this one file (docs/design.md#run-folders).

A run folder (`trained/<run>/`, or any --out) holds:

    model_config.json, train_config.json   the two configs, as `to_dict()` writes them
    tokenizer.json                         the tokenizer the model was trained with
    labels.json                            a classifier's label names, index = class id
    model.pt, best_model.pt                the last weights; those of the best validation loss
    checkpoint.pt                          everything a resume needs (weights, optimizer, step, RNGs, ...)
    log.csv                                one row per evaluation (`LOG_COLUMNS`, then the task's, then aux)
    summary.json, README.md                what the run is (from its start: the tokenizer's hash); its figures
    evaluation.json                        scores on held-out data (evaluation.stored_evaluation), kept
    training.lock                          present while a process writes the folder

Its life, as `RunFolder` walks it (train.Trainer calls these; nothing here calls the Trainer):
1. claim: before any data is read, `prepare` refuses a folder another process writes, a folder that holds a
   run (unless `overwrite`, or a resume), files that no mnemo run wrote, and a folder that cannot be written;
   then under the `lock` (a second writer is refused), `claim` checks again and clears an overwritten run;
2. start: `save_configs` writes the configs, the tokenizer (and labels), and summary.json's identity;
3. train: `write_log`, `save_best`, and `save_checkpoint` (model.pt and checkpoint.pt) at every evaluation;
4. stop: `write_readme` writes README.md and summary.json with the figures;
5. resume: `resume_configs` and `load_checkpoint` read a checkpoint back, its every part checked;
6. read: `status` (training, finished, unfinished), and `load_run` rebuilds the model, its configs and its
   tokenizer from any folder, checking its parts against each other.

Weights are plain state dicts of CPU tensors, loaded with `weights_only=True`, so loading a run never
executes code from a file. Nothing is lost: a folder that holds a run is never trained into again unless
asked, and a second writer is refused by the lock. Every error is clear: a wrong part raises `RunFolderError`
naming the file and what is wrong with it. File helpers (atomic writes, safe loading) are tools.py's.
"""
from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import tools  # tools.TRAINED is read where it is used (tests point it elsewhere)
from config import ConfigError, ModelConfig, TrainConfig, config_from_dict
from modules import build_model
from tokenizers import Tokenizer, TokenizerFileError
from tools import (RunFolderError, atomic_write_text, load_json, load_weights, pick_device, read_log, save_json,
                   save_torch, to_cpu, write_log)

# --- the files -------------------------------------------------------------------------------------
RUN_FILES = ("model_config.json", "train_config.json", "tokenizer.json", "labels.json", "model.pt",
             "best_model.pt", "checkpoint.pt", "log.csv", "README.md", "summary.json", "evaluation.json")
LOCK_FILE = "training.lock"
LOG_COLUMNS = ["step", "tokens", "elapsed_s", "tokens_per_s", "lr", "train_loss", "val_loss", "grad_norm"]
# what checkpoint.pt must hold; it may also hold "origin", "processes" and (float16) "scaler"
CHECKPOINT_KEYS = {"model", "optimizer", "step", "tokens", "elapsed", "best", "pending", "rng", "data_rng"}
_HELD: set[Path] = set()  # lock files this process holds


def run_files(folder) -> list[str]:
    """The run-folder files present in `folder` (none: it holds no run and may become one)."""
    folder = Path(folder)
    return [n for n in RUN_FILES if (folder / n).exists()]


# --- one folder's life ------------------------------------------------------------------------------
class RunFolder:
    """One run folder, `path`, through its life: the methods in the order a training calls them. Only one
    process writes it (under torchrun, the main one: the Trainer decides who calls the writing methods)."""

    def __init__(self, path):
        self.path = Path(path)

    # 1. claim
    def prepare(self, overwrite: bool = False, resume: bool = False) -> Path:
        """Before any work: the folder can take this run (`prepare_run_folder`)."""
        return prepare_run_folder(self.path, overwrite, resume)

    def lock(self) -> "RunLock":
        """`with folder.lock():` this process is the folder's one writer (`RunLock`)."""
        return RunLock(self.path)

    def claim(self, overwrite: bool = False) -> list[str]:
        """Under the lock: the folder must still hold no other run (one may have finished there since it was
        prepared); with `overwrite`, the old run's files go now (their names are returned)."""
        refuse_existing_run(self.path, overwrite)
        return clear_run(self.path)

    # 2. start
    def save_configs(self, mcfg, tcfg, tokenizer, identity: dict, labels=None) -> None:
        """The configs, the tokenizer, a classifier's `labels` (what inference.py names the classes by), and
        summary.json begun with the run's `identity` (completed with its figures when it stops): the
        tokenizer's hash, which load_run checks tokenizer.json against, is recorded from the start, also for
        a run still training or killed before it could write its summary."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_json(self.path / "model_config.json", mcfg.to_dict())
        save_json(self.path / "train_config.json", tcfg.to_dict())
        tokenizer.save(self.path / "tokenizer.json")
        if labels:
            save_json(self.path / "labels.json", list(labels))
        save_json(self.path / "summary.json", identity)

    # 3. train
    def write_log(self, rows: list[dict], columns: list[str]) -> Path:
        """log.csv, whole and atomically (rows are few: one per evaluation)."""
        return write_log(self.path / "log.csv", rows, columns)

    def save_best(self, weights: dict) -> Path:
        """best_model.pt: the weights of the best validation loss so far."""
        return save_torch(self.path / "best_model.pt", to_cpu(weights))

    def save_checkpoint(self, weights: dict, state: dict) -> None:
        """model.pt (the weights alone, for load_run) and checkpoint.pt (the weights and `state`, the rest of
        `CHECKPOINT_KEYS`: everything a resume needs). CPU tensors only, so a run trained on a GPU or under
        torchrun loads and resumes in one CPU process."""
        weights = to_cpu(weights)
        save_torch(self.path / "model.pt", weights)
        save_torch(self.path / "checkpoint.pt", {"model": weights, **to_cpu(state)})

    # 4. stop
    def write_readme(self, summary: dict, sample: str = "", notes=(), status: str = "finished") -> None:
        """README.md (`readme`) and summary.json (`summary`, the identity completed with the figures)."""
        atomic_write_text(self.path / "README.md", readme(self.path, summary, sample, notes, status))
        save_json(self.path / "summary.json", summary)

    # 5. resume
    def resume_configs(self, **overrides) -> dict:
        """{"model": ModelConfig, "train": TrainConfig} of the run to resume, `overrides` changing TrainConfig
        fields; FileNotFoundError when there is no checkpoint.pt, ConfigError when the run is finished."""
        out = self.path
        if not (out / "checkpoint.pt").exists():
            shipped = " (shipped runs leave it out: they can be evaluated and sampled, not resumed)" \
                if out.resolve().parent == tools.TRAINED.resolve() else ""
            raise FileNotFoundError(f"{out} has no checkpoint.pt to resume from{shipped}")
        cfgs = load_configs(out)
        tcfg = replace(cfgs["train"], **overrides)
        logged = read_log(out / "log.csv")
        if logged and logged[-1]["step"] >= tcfg.max_iters:
            raise ConfigError(f"{out} is finished: its log reached step {logged[-1]['step']} and max_iters = "
                              f"{tcfg.max_iters}, so there is nothing to resume. To train it further, give a "
                              f"larger max_iters: python train.py --resume {out} --max_iters M, with M > "
                              f"{logged[-1]['step']} (the learning-rate schedule is then laid over M steps)")
        return {"model": cfgs["model"], "train": tcfg}

    def load_checkpoint(self) -> dict:
        """checkpoint.pt, with every key a resume needs (`CHECKPOINT_KEYS`), its weights in today's names
        (`upgrade_state_dict`); `check_weights` then fits them to the model."""
        path, need = self.path / "checkpoint.pt", CHECKPOINT_KEYS
        ck = load_weights(path)
        if not isinstance(ck, dict) or need - ck.keys():
            raise RunFolderError(f"{path} is not a mnemo checkpoint: it lacks "
                                 f"{sorted(need - set(ck) if isinstance(ck, dict) else need)}")
        ck["model"] = upgrade_state_dict(ck["model"])
        return ck

    def check_weights(self, state: dict, model, name: str = "checkpoint.pt") -> None:
        """The weights read from the folder's file `name` must fit `model` (`check_state_dict`)."""
        check_state_dict(state, model, self.path / name)

    # 6. read
    def read_log(self) -> list[dict]:
        """log.csv's rows, numbers parsed (`tools.read_log`)."""
        return read_log(self.path / "log.csv")

    def status(self) -> str:
        """'training', 'finished' or 'unfinished' (`run_status`)."""
        return run_status(self.path)

    def load(self, which: str = "model", device: str = "cpu"):
        """(model, cfgs, tokenizer), every part checked (`load_run`)."""
        return load_run(self.path, which, device)


# --- claim and lock (life step 1) ------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """When process `pid` started (Linux /proc ticks), to tell a live holder from a reused pid; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_ = stat[stat.rindex(")") + 2:].split()
    return None if fields_[0] == "Z" else fields_[19]  # state, ..., starttime (field 22 of proc(5))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return _process_start(pid) is not None  # a zombie has exited
    return True


def lock_holder(folder) -> dict | None:
    """Who holds `folder`'s lock: {pid, host, started, command, stale} or None when there is no lock file.
    A lock is stale when its process, on this host, is gone (killed before it could remove the file)."""
    path = Path(folder) / LOCK_FILE
    for attempt in range(3):
        try:
            holder = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(holder, dict) and isinstance(holder.get("pid"), int):
                break
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            pass
        time.sleep(0.05)  # the holder may be writing it right now
    else:
        return {"pid": None, "host": "?", "started": "?", "command": "?", "stale": False, "unreadable": True}
    here = holder.get("host") == socket.gethostname()
    pid = holder["pid"]
    gone = here and (not _alive(pid) or (holder.get("proc_start") not in (None, _process_start(pid)))
                     or (pid == os.getpid() and path.resolve() not in _HELD))
    return {**holder, "stale": gone}


def _describe(holder: dict, lock: Path) -> str:
    if holder.get("unreadable"):
        return (f"an unknown process (its lock file {lock} cannot be read); if no training is running there, "
                f"delete {lock}")
    return (f"process {holder['pid']} on {holder.get('host')} (started {holder.get('started')}: "
            f"{holder.get('command')}); wait for it to finish or stop it, or train into another --out. If that "
            f"process is gone, delete {lock}")


class RunLock:
    """`with RunLock(folder):` — this process is the one writer of `folder`.

    The lock is a file created with O_CREAT | O_EXCL (atomic: of two processes, exactly one creates it)
    holding the pid, host, start time and command of its holder. A second writer gets a RunFolderError
    naming the holder; a lock left by a process that was killed is recognised as stale and taken over.
    The file is removed on exit, also when the body raises."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE

    def __enter__(self) -> "RunLock":
        info = {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": _process_start(os.getpid()),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([Path(sys.executable).name, *sys.argv])}
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~tools._UMASK)
            except FileExistsError:
                holder = lock_holder(self.folder)
                if holder is None:
                    continue  # released meanwhile
                if not holder["stale"]:
                    raise RunFolderError(f"{self.folder} is being written by {_describe(holder, self.path)}") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(info, f)
            _HELD.add(self.path.resolve())
            return self
        raise RunFolderError(f"could not take the lock {self.path}: other processes keep taking it")

    def __exit__(self, *exc) -> None:
        _HELD.discard(self.path.resolve())
        self.path.unlink(missing_ok=True)


def check_writable(folder) -> Path:
    """Create `folder` (and its parents) and write a file in it, so a run that cannot save fails at once,
    before any data is read or model built, with a message naming the folder. What it created, it removes."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # removed again: no empty folder is left
    try:                                                             # behind if the run fails before it starts
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
        for p in made:
            p.rmdir()
    except OSError as e:
        where = e.filename if getattr(e, "filename", None) else folder
        raise RunFolderError(f"cannot write the run folder {folder}: {e.strerror or e} ({where}); choose an "
                             f"--out in a folder you can write") from None
    return folder


def prepare_run_folder(folder, overwrite: bool = False, resume: bool = False) -> Path:
    """Check, before any work, that `folder` can take this run: no live process writes it, it holds nothing
    but a run of mnemo's (which `overwrite` replaces, or `resume` continues), and it can be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"the run folder {folder} is a file, not a folder; choose another --out")
    holder = lock_holder(folder)
    if holder is not None and not holder["stale"]:
        raise RunFolderError(f"{folder} is being written by {_describe(holder, folder / LOCK_FILE)}")
    if not resume:
        refuse_existing_run(folder, overwrite)
    return check_writable(folder)


def is_run(folder) -> bool:
    """Does `folder` hold a run that mnemo wrote: its model_config.json an object with an `arch`, its
    train_config.json an object with `max_iters`? (Files of those names alone do not make a run.)"""
    def has(name, key):
        try:
            d = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(d, dict) and key in d
    return has("model_config.json", "arch") and has("train_config.json", "max_iters")


def refuse_existing_run(folder, overwrite: bool = False) -> None:
    """RunFolderError unless `folder` is absent, empty, or holds a run of mnemo's that `overwrite` replaces:
    a run is never replaced without being asked, and files mnemo did not write, or other runs' folders, never
    (not even with overwrite, which replaces one run of mnemo's and nothing else)."""
    folder = Path(folder)
    present = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != LOCK_FILE) \
        if folder.is_dir() else []
    if not present:
        return
    if is_run(folder):
        if overwrite:
            return
        resume = (f"Continue it with: python train.py --resume {folder} (Trainer.resume), train"
                  if (folder / "checkpoint.pt").exists() else "It has no checkpoint.pt to resume from: train")
        raise RunFolderError(f"{folder} already holds a run ({', '.join(run_files(folder))}); it was not touched. "
                             f"{resume} into another --out, or replace it with --overwrite true (overwrite=True)")
    runs = [n for n in present if is_run(folder / n)]
    if runs:
        shown = ", ".join(runs[:5]) + (f" and {len(runs) - 5} more" if len(runs) > 5 else "")
        raise RunFolderError(f"{folder} is a folder of runs ({shown}), not a run: --out names the folder of one "
                             f"run. Give a new folder inside it, e.g. --out {folder / 'my-run'}")
    shown = ", ".join(present[:8]) + (f" and {len(present) - 8} more" if len(present) > 8 else "")
    raise RunFolderError(f"{folder} holds files that no mnemo run wrote ({shown}; it has no model_config.json and "
                         f"train_config.json of a run); they were not touched, and --overwrite replaces a run of "
                         f"mnemo's only. Choose a new or empty folder for --out")


def clear_run(folder) -> list[str]:
    """Remove the run files of `folder` (for an explicit overwrite); other files are left alone."""
    present = run_files(folder)
    for name in present:
        (Path(folder) / name).unlink()
    return present


# --- what a run is and what it reached: summary.json and README.md (life steps 2 and 4) -----------
def identity(arch: str, params: int, data: str, tokenizer, origin: dict | None = None) -> dict:
    """What the run is, known from its start: architecture, parameters, data, the tokenizer and its hash,
    and a finetune's source (`origin`: init_from and the sha256 of the model.pt it started from)."""
    return {"arch": arch, "params": params, "data": data, "tokenizer": tokenizer.name,
            "tokenizer_hash": tokenizer.hash(), **(origin or {})}


def summary(identity: dict, steps: int, tokens: int, seconds: float, rows: list[dict], best: float,
            stopped: bool, columns: list[str]) -> dict:
    """The run's identity and figures. Finished: `final_val_loss` (and task accuracies) of the last
    evaluation, the last of `rows`. Stopped early: `eval_step` and `val_loss` of the last evaluation made, not
    a final value. `columns`: the log's, whose task and aux columns (after LOG_COLUMNS) are reported too."""
    last = rows[-1] if rows else {}
    out = {**identity, "steps": steps, "tokens": tokens, "train_seconds": round(seconds, 1)}
    if not stopped:
        out["final_val_loss"] = round(last["val_loss"], 4)
    else:
        out["eval_step"] = int(last["step"]) if last else None
        out["val_loss"] = round(last["val_loss"], 4) if last else None
    out["best_val_loss"] = round(best, 4) if math.isfinite(best) else None
    for k in columns[len(LOG_COLUMNS):]:
        if last.get(k) is not None:
            out[k] = round(last[k], 4)
    return out


def evaluation_note(s: dict, stopped: str, max_iters: int) -> str:
    """After a stop: which evaluation the numbers of summary `s` come from, so none passes for a final one."""
    if not stopped:
        return ""
    if s["eval_step"] is None:
        return "No evaluation was made before the stop: there is no validation loss yet."
    if s["eval_step"] == 0:
        return ("The only evaluation was at step 0, of the untrained model: its validation loss "
                f"({s['val_loss']}) says nothing about training yet.")
    return (f"The figures are from the last evaluation, at step {s['eval_step']} of {max_iters} "
            f"planned, before the stop: not final values.")


def finetune_note(origin: dict, records: bool, note: str = "") -> str:
    """Where a finetune started from (`origin`), and how its text was fitted to the source's tokenizer."""
    how = " as records (`<bos> record <eos>`)" if records else ""
    return (f"Finetuned{how} from the run `{origin['init_from']}` (its model.pt has sha256 "
            f"`{origin['init_from_sha256']}`), with its tokenizer and model config."
            + (f" Text fitted to the tokenizer: {note}." if note else ""))


def readme(folder, s: dict, sample: str = "", notes=(), status: str = "finished") -> str:
    """A run's README.md: what it is and how far it went (`status`), the `notes` (one paragraph each, empty
    ones left out), its summary `s` as a table, how to load and continue it, and a `sample` of its output."""
    folder = Path(folder)
    lines = [f"# {folder.name}", "",
             f"A `{s['arch']}` model ({s['params']:,} parameters) trained on `{s['data']}` with the "
             f"`{s['tokenizer']}` tokenizer (hash `{s['tokenizer_hash']}`): {s['steps']} steps, "
             f"{s['tokens']:,} tokens, {s['train_seconds']} s of training ({status}).", "",
             *[line for note in notes if note for line in (note, "")],
             "| " + " | ".join(s) + " |", "|" + "---|" * len(s), "| " + " | ".join(map(str, s.values())) + " |",
             "", f"Rebuild: `runs.load_run({run_ref(folder)!r})`; continue: "
             f"`python train.py --resume {folder}`.", ""]
    if sample:
        lines += ["## Sample", "", "```", sample, "```", ""]
    return "\n".join(lines)


# --- find and read runs (life steps 5 and 6) ------------------------------------------------------
def run_dirs(root=tools.TRAINED) -> list[Path]:
    """Every finished-or-checkpointed run folder (config, log and weights written) under `root`, by name."""
    return sorted(p.parent for p in Path(root).glob("*/model_config.json")
                  if (p.parent / "log.csv").exists() and (p.parent / "model.pt").exists())


def run_status(folder) -> str:
    """'training' (a live process holds its lock), 'finished' (its log reached train_config's max_iters),
    or 'unfinished' (interrupted, stopped on a non-finite loss, or its log or config cannot be read).
    The one definition of a finished run: comparisons leave out the others unless asked."""
    folder = Path(folder)
    holder = lock_holder(folder)
    if holder is not None and not holder["stale"]:
        return "training"
    try:
        rows = read_log(folder / "log.csv")
        max_iters = load_json(folder / "train_config.json")["max_iters"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unfinished"
    return "finished" if rows and rows[-1]["step"] is not None and rows[-1]["step"] >= max_iters else "unfinished"


def _shipped_lines() -> list[str]:
    lines = [l.strip() for l in (tools.TRAINED / "shipped.txt").read_text().splitlines()]
    return [l for l in lines if l and not l.startswith("#")]


def shipped_runs() -> list[Path]:
    """The run folders that ship with mnemo, as listed in trained/shipped.txt (one name a line); runs you
    train yourself sit beside them in trained/ without being listed (and git ignores them: .gitignore)."""
    return [tools.TRAINED / n for n in _shipped_lines() if not n.endswith("/")]


def shipped_collections() -> list[Path]:
    """The folders of shipped experiments (trained/shipped.txt lines ending in "/", such as reference/):
    each holds the run folders one experiment script wrote (experiments/), shipped whole."""
    return [tools.TRAINED / n.rstrip("/") for n in _shipped_lines() if n.endswith("/")]


def run_ref(folder) -> str:
    """How to name `folder` to load_run: its name when it sits in trained/, else its absolute path."""
    folder = Path(folder).resolve()
    return folder.name if folder.parent == tools.TRAINED.resolve() else str(folder)


def find_run(run_dir) -> Path:
    """The run folder `run_dir` names: a path (absolute, or relative to the working directory), or the name
    of a folder under trained/. FileNotFoundError, listing the runs, when there is none."""
    path = Path(run_dir).expanduser()
    if not path.exists() and not path.is_absolute() and (tools.TRAINED / path).exists():
        path = tools.TRAINED / path
    if not path.is_dir():
        what = "it is a file" if path.exists() else "no such folder"
        raise FileNotFoundError(f"{run_dir} is not a run folder ({what}); give a path to one or a name under "
                                f"{tools.TRAINED}: {[p.name for p in run_dirs()]}")
    if not (path / "model_config.json").exists():
        raise FileNotFoundError(f"{path} is not a run folder (no model_config.json); runs under {tools.TRAINED}: "
                                f"{[p.name for p in run_dirs()]}")
    return path


def load_configs(run_dir) -> dict:
    """{"model": ModelConfig, "train": TrainConfig} of a run folder; a missing, malformed or invalid config,
    or one that lacks a field (config.ADDED_FIELDS aside), raises RunFolderError naming the file."""
    run_dir, cfgs = Path(run_dir), {}
    for key, name, cls in (("model", "model_config.json", ModelConfig), ("train", "train_config.json", TrainConfig)):
        d = load_json(run_dir / name)
        if not isinstance(d, dict):
            raise RunFolderError(f"{run_dir / name} holds a JSON {type(d).__name__}, not an object of config fields")
        try:
            cfg = config_from_dict(d, saved=True)
        except (ConfigError, TypeError) as e:
            raise RunFolderError(f"{run_dir / name}: {e}") from None
        if not isinstance(cfg, cls):
            raise RunFolderError(f"{run_dir / name} holds a {type(cfg).__name__}, not a {cls.__name__}"
                                 + (" (it has no 'arch' field)" if key == "model" else " (it has an 'arch' field)"))
        cfgs[key] = cfg
    return cfgs


def format_row(row: dict) -> str:
    """A log row in one line, as train.py prints it without a progress bar."""
    return "  ".join([f"step {int(row['step'])}"] + [f"{k} {v:.3f}" for k, v in row.items()
                                                       if k.startswith(("train_", "val_")) and v is not None])


def retrain_command(run_dir) -> str:
    """The train.py command that trains the run in `run_dir` again: every field whose value differs from its
    default, but those the data fills in (the vocabulary; a task's sequence length), and its folder."""
    cfgs, flags = load_configs(run_dir), []
    for key, cfg in (("model", cfgs["model"]), ("train", cfgs["train"])):
        blank = type(cfg)() if key == "train" else config_from_dict({"arch": cfg.arch})
        filled = {"vocab_size", "n_classes"} | ({"block_size", "tokenizer"} if cfgs["train"].task else set())
        flags += [f"--{k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in cfg.to_dict().items()
                  if k not in filled and k != "arch" and v != getattr(blank, k)]
    folder, home = Path(run_dir).resolve(), tools.TRAINED.resolve().parent
    out = folder.relative_to(home).as_posix() if folder.is_relative_to(home) else str(folder)
    return " ".join(["python train.py --arch", cfgs["model"].arch, *flags, "--out", out])


def check_tokenizer(tokenizer, mcfg, path) -> None:
    """The tokenizer saved at `path` must be the one the model was trained with: same name, same size."""
    if tokenizer.vocab_size != mcfg.vocab_size:
        raise RunFolderError(f"{path} has {tokenizer.vocab_size} tokens but model_config.json says vocab_size = "
                             f"{mcfg.vocab_size}: it is not the tokenizer this model was trained with (the model "
                             f"would produce ids it cannot decode, or be fed ids it has no embedding for)")
    if tokenizer.name != mcfg.tokenizer:
        raise RunFolderError(f"{path} is the tokenizer {tokenizer.name!r} but model_config.json says tokenizer = "
                             f"{mcfg.tokenizer!r}")


def load_tokenizer(run_dir, mcfg):
    """The tokenizer of a run folder, checked against its model config `mcfg` (`check_tokenizer`) and against
    the hash summary.json recorded when the run began: a tokenizer of the same size that decodes the ids to
    other text (two characters swapped) is refused too. An unreadable or wrong tokenizer.json raises
    RunFolderError naming it (and summary.json). A folder without summary.json has no record to check."""
    path = Path(run_dir) / "tokenizer.json"
    try:
        tokenizer = Tokenizer.load(path)
    except TokenizerFileError as e:
        raise RunFolderError(str(e)) from None
    check_tokenizer(tokenizer, mcfg, path)
    summary = Path(run_dir) / "summary.json"
    recorded = load_json(summary) if summary.exists() else {}
    recorded = recorded.get("tokenizer_hash") if isinstance(recorded, dict) else None
    if recorded is not None and recorded != tokenizer.hash():
        raise RunFolderError(f"{path} is not the tokenizer this run was trained with: its hash is "
                             f"{tokenizer.hash()}, but {summary} records {recorded} (the model's ids would "
                             f"decode to other text); put back the run's own tokenizer.json")
    return tokenizer


def upgrade_state_dict(sd: dict) -> dict:
    """A state dict written by an earlier mnemo, in today's names: attention's separate `q` and `kv` layers
    became one stacked `qkv` (2026-12), RMT's initial memory became a plain parameter (`init_memory`, was
    `init_memory.weight`). Today's state dicts pass through unchanged."""
    out = {}
    for k, v in sd.items():
        if k.endswith((".attn.q.weight", ".attn.q.bias", ".cross.q.weight", ".cross.q.bias")):
            kv = sd[k.replace(".q.", ".kv.")]
            out[k.replace(".q.", ".qkv.")] = torch.cat([v, kv])
        elif k.endswith((".attn.kv.weight", ".attn.kv.bias", ".cross.kv.weight", ".cross.kv.bias")):
            continue
        elif k == "init_memory.weight":
            out["init_memory"] = v
        else:
            out[k] = v
    return out



def check_state_dict(state: dict, model, path, config_name: str = "model_config.json") -> None:
    """`state` (read from `path`) must have exactly the names and shapes of `model`, built from `config_name`;
    otherwise RunFolderError says how they differ (layer counts first, then names and shapes)."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RunFolderError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    want = model.state_dict()
    if state.keys() == want.keys() and all(state[k].shape == want[k].shape for k in want):
        return
    problems = []

    def layers(keys) -> dict[str, set[int]]:
        out = {}
        for k in keys:
            m = re.match(r"(.*?)\.(\d+)\.", k)
            if m:
                out.setdefault(m.group(1), set()).add(int(m.group(2)))
        return out

    have, need = layers(state), layers(want)
    field_of = {"blocks": "n_layer"}
    for name in sorted(have.keys() | need.keys()):
        a, b = have.get(name, set()), need.get(name, set())
        if len(a) != len(b):
            span = lambda ids: "none" if not ids else f"{name}.{min(ids)}" + (f"-{max(ids)}" if len(ids) > 1 else "")
            count = lambda ids: f"{len(ids)} {name[:-1] if len(ids) == 1 and name.endswith('s') else name}"
            fld = field_of.get(name)
            says = (f"{config_name} says {fld} = {getattr(model.cfg, fld)}" if fld and hasattr(model, "cfg")
                    else f"the model {config_name} describes has {count(b)} ({span(b)})")
            problems.append(f"{Path(path).name} has weights for {count(a)} ({span(a)}) but {says}")
    if not problems:
        missing, extra = sorted(want.keys() - state.keys()), sorted(state.keys() - want.keys())
        shapes = [f"{k} is {tuple(state[k].shape)} in the file but {tuple(want[k].shape)} in the model"
                  for k in want.keys() & state.keys() if state[k].shape != want[k].shape]
        if shapes:
            more = f" (and {len(shapes) - 3} more)" if len(shapes) > 3 else ""
            problems.append("; ".join(sorted(shapes)[:3]) + more)
        if missing:
            problems.append(f"missing {missing[:3]}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""))
        if extra:
            problems.append(f"unexpected {extra[:3]}" + (f" and {len(extra) - 3} more" if len(extra) > 3 else ""))
    raise RunFolderError(f"{path} does not fit {config_name}: " + "; ".join(problems)
                         + f". The weights and {config_name} come from different models")


def load_labels(run_dir, n_classes: int) -> list[str]:
    """The label names of a classifier run, index = class id, from its labels.json; a run saved before
    train.py wrote that file gets its class ids ("0", "1", ...). A file that does not list n_classes names
    (model_config.json's) is a RunFolderError naming it."""
    path = find_run(run_dir) / "labels.json"
    if not path.exists():
        return [str(k) for k in range(n_classes)]
    labels = load_json(path)
    if not (isinstance(labels, list) and len(labels) == n_classes and all(isinstance(x, str) for x in labels)):
        raise RunFolderError(f"{path} holds {labels!r}, but model_config.json says n_classes = {n_classes}: "
                             f"it should be a JSON list of {n_classes} label names, one per class id")
    return labels


def load_run(run_dir, which: str = "model", device: str = "cpu"):
    """(model, {"model": ModelConfig, "train": TrainConfig}, tokenizer) rebuilt from a run folder.

    run_dir: a path to a run folder (anywhere), or the name of a folder under trained/.
    which: "model" (last weights) or "best_model" (lowest validation loss).
    The parts are checked against each other (configs valid and complete, tokenizer of the model's size and
    name and of the hash recorded in training, weights of the model's names and shapes, weights without code):
    a wrong part raises RunFolderError naming the file and what is wrong."""
    if which not in ("model", "best_model"):
        raise ValueError(f"which = {which!r}; choose 'model' or 'best_model'")
    run_dir = find_run(run_dir)
    cfgs = load_configs(run_dir)
    tokenizer = load_tokenizer(run_dir, cfgs["model"])
    weights = run_dir / f"{which}.pt"
    if which == "best_model" and not weights.exists() and (run_dir / "model.pt").exists():
        raise RunFolderError(f"{weights} is missing (shipped runs leave it out to stay small); load model.pt, "
                             f"the last weights, with which='model'")
    state = load_weights(weights)
    model = build_model(cfgs["model"])
    state = upgrade_state_dict(state)
    check_state_dict(state, model, weights)
    model.load_state_dict(state)
    return model.to(pick_device(device)).eval(), cfgs, tokenizer
