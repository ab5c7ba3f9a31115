"""Small helpers shared by training, inference, comparison and the notebooks: seeding, threads, the
learning-rate schedule, atomic file writes, and run folders (write, list, load).

A run folder (`trained/<run>/`) holds `model_config.json`, `train_config.json`, `tokenizer.json`,
`model.pt` (last weights), `best_model.pt` (best validation loss), `checkpoint.pt` (everything needed to
resume), `log.csv`, a `README.md` and `summary.json` (what the run is, written when it starts, among which the
tokenizer's hash; its figures, added when it stops); a classifier's also `labels.json` (its label names).
Weights are plain state dicts, loaded with `weights_only=True`, so loading a run never executes code from the
file.

Nothing is lost: a folder that holds a run is never trained into again unless asked (`prepare_run_folder`);
a process that writes a run folder holds its lock file (`RunLock`), so a second writer is refused; Ctrl-C and
SIGTERM stop a run at the next step boundary (`Interrupts`), so what it saves resumes exactly. Every error is
clear: a run folder's parts are checked against each other when it is loaded (`load_run`), and a wrong part
raises `RunFolderError` naming the file and what is wrong with it.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import pickle
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
TRAINED = ROOT / "trained"
LOG_COLUMNS = ["step", "tokens", "elapsed_s", "tokens_per_s", "lr", "train_loss", "val_loss", "grad_norm"]


# --- reproducibility --------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU) in one call."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int) -> None:
    """Pin torch to n CPU threads (1 makes timings and float results reproducible)."""
    torch.set_num_threads(n)


def rng_state() -> dict:
    """Every global RNG's state, as plain containers and tensors (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state()}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    name, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])


# --- devices and processes ---------------------------------------------------------------------------
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_devices() -> list[str]:
    """The device types torch can use here, best first: cuda, mps, cpu."""
    found = ["cuda"] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` -> the best device available; `cpu`, `cuda`, `cuda:N`, `mps` -> that one, if it exists here
    (a message names what does). Under torchrun, `cuda` means this process's own GPU (its local rank)."""
    available = available_devices()
    kind = available[0] if name == "auto" else name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device = {name!r} is not a device; choose auto, cpu, cuda, cuda:N or mps")
    if kind not in available:
        raise ValueError(f"device = {name!r} is not available on this machine; available: {available} "
                         f"(or auto)")
    if kind == "cuda":
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            raise ValueError(f"device = {name!r}: this machine has {torch.cuda.device_count()} GPU(s), cuda:0.."
                             f"cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    return torch.device(kind)


MEMINFO, CGROUP = Path("/proc/meminfo"), Path("/sys/fs/cgroup")  # where Linux tells the CPU's free memory


def free_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on `device`: a GPU's free memory; for the CPU, the smaller of Linux's
    MemAvailable and what this container's memory limit leaves (cgroup v2). None where it is not known (mps,
    other systems)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    found = []
    with contextlib.suppress(OSError, ValueError):
        found += [1024 * int(line.split()[1]) for line in MEMINFO.read_text().splitlines()
                  if line.startswith("MemAvailable:")]
    with contextlib.suppress(OSError, ValueError):
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((CGROUP / "memory.current").read_text()))
    return min(found, default=None)


@dataclass(frozen=True)
class Processes:
    """Where this process stands among those torchrun started (one process: rank 0 of 1)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Only the main process writes the run folder and prints."""
        return self.rank == 0


def processes() -> Processes:
    """This process's rank, the number of processes and its rank on this machine, from torchrun's
    environment variables (RANK, WORLD_SIZE, LOCAL_RANK)."""
    env = os.environ
    return Processes(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def to_cpu(obj):
    """A copy of obj (tensors in containers) with every tensor on the CPU: what run folders store, so a run
    trained on a GPU loads anywhere."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


# --- schedule ---------------------------------------------------------------------------------------
def lr_at(step: int, cfg) -> float:
    """Learning rate of optimizer step `step` (0-based) under TrainConfig `cfg`: linear warm-up from
    lr/warmup to lr, then `cosine` | `linear` decay to min_lr at max_iters, `step` (x0.1 at 2/3 of the
    decay, floored at min_lr), or `constant`."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (step - cfg.warmup_iters) / span)
    if cfg.schedule == "cosine":
        return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)
    if cfg.schedule == "linear":
        return cfg.lr + progress * (cfg.min_lr - cfg.lr)
    if cfg.schedule == "step":
        return cfg.lr if progress < 2 / 3 else max(cfg.min_lr, 0.1 * cfg.lr)
    raise ValueError(f"schedule = {cfg.schedule!r} is not valid; choose cosine, linear, step or constant")


# --- files ------------------------------------------------------------------------------------------
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run folder is meant to be shared
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_of(path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file's bytes, read in chunks (a run records its weights' and a download its text's)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def save_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def load_json(path) -> dict:
    """A JSON file's object; a missing or malformed file raises RunFolderError naming it and the place."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path} is missing") from None
    except UnicodeDecodeError as e:
        raise RunFolderError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None


def save_torch(path, obj) -> Path:
    """torch.save, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_weights(path) -> dict:
    """A state dict (or checkpoint of plain tensors and containers), refusing anything that would run code.

    `weights_only=True` makes torch's unpickler accept only tensors, numbers, strings and containers;
    a file that carries a class or function is refused with `UnsafeFileError` (a `pickle.UnpicklingError`)
    and nothing in it runs. A missing, truncated or corrupted file raises `RunFolderError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise _corrupted(path, e) from None
        # torch's message suggests weights_only=False, i.e. running the file's code: not passed on.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise UnsafeFileError(f"{path} carries code{what}, not only tensors, and was not loaded: mnemo loads "
                              f"weights as plain data and never runs code from a file. Use weights saved "
                              f"by mnemo (a state dict of tensors)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        raise _corrupted(path, e) from None


def _corrupted(path, e) -> "RunFolderError":
    msg = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else ""
    reason = msg if isinstance(e, RuntimeError) and msg else f"{type(e).__name__}{': ' + msg if msg else ''}"
    return RunFolderError(f"{path} is not a readable PyTorch file: it is truncated or corrupted "
                          f"({reason}); copy it again, or retrain")


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


def write_log(path, rows: list[dict], columns: list[str]) -> Path:
    """The whole log CSV, atomically (rows are few: one per evaluation)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def read_log(path) -> list[dict]:
    """log.csv as a list of dicts with numbers parsed: step and tokens as int, the rest float, empty -> None."""
    def parse(k, v):
        return None if v in ("", None) else int(v) if k in ("step", "tokens") else float(v)
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: parse(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


# --- errors and the command line --------------------------------------------------------------------
class RunFolderError(ValueError):
    """A run folder (or a file mnemo reads) that is missing a part, holds a malformed part, or whose parts do
    not fit each other; the message names the file and what is wrong."""


class UnsafeFileError(RunFolderError, pickle.UnpicklingError):
    """A weights file that carries code (a pickled class or function); it was refused, nothing in it ran."""


class ArgParser(argparse.ArgumentParser):
    """argparse with the reason first: `prog: error: REASON` and a one-line hint, not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n  (python {self.prog} --help lists every flag)\n")


# --- run folders: claim, lock, signals ---------------------------------------------------------------
RUN_FILES = ("model_config.json", "train_config.json", "tokenizer.json", "labels.json", "model.pt",
             "best_model.pt", "checkpoint.pt", "log.csv", "README.md", "summary.json", "evaluation.json")
LOCK_FILE = "training.lock"
_HELD: set[Path] = set()  # lock files this process holds


def run_files(folder) -> list[str]:
    """The run-folder files present in `folder` (none: it holds no run and may become one)."""
    folder = Path(folder)
    return [n for n in RUN_FILES if (folder / n).exists()]


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
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_UMASK)
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


SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM (what `kill` and job schedulers send), acted on only where a run can stop
    whole: `with Interrupts() as stop:` installs handlers for both; the first signal only sets
    `stop.requested` (its name), which the training loop checks between steps, so the step under way ends
    and the checkpoint is written at a step boundary, never between an optimizer step and the step count
    that goes with it. A second signal raises KeyboardInterrupt at once (the user insists), except inside
    `stop.held()`, the few lines that must run together (the update and the step count), where it is held:
    the boundary that follows acts on it. Outside the main thread (where Python cannot set handlers) nothing
    is installed and signals keep their usual effect. The previous handlers are restored on exit."""

    def __init__(self, say=None):
        self.requested: str | None = None
        self.say = say  # f(message) told of the first signal (a progress bar's write, or print)
        self._holding = False
        self._old = {}

    def _handler(self, signum, frame) -> None:
        name = SIGNAL_NAMES.get(signum, signal.Signals(signum).name)
        if self.requested is None:
            self.requested = name
            if self.say:
                self.say(f"{name}: stopping after this step and saving (press Ctrl-C again to stop at once)")
        elif not self._holding:
            raise KeyboardInterrupt(name)

    @contextlib.contextmanager
    def held(self):
        """A block that runs whole: a second signal arriving inside it is acted on after it, not inside."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handler) for s in SIGNAL_NAMES}
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}


@contextlib.contextmanager
def exit_on_interrupt(prog: str, what: str, then: str = ""):
    """For a command line's start-up and other work that saves nothing of its own: Ctrl-C (or SIGTERM) ends the
    program with one line naming `what` was cut short (and what to do `then`), and exit status 130, instead of
    a traceback. Whatever was written until then was written whole (every write is atomic)."""
    old = signal.signal(signal.SIGTERM, signal.default_int_handler) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    except KeyboardInterrupt:
        print(f"{prog}: interrupted during {what}; nothing was left half-written" + (f"; {then}" if then else ""),
              file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


# --- runs -------------------------------------------------------------------------------------------
def run_dirs(root=TRAINED) -> list[Path]:
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
    lines = [l.strip() for l in (TRAINED / "shipped.txt").read_text().splitlines()]
    return [l for l in lines if l and not l.startswith("#")]


def shipped_runs() -> list[Path]:
    """The run folders that ship with mnemo, as listed in trained/shipped.txt (one name a line); runs you
    train yourself sit beside them in trained/ without being listed (and git ignores them: .gitignore)."""
    return [TRAINED / n for n in _shipped_lines() if not n.endswith("/")]


def shipped_collections() -> list[Path]:
    """The folders of shipped experiments (trained/shipped.txt lines ending in "/", such as reference/):
    each holds the run folders one experiment script wrote (experiments/), shipped whole."""
    return [TRAINED / n.rstrip("/") for n in _shipped_lines() if n.endswith("/")]


def run_ref(folder) -> str:
    """How to name `folder` to load_run: its name when it sits in trained/, else its absolute path."""
    folder = Path(folder).resolve()
    return folder.name if folder.parent == TRAINED.resolve() else str(folder)


def find_run(run_dir) -> Path:
    """The run folder `run_dir` names: a path (absolute, or relative to the working directory), or the name
    of a folder under trained/. FileNotFoundError, listing the runs, when there is none."""
    path = Path(run_dir).expanduser()
    if not path.exists() and not path.is_absolute() and (TRAINED / path).exists():
        path = TRAINED / path
    if not path.is_dir():
        what = "it is a file" if path.exists() else "no such folder"
        raise FileNotFoundError(f"{run_dir} is not a run folder ({what}); give a path to one or a name under "
                                f"{TRAINED}: {[p.name for p in run_dirs()]}")
    if not (path / "model_config.json").exists():
        raise FileNotFoundError(f"{path} is not a run folder (no model_config.json); runs under {TRAINED}: "
                                f"{[p.name for p in run_dirs()]}")
    return path


def load_configs(run_dir) -> dict:
    """{"model": ModelConfig, "train": TrainConfig} of a run folder; a missing, malformed or invalid config,
    or one that lacks a field (config.ADDED_FIELDS aside), raises RunFolderError naming the file."""
    from config import ConfigError, ModelConfig, TrainConfig, config_from_dict
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
    from tokenizers import Tokenizer, TokenizerFileError
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
    from modules import build_model

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
