"""The one training loop every mnemo architecture goes through, and its command line.

    python train.py                                  # a small GPT on the built-in corpus, a few minutes
    python train.py --arch gpt --data shakespeare --n_layer 6 --max_iters 2000
    python train.py --task copy --task_len 8         # a synthetic task, loss on the answer only
    python train.py --resume trained/<run>           # continue a run exactly where it stopped
    python train.py --help                           # every flag, its default and meaning

AdamW (no decay on norms, biases, embeddings), linear warm-up then cosine/linear/step/constant decay,
gradient accumulation, clipping (the pre-clip norm is logged), evaluation on a fixed set of validation
batches, one CPU thread by default, everything seeded. Every `eval_interval` steps a row goes to `log.csv`
and a checkpoint (model, optimizer, step, RNG and data-sampler state) is written atomically, so
`--resume` continues exactly as an uninterrupted run would. A non-finite loss or gradient stops the run
and keeps the last good checkpoint; Ctrl-C saves and stops. Architecture hooks go through
`model.on_step(progress)`: the loop never branches on the architecture.
"""
from __future__ import annotations

import argparse
import difflib
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import tools
from config import MODEL_CONFIGS, ConfigError, ModelConfig, TrainConfig, config_from_dict, model_class
from data import Corpus, layout_of, task_from_config
from modules import build_model
from tokenizers import Tokenizer


# --- data sources -----------------------------------------------------------------------------------
@dataclass
class Source:
    """What the loop needs from the data: a training batch per call, fixed validation batches."""
    tokenizer: Tokenizer
    train_batch: callable       # (np.random.Generator) -> Batch
    val: list                   # fixed validation batches
    task: object = None         # the Task, when training on one (adds its metrics: val_acc, ...)
    name: str = ""


def make_source(mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True) -> tuple[Source, ModelConfig]:
    """The data of `tcfg` and the model config completed with what the data decides (vocab size; for a
    task, the tokenizer and the sequence length)."""
    if tcfg.task:
        task = task_from_config(tcfg)
        mcfg = replace(mcfg, tokenizer=task.tokenizer.name, block_size=task.seq_len,
                       vocab_size=task.tokenizer.vocab_size, n_classes=task.n_classes)
        layout = layout_of(model_class(mcfg.arch))  # what the model reads, from its declared capabilities
        src = Source(task.tokenizer, lambda rng: task.batch(tcfg.batch_size, rng, layout),
                     task.val_batches(tcfg.eval_iters, tcfg.batch_size, tcfg.seed + 1, layout), task, tcfg.task)
        return src, mcfg
    if layout_of(model_class(mcfg.arch)) != "decoder":
        raise ConfigError(f"arch = {mcfg.arch!r} is an encoder-decoder: it reads a source and writes a target, "
                          f"so it trains on a task (--task NAME, e.g. --task copy), not on a corpus")
    corpus = Corpus.load(tcfg.data, mcfg.tokenizer, progress=progress)
    if mcfg.vocab_size not in (0, corpus.tokenizer.vocab_size):
        raise ConfigError(f"vocab_size = {mcfg.vocab_size} does not match the tokenizer's "
                          f"{corpus.tokenizer.vocab_size}; leave it at 0 to take the tokenizer's")
    mcfg = replace(mcfg, vocab_size=corpus.tokenizer.vocab_size)
    src = Source(corpus.tokenizer, lambda rng: corpus.batch("train", tcfg.batch_size, mcfg.block_size, rng),
                 corpus.val_batches(tcfg.eval_iters, tcfg.batch_size, mcfg.block_size, tcfg.seed + 1),
                 None, corpus.name)
    return src, mcfg


# --- the loop ---------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, src: Source) -> dict:
    """Mean validation loss (and aux terms) over the fixed batches, plus the task's metrics on a task."""
    was_training = model.training
    model.eval()
    outs = [model(b) for b in src.val]
    model.train(was_training)
    row = {"val_loss": sum(o.loss.item() for o in outs) / len(outs)}
    for name in model.aux_terms:
        row[f"val_{name}"] = sum(o.aux[name].item() for o in outs) / len(outs)
    if src.task is not None:
        row.update(src.task.score(model, src.val))
    return row


@dataclass
class PendingRow:
    """The training figures of the log row in progress (since the previous row); saved in checkpoints as a
    plain dict, so that a resume after a Ctrl-C writes the row an uninterrupted run would have."""
    losses: list = field(default_factory=list)   # mean loss of each optimizer step
    aux: dict = field(default_factory=dict)      # aux term name -> list of per-step values
    tokens: int = 0
    time: float = 0.0
    lr: float = 0.0
    grad_norm: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PendingRow":
        return cls(**d)


class Trainer:
    """Trains one run folder: `Trainer(mcfg, tcfg, out).run()`, or `Trainer.resume(out).run()`.

    Building a Trainer seeds the global RNGs (Python, NumPy, torch) with `tcfg.seed` and sets torch's
    thread count to `tcfg.threads`: a run is reproducible only if nothing else draws from them meanwhile."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, out=None, progress: bool = True,
                 verbose: bool = True):
        tools.set_threads(tcfg.threads)
        tools.seed_everything(tcfg.seed)
        self.tcfg, self.progress, self.verbose = tcfg, progress, verbose
        self.src, self.mcfg = make_source(mcfg, tcfg, progress)
        self.out = Path(out) if out else tools.TRAINED / f"{mcfg.arch}-{self.src.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.model = build_model(self.mcfg)
        self.optimizer = torch.optim.AdamW(self.model.param_groups(tcfg.weight_decay), lr=tcfg.lr,
                                           betas=(tcfg.beta1, tcfg.beta2))
        self.data_rng = np.random.default_rng(tcfg.seed)
        self.step, self.tokens, self.elapsed, self.best = 0, 0, 0.0, math.inf
        self.rows: list[dict] = []
        self.pending = self.new_row()  # training figures of the log row in progress
        aux = [f"{split}_{name}" for name in self.model.aux_terms for split in ("train", "val")]
        self.columns = tools.LOG_COLUMNS + (self.src.task.metrics() if self.src.task else []) + aux
        self.stopped = ""  # why the run ended early, if it did

    # --- resume -----------------------------------------------------------------------------------
    @classmethod
    def resume(cls, out, progress: bool = True, verbose: bool = True, **overrides) -> "Trainer":
        """Rebuild a run from its folder and its checkpoint; `overrides` change TrainConfig fields
        (e.g. a larger max_iters; the schedule then differs from the original run's)."""
        out = Path(out)
        if not (out / "checkpoint.pt").exists():
            raise FileNotFoundError(f"{out} has no checkpoint.pt to resume from")
        mcfg = config_from_dict(tools.load_json(out / "model_config.json"))
        tcfg = replace(config_from_dict(tools.load_json(out / "train_config.json")), **overrides)
        self = cls(mcfg, tcfg, out, progress, verbose)
        ck = tools.load_weights(out / "checkpoint.pt")
        self.model.load_state_dict(tools.upgrade_state_dict(ck["model"]))
        self.optimizer.load_state_dict(ck["optimizer"])
        self.step, self.tokens, self.elapsed, self.best = ck["step"], ck["tokens"], ck["elapsed"], ck["best"]
        self.pending = PendingRow.from_dict(ck["pending"])
        tools.set_rng_state(ck["rng"])
        self.data_rng.bit_generator.state = ck["data_rng"]
        self.rows = [r for r in tools.read_log(out / "log.csv") if r["step"] <= self.step]
        return self

    def checkpoint(self, rng=None, data_rng=None) -> None:
        """checkpoint.pt: everything a resume needs; model.pt: the same weights alone (for load_run)."""
        tools.save_torch(self.out / "model.pt", self.model.state_dict())
        tools.save_torch(self.out / "checkpoint.pt", {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
            "tokens": self.tokens, "elapsed": self.elapsed, "best": self.best, "pending": self.pending.to_dict(),
            "rng": rng or tools.rng_state(), "data_rng": data_rng or self.data_rng.bit_generator.state})

    # --- run --------------------------------------------------------------------------------------
    def save_configs(self) -> None:
        tools.save_json(self.out / "model_config.json", self.mcfg.to_dict())
        tools.save_json(self.out / "train_config.json", self.tcfg.to_dict())
        self.src.tokenizer.save(self.out / "tokenizer.json")

    def new_row(self) -> PendingRow:
        return PendingRow(lr=tools.lr_at(self.step, self.tcfg))

    def due(self) -> bool:
        """Is a log row due at this step and not yet written (also after a Ctrl-C during its evaluation)?"""
        t, logged = self.tcfg, self.rows[-1]["step"] if self.rows else -1
        return logged < self.step and (self.step % t.eval_interval == 0 or self.step == t.max_iters)

    def log(self) -> dict:
        """Evaluate, append a row to log.csv (training figures since the previous row), track the best,
        then checkpoint."""
        p = self.pending
        row = {"step": self.step, "tokens": self.tokens, "elapsed_s": round(self.elapsed, 3),
               "tokens_per_s": round(p.tokens / p.time, 1) if p.time > 0 else None,
               "lr": p.lr, "train_loss": sum(p.losses) / len(p.losses) if p.losses else None,
               "val_loss": None, "grad_norm": p.grad_norm}
        row.update({f"train_{k}": sum(v) / len(v) for k, v in p.aux.items() if v})
        row.update(evaluate(self.model, self.src))
        self.rows.append(row)
        tools.write_log(self.out / "log.csv", self.rows, self.columns)
        if row["val_loss"] < self.best:
            self.best = row["val_loss"]
            tools.save_torch(self.out / "best_model.pt", self.model.state_dict())
        self.pending = self.new_row()
        self.checkpoint()
        if self.verbose and not self.progress:
            print(format_row(row))
        return row

    def train_step(self, lr: float) -> tuple[float, float, int, dict]:
        """One optimizer step over grad_accum micro-batches: (mean loss, gradient norm before clipping,
        real tokens seen, mean of each aux term)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.on_step(self.step / max(1, self.tcfg.max_iters))
        total, tokens, aux = 0.0, 0, dict.fromkeys(self.model.aux_terms, 0.0)
        for _ in range(self.tcfg.grad_accum):
            batch = self.src.train_batch(self.data_rng)
            out = self.model(batch)
            (out.loss / self.tcfg.grad_accum).backward()
            total += out.loss.item() / self.tcfg.grad_accum
            tokens += batch.n_tokens
            for k in aux:
                aux[k] += out.aux[k].item() / self.tcfg.grad_accum
        clip = self.tcfg.grad_clip if self.tcfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip).item()
        if math.isfinite(total) and math.isfinite(norm):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total, norm, tokens, aux

    def run(self) -> "Trainer":
        """Train to max_iters (or until stopped), keeping the run folder up to date all along."""
        t, m = self.tcfg, self.model
        self.out.mkdir(parents=True, exist_ok=True)
        self.save_configs()
        m.train()
        bar = tqdm(total=t.max_iters, initial=self.step, disable=not self.progress, desc=self.out.name)
        unfinished = None
        try:
            if self.due():  # step 0, or a row whose evaluation a Ctrl-C cut short
                self.log()
            while self.step < t.max_iters:
                unfinished = tools.rng_state(), self.data_rng.bit_generator.state  # to save exactly on Ctrl-C
                lr, t0 = tools.lr_at(self.step, t), time.perf_counter()
                loss, norm, tokens, aux = self.train_step(lr)
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    what = "loss" if not math.isfinite(loss) else "gradient norm"
                    self.stopped = (f"non-finite {what} at step {self.step + 1}: stopped, the last good checkpoint "
                                    f"(step {int(self.rows[-1]['step'])}) is kept; try a lower --lr or --grad_clip")
                    break
                dt = time.perf_counter() - t0
                self.step, self.tokens, self.elapsed, unfinished = self.step + 1, self.tokens + tokens, self.elapsed + dt, None
                p = self.pending
                p.losses.append(loss)
                for k, v in aux.items():
                    p.aux.setdefault(k, []).append(v)
                p.tokens, p.time, p.lr, p.grad_norm = p.tokens + tokens, p.time + dt, lr, norm
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if self.due():
                    self.log()
        except KeyboardInterrupt:
            # A step cut in the middle is dropped: its parameters were not updated, and the RNG states from
            # its start are saved, so a resume repeats it as if it had never begun.
            self.checkpoint(*unfinished) if unfinished else self.checkpoint()
            self.stopped = f"interrupted at step {self.step}; continue with: python train.py --resume {self.out}"
        finally:
            bar.close()
        self.write_readme()
        return self

    # --- reporting --------------------------------------------------------------------------------
    def sample(self) -> str:
        """A short sample for the run's README: generated text, or a few task answers."""
        from inference import generate
        m = self.model.eval()
        if self.src.task is not None:
            return self.src.task.show(m, self.src.val[0])
        prompt = self.src.tokenizer.decode(self.src.val[0].x[0, :16].tolist())
        return prompt + generate(m, self.src.tokenizer, prompt, max_new_tokens=self.tcfg.sample_len,
                                 temperature=0.8, top_k=50, seed=self.tcfg.seed)

    def summary(self) -> dict:
        last = self.rows[-1]
        out = {"arch": self.mcfg.arch, "params": self.model.num_params(), "data": self.src.name,
               "tokenizer": self.src.tokenizer.name, "tokenizer_hash": self.src.tokenizer.hash(),
               "steps": self.step, "tokens": self.tokens, "train_seconds": round(self.elapsed, 1),
               "final_val_loss": round(last["val_loss"], 4), "best_val_loss": round(self.best, 4)}
        for k in self.columns[len(tools.LOG_COLUMNS):]:
            if last.get(k) is not None:
                out[k] = round(last[k], 4)
        return out

    def write_readme(self) -> None:
        s = self.summary()
        sample = self.sample() if self.tcfg.sample_len and not self.stopped.startswith("non-finite") else ""
        status = self.stopped or "finished"
        lines = [f"# {self.out.name}", "",
                 f"A `{s['arch']}` model ({s['params']:,} parameters) trained on `{s['data']}` with the "
                 f"`{s['tokenizer']}` tokenizer (hash `{s['tokenizer_hash']}`): {s['steps']} steps, "
                 f"{s['tokens']:,} tokens, {s['train_seconds']} s of training ({status}).", "",
                 "| " + " | ".join(s) + " |", "|" + "---|" * len(s), "| " + " | ".join(map(str, s.values())) + " |",
                 "", f"Rebuild: `tools.load_run({str(self.out.name)!r})`; continue: "
                 f"`python train.py --resume {self.out}`.", ""]
        if sample:
            lines += ["## Sample", "", "```", sample, "```", ""]
        tools.atomic_write_text(self.out / "README.md", "\n".join(lines))
        tools.save_json(self.out / "summary.json", s)
        self.sample_text = sample


def format_row(row: dict) -> str:
    parts = [f"step {int(row['step'])}"]
    for k in [k for k in row if k.startswith(("train_", "val_"))]:
        if row.get(k) is not None:
            parts.append(f"{k} {row[k]:.3f}")
    return "  ".join(parts)


def train(mcfg: ModelConfig, tcfg: TrainConfig, out=None, progress: bool = False, verbose: bool = True) -> Trainer:
    """Train a run from Python (notebooks): returns the finished Trainer (`.model`, `.rows`, `.out`)."""
    return Trainer(mcfg, tcfg, out, progress, verbose).run()


# --- command line -----------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Unknown flags get the closest valid names as a suggestion."""
        if "unrecognized arguments" in message:
            known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            for bad in message.split(":", 1)[1].split():
                if bad.startswith("--"):
                    close = difflib.get_close_matches(bad.split("=")[0], known, n=3)
                    message += f"\n  {bad}: did you mean {' or '.join(close)}?" if close else ""
            message += "\n  (python train.py --help lists every flag)"
        super().error(message)


def parse_bool(s: str) -> bool:
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    raise argparse.ArgumentTypeError(f"{s!r} is not a boolean; write true or false")


def add_fields(group, cls) -> None:
    """One flag per dataclass field, of the same name, with its default and documented meaning."""
    for f in fields(cls):
        kind = {"int": int, "float": float, "bool": parse_bool, "str": str}[str(f.type)]
        default = str(f.default).lower() if isinstance(f.default, bool) else repr(f.default)
        group.add_argument(f"--{f.name}", type=kind, metavar=str(f.type).upper(),
                           help=f"{f.metadata.get('help', '')} (default: {default})".replace("%", "%%"))


def build_parser(arch: str) -> Parser:
    p = Parser(prog="train.py", description="Train a mnemo model; writes a run folder under trained/.",
               formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=32),  # long flag names
               argument_default=argparse.SUPPRESS, allow_abbrev=False,
               epilog=f"architectures: {', '.join(sorted(MODEL_CONFIGS))}. Flags of another architecture: "
                      f"python train.py --arch NAME --help.")
    p.add_argument("--out", help="run folder (default: trained/<arch>-<data>-<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint; other "
                                                   "flags then change its TrainConfig (e.g. --max_iters)")
    p.add_argument("--progress", type=parse_bool, metavar="BOOL", help="show a progress bar (default: true)")
    add_fields(p.add_argument_group(f"model ({MODEL_CONFIGS[arch].__name__})"), MODEL_CONFIGS[arch])
    add_fields(p.add_argument_group("training (TrainConfig)"), TrainConfig)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--arch", default="gpt")
    arch = pre.parse_known_args(argv)[0].arch
    if arch not in MODEL_CONFIGS:
        Parser(prog="train.py").error(f"--arch {arch!r} is not valid; choose one of {sorted(MODEL_CONFIGS)}")
    parser = build_parser(arch)
    args = vars(parser.parse_args(argv))
    out, resume, progress = args.pop("out", None), args.pop("resume", None), args.pop("progress", True)
    model_keys = {f.name for f in fields(MODEL_CONFIGS[arch])}
    try:
        if resume:
            extra = sorted(k for k in args if k in model_keys)
            if extra:
                parser.error(f"--resume keeps the run's model config; cannot change {extra}")
            trainer = Trainer.resume(resume, progress=progress, **args)
        else:
            mcfg = config_from_dict({"arch": arch, **{k: v for k, v in args.items() if k in model_keys}})
            tcfg = TrainConfig(**{k: v for k, v in args.items() if k not in model_keys})
            trainer = Trainer(mcfg, tcfg, out, progress=progress)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    trainer.run()
    s = trainer.summary()
    print(f"\nrun folder: {trainer.out}")
    print("  ".join(f"{k} {v}" for k, v in s.items()))
    if trainer.sample_text:
        print(f"\nsample:\n{trainer.sample_text}")
    if trainer.stopped:
        print(f"\nstopped: {trainer.stopped}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
