"""Small helpers shared by training, inference, comparison and the notebooks: seeding, threads, the
learning-rate schedule, atomic file writes, and run folders (write, list, load).

A run folder (`trained/<run>/`) holds `model_config.json`, `train_config.json`, `tokenizer.json`,
`model.pt` (last weights), `best_model.pt` (best validation loss), `checkpoint.pt` (everything needed to
resume), `log.csv` and a `README.md`. Weights are plain state dicts, loaded with `weights_only=True`, so
loading a run never executes code from the file.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import tempfile
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


def save_json(path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def load_json(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_torch(path, obj) -> Path:
    """torch.save, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_weights(path) -> dict:
    """A state dict (or checkpoint of plain tensors and containers), refusing anything that would run code.

    `weights_only=True` makes torch's unpickler accept only tensors, numbers, strings and containers;
    a file that carries a class or function is refused with `pickle.UnpicklingError`."""
    return torch.load(path, map_location="cpu", weights_only=True)


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


# --- runs -------------------------------------------------------------------------------------------
def run_dirs(root=TRAINED) -> list[Path]:
    """Every finished-or-checkpointed run folder (config, log and weights written) under `root`, by name."""
    return sorted(p.parent for p in Path(root).glob("*/model_config.json")
                  if (p.parent / "log.csv").exists() and (p.parent / "model.pt").exists())


def shipped_runs() -> list[Path]:
    """The run folders that ship with mnemo, as listed in trained/shipped.txt (one name a line); runs you
    train yourself sit beside them in trained/ without being listed."""
    names = [l.strip() for l in (TRAINED / "shipped.txt").read_text().splitlines() if l.strip()]
    return [TRAINED / n for n in names if not n.startswith("#")]


def load_run(run_dir, which: str = "model", device: str = "cpu"):
    """(model, {"model": ModelConfig, "train": TrainConfig}, tokenizer) rebuilt from a run folder.

    run_dir: a path, or the name of a folder under trained/.
    which: "model" (last weights) or "best_model" (lowest validation loss)."""
    from config import config_from_dict
    from modules import build_model
    from tokenizers import Tokenizer

    run_dir = Path(run_dir)
    if not run_dir.exists() and (TRAINED / run_dir).exists():
        run_dir = TRAINED / run_dir
    if not (run_dir / "model_config.json").exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no model_config.json); runs: "
                                f"{[p.name for p in run_dirs()]}")
    if which not in ("model", "best_model"):
        raise ValueError(f"which = {which!r}; choose 'model' or 'best_model'")
    cfgs = {"model": config_from_dict(load_json(run_dir / "model_config.json")),
            "train": config_from_dict(load_json(run_dir / "train_config.json"))}
    tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    model = build_model(cfgs["model"])
    model.load_state_dict(upgrade_state_dict(load_weights(run_dir / f"{which}.pt")))
    return model.to(device).eval(), cfgs, tokenizer
