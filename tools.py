"""The ground every other file stands on: paths, seeding, threads, RNG state, devices and torchrun's
processes, atomic file writes, safe loading of JSON and weights, the log CSV, the errors a run folder raises,
the command line's parser, and signals.

It imports nothing of mnemo (not even inside a function): every other file may import it. What a run folder
holds and its whole life (claim, lock, configs, checkpoint, status, load, README, summary) is `runs.py`'s.

Every write is atomic (`atomic_write_bytes`: a temporary file, then a rename), so a reader never sees half a
file. Weights are loaded with `weights_only=True` (`load_weights`), so loading never executes code from a
file; a wrong file raises `RunFolderError` naming it and what is wrong. Ctrl-C and SIGTERM stop a run at the
next step boundary (`Interrupts`), so what it saves resumes exactly.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import hashlib
import io
import json
import os
import pickle
import random
import re
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
TRAINED = ROOT / "trained"


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


# --- memory and failures a user can act on --------------------------------------------------------
STATE_BYTES = 16  # per parameter while training: float32 weights, gradients and AdamW's two moments
GIB = 2 ** 30


class ModelTooLargeError(ValueError):
    """A run whose training state does not fit in its device's memory: the message says what it needs, what
    there is, and which flags shrink it."""


def memory_hint(mcfg=None, tcfg=None, fixed: str = "") -> str:
    """The flags that make a run need less memory (with their values, when its model and train configs are
    given); `fixed`:
    the flag that brought the model config (--resume, --init_from), which then cannot be changed."""
    def flag(name, cfg, more=""):
        return f"--{name}" + (f" (now {getattr(cfg, name)!r}{more})" if cfg is not None else "")

    batch = (f"lower {flag('batch_size', tcfg)} and raise --grad_accum to keep the batch, or use a device with "
             f"more memory (--device)")
    if fixed:
        return f"{batch}; the model's size is fixed by {fixed}"
    vocab = f": {mcfg.vocab_size:,} tokens" if mcfg is not None else ""
    return (f"shrink the model with {flag('n_layer', mcfg)}, {flag('d_model', mcfg)} or "
            f"{flag('tokenizer', mcfg, vocab)}, and its activations with {flag('block_size', mcfg)}; {batch}")


def check_memory(params: int, need: int, device: torch.device, hint: str) -> None:
    """Refuse, before the model is built, a run whose training state alone (`need` bytes for `params`
    parameters: modules.training_bytes) exceeds the free memory of `device` (`free_memory`; not known: no
    check), saying so with `hint` (`memory_hint`). torchrun's processes on one machine each hold a copy, so on
    the CPU they share its memory."""
    free = free_memory(device)
    if free is None:
        return
    copies = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if device.type == "cpu" else 1
    if need * copies > free:
        each = f" for each of {copies} processes" if copies > 1 else ""
        raise ModelTooLargeError(
            f"this model ({params:,} parameters) needs at least {need / GIB:,.1f} GiB{each} to train (float32 "
            f"weights, gradients and AdamW's two moments: {STATE_BYTES} bytes a parameter, before any activation), "
            f"and {device} has {free / GIB:,.1f} GiB free; {hint}")


def out_of_memory(e: BaseException) -> bool:
    """Did an allocation fail: a GPU's OutOfMemoryError, the CPU allocator's RuntimeError, Python's MemoryError?"""
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("can't allocate memory", "not enough memory", "out of memory"))


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing")  # gloo's words


def lost_peer(e: BaseException, world: int) -> bool:
    """Under torchrun: did the process group fail (another process stopped, so a collective cannot finish)?"""
    import torch.distributed as dist
    return world > 1 and (isinstance(e, dist.DistError) or isinstance(e, RuntimeError) and any(
        s in str(e) for s in PEER_LOST))


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
    """argparse with the reason first: `prog: error: REASON` and a one-line hint, not the usage block; an
    unknown flag gets the closest valid names as a suggestion."""

    def error(self, message):
        if "unrecognized arguments" in message:
            known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            for bad in message.split(":", 1)[1].split():
                if bad.startswith("--"):
                    close = difflib.get_close_matches(bad.split("=")[0], known, n=3)
                    message += f"\n  {bad}: did you mean {' or '.join(close)}?" if close else ""
        self.exit(2, f"{self.prog}: error: {message}\n  (python {self.prog} --help lists every flag)\n")


# --- signals ----------------------------------------------------------------------------------------
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


# --- the notebooks' exercises -----------------------------------------------------------------------------------
def check(answer, expected, what: str = "your answer", tol: float = 0.0) -> None:
    """The verdict on one exercise of a notebook, printed (never raised, so that a fresh kernel runs the
    learner's cell before it is answered; nor returned, so that Jupyter shows no True or False under it).
    `...` (Ellipsis) means not answered yet. Numbers agree within `tol` (absolute), tensors and arrays
    element-wise within `tol` and of the same shape, anything else by `==`. The expected value is never printed: the collapsed solution below the exercise shows it."""
    if answer is ...:
        print(f"{what}: not answered yet (replace the ... and run the cell again)")
        return
    try:
        if isinstance(expected, (torch.Tensor, np.ndarray)):
            a = answer if torch.is_tensor(answer) else torch.as_tensor(np.asarray(answer))
            e = torch.as_tensor(expected)
            right = a.shape == e.shape and torch.allclose(a.double(), e.double(), rtol=0.0, atol=tol)
        elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
            right = not isinstance(answer, bool) and abs(float(answer) - float(expected)) <= tol
        else:
            right = answer == expected
    except (TypeError, ValueError, RuntimeError):
        right = False
    shown = answer if not isinstance(answer, float) else round(answer, 4)
    print(f"right: {what} = {shown}" if right else
          f"not yet: {what} = {shown!r}; think again, or open the solution")
