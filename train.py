"""The one training loop every mnemo architecture goes through, and its command line.

    python train.py                                  # a small GPT on the built-in corpus, a few minutes
    python train.py --arch gpt --data shakespeare --n_layer 6 --max_iters 2000
    python train.py --task copy --task_len 8         # a synthetic task, loss on the answer only
    python train.py --resume trained/<run>           # continue a run exactly where it stopped
    python train.py --init_from gpt-builtin --data builtin-records --records true --max_iters 100
                                                     # finetune a run on records, <bos> record <eos> each
    python train.py --help                           # every flag, its default and meaning
    torchrun --nproc_per_node=2 train.py ...         # several processes (DistributedDataParallel)

AdamW (no decay on norms, biases, embeddings), linear warm-up then cosine/linear/step/constant decay,
gradient accumulation, clipping (the pre-clip norm is logged), evaluation on a fixed set of validation
batches, one CPU thread by default, everything seeded. Every `eval_interval` steps a row goes to `log.csv`
and a checkpoint (model, optimizer, step, RNG and data-sampler state) is written atomically, so
`--resume` continues exactly as an uninterrupted run would. A non-finite loss or gradient stops the run
and keeps the last good checkpoint; Ctrl-C (or SIGTERM, what `kill` and job schedulers send) saves and
stops. Nothing is lost: a folder that already holds a run is refused (`--resume` it, or `--overwrite
true`), a run folder is locked while a process writes it, and the folder is checked to be writable before
any work. A model whose weights, gradients and AdamW moments alone exceed the device's free memory is refused
before it is built, with the flags that shrink it (`check_memory`); running out of memory anyway, or losing
another torchrun process, ends in one line that says where to resume (`Trainer.failure`). Architecture hooks
go through `model.on_step(progress)`: the loop never branches on the architecture.

Finetuning (`--init_from RUN`): the run starts from RUN's weights, tokenizer and model config, with a fresh
TrainConfig (its own schedule, optimizer and step count). The data is read with RUN's tokenizer: a character
it has no token for is folded to its NFKD form or dropped (`data.fit_texts`; what changed is printed and kept in
the README), and more than 1% dropped is refused. train_config.json names RUN (`init_from`); summary.json and
the README also give the sha256 of the model.pt it started from. With `--records true` the data is records
separated by blank lines, each trained as `<bos> record <eos>` (`data.Records`), so the model learns to stop:
`python inference.py RUN --prompt ""` then writes one record from `<bos>` and ends at `<eos>`.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import evaluation
import runs
import tools
from config import (MODEL_CONFIGS, PRESETS, ConfigError, ModelConfig, TrainConfig, add_flags, config_from_dict,
                    model_class, parse_bool, preset_fields)
from data import DownloadError, corpus_name
from data.source import Source
from data.source import make_source as data_source
from modules import build_model, carried, training_bytes
from tokenizers import Tokenizer


# --- data and the run a finetune starts from ------------------------------------------------------
def make_source(mcfg: ModelConfig, tcfg: TrainConfig, progress: bool = True, processes: int = 1,
                tokenizer: Tokenizer | None = None) -> tuple[Source, ModelConfig]:
    """The data of `tcfg`, in the batch layout the model of `mcfg` reads (its capabilities), and the model
    config completed with what the data decides (`data.source.make_source`)."""
    return data_source(mcfg, tcfg, model_class(mcfg.arch).batch_layout(), progress, processes, tokenizer)


@dataclass
class Pretrained:
    """The run a finetune starts from: its folder, model config, tokenizer and weights, and the sha256 of its
    model.pt (what the new run records, so its origin can be checked later)."""
    folder: Path
    mcfg: ModelConfig
    tokenizer: Tokenizer
    weights: dict
    sha256: str

    @classmethod
    def load(cls, run) -> "Pretrained":
        """Run folder `run` (a path, or a name under trained/), checked by runs.load_run; a bad name raises
        FileNotFoundError listing the runs there are."""
        try:
            model, cfgs, tok = runs.load_run(run)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"init_from = {str(run)!r}: {e}") from None
        folder = runs.find_run(run)
        return cls(folder, cfgs["model"], tok, model.state_dict(), tools.sha256_of(folder / "model.pt"))

    def model_config(self, mcfg: ModelConfig | None) -> ModelConfig:
        """The source's model config; a different `mcfg` asked for alongside is a ConfigError naming the fields."""
        if mcfg is not None and mcfg != self.mcfg:
            a, b = mcfg.to_dict(), self.mcfg.to_dict()
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            raise ConfigError(f"init_from = {runs.run_ref(self.folder)!r} brings its own model config, which "
                              f"differs from the one given in {diff}; pass no model config (None)")
        return self.mcfg

    def origin(self) -> dict:
        return {"init_from": runs.run_ref(self.folder), "init_from_sha256": self.sha256}


# --- the loop ---------------------------------------------------------------------------------------
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


class Trainer:
    """Trains one run folder: `Trainer(mcfg, tcfg, out).run()`, or `Trainer.resume(out).run()`.

    Building a Trainer seeds the global RNGs (Python, NumPy, torch) with `tcfg.seed` and sets torch's
    thread count to `tcfg.threads`: a run is reproducible only if nothing else draws from them meanwhile.

    Devices and processes, with PyTorch's own machinery: the model trains on `tcfg.device`, its forward pass
    under autocast when `tcfg.dtype` is bfloat16 or float16 (float32 weights, optimizer state and losses; a
    gradient scaler for float16), through `torch.compile` when `tcfg.compile`. Started by `torchrun`, every
    process builds the same model and draws the same global batch (batch_size x processes examples per
    micro-step) from the same seeded sampler, trains on its own rows under DistributedDataParallel (gloo on
    CPUs, nccl on GPUs), and only the main process (rank 0) writes the run folder; run folders hold CPU
    tensors only, so a run trained on a GPU or under torchrun loads and resumes in one CPU process.

    Before any data is read, the run folder is checked: a folder that already holds a run is refused unless
    `overwrite` (its run files are then removed when `run()` starts), a folder another process is writing is
    refused, and one that cannot be written is refused (`tools.RunFolderError`)."""

    def __init__(self, mcfg: ModelConfig | None, tcfg: TrainConfig, out=None, progress: bool = True,
                 verbose: bool = True, overwrite: bool = False, *, _resume: bool = False, _processes: int = 0):
        source = Pretrained.load(tcfg.init_from) if tcfg.init_from and not _resume else None
        if source is not None:  # a finetune: the source's model, named the same way wherever it was given
            mcfg, tcfg = source.model_config(mcfg), replace(tcfg, init_from=runs.run_ref(source.folder))
        self.origin = source.origin() if source else {}  # a resume restores it from the checkpoint
        if mcfg is None:
            raise ConfigError("no model config: pass one, or set init_from to start from a run's")
        name = tcfg.task or corpus_name(tcfg.data)
        self.out = Path(out) if out else tools.TRAINED / f"{mcfg.arch}-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.folder = runs.RunFolder(self.out)  # what the run folder's files are, and their checks
        self.procs = tools.processes()
        # the processes the run was started with fix its global batch; a resume by fewer takes several shares each
        self.shards = max(1, _processes // self.procs.world)
        self.device = tools.pick_device(tcfg.device, self.procs.local_rank)  # before any work: a clear error
        if self.procs.main:
            self.folder.prepare(overwrite=overwrite, resume=_resume)
        self.overwrite, self.claimed = overwrite, _resume  # claimed: the folder's run files are this run's
        tools.set_threads(tcfg.threads)
        tools.seed_everything(tcfg.seed)
        self.tcfg, self.progress, self.verbose = tcfg, progress and self.procs.main, verbose and self.procs.main
        # A resume reads the run's own tokenizer (checked against its model config and recorded hash). A
        # finetune's resume reads its data with it (the source run may have moved since; the data was never the
        # text the tokenizer was built from); any other resume must rebuild the same one from its data, which
        # decides vocab_size again (a data file edited since is reported as such, below).
        saved = runs.load_tokenizer(self.out, mcfg) if _resume else None
        reader = source.tokenizer if source else saved if tcfg.init_from else None
        self.src, self.mcfg = make_source(replace(mcfg, vocab_size=0) if saved else mcfg, tcfg,
                                          progress and self.procs.main, self.procs.world * self.shards, reader)
        if saved is not None and saved.hash() != self.src.tokenizer.hash():
            raise tools.RunFolderError(self.data_changed(saved))
        if self.verbose and self.src.note:
            print(self.src.note)
        self.src.val = [b.to(self.device) for b in self.src.val]
        self.model_fixed = "--resume" if _resume else "--init_from" if source else ""  # what brought the model config
        tools.check_memory(*training_bytes(self.mcfg), self.device, tools.memory_hint(self.mcfg, tcfg, self.model_fixed))
        self.model = build_model(self.mcfg)
        if source is not None:
            self.model.load_state_dict(source.weights)
        self.model.to(self.device)
        self.net = self.wrap(self.model)  # what the training step calls: the model, compiled and/or in DDP
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tcfg.dtype == "float16")
        self.optimizer = torch.optim.AdamW(self.model.param_groups(tcfg.weight_decay), lr=tcfg.lr,
                                           betas=(tcfg.beta1, tcfg.beta2))
        self.data_rng = np.random.default_rng(tcfg.seed)
        # a --stream run of a model with a memory carries it from step to step (None: fresh at the next window)
        self.carries = self.src.stream is not None and self.model.carries_memory
        if self.carries and self.procs.world * self.shards > 1:
            raise ConfigError(f"stream = true with arch = {self.mcfg.arch!r} carries each batch row's memory from "
                              f"step to step, which one process trains and checkpoints; run it without torchrun "
                              f"(or with stream = false)")
        self.memory = self.next_memory = None
        self.step, self.tokens, self.elapsed, self.best = 0, 0, 0.0, math.inf
        self.rows: list[dict] = []
        self.pending = self.new_row()  # training figures of the log row in progress
        aux = [f"{split}_{name}" for name in self.model.aux_terms for split in ("train", "val")]
        self.columns = runs.LOG_COLUMNS + (self.src.task.metrics() if self.src.task else []) + aux
        self.stopped = ""  # why the run ended early, if it did
        self.saved_at = None  # the step of the last checkpoint this Trainer wrote
        self.after_step = None  # optional f(trainer) called after every optimizer step (an outer progress bar)

    def data_changed(self, saved: Tokenizer) -> str:
        """Why a resume is refused when its data no longer gives the run's tokenizer `saved`."""
        t, new = self.tcfg, self.src.tokenizer
        what = (f"task = {t.task!r}" if t.task else f"the data file {t.data}" if Path(t.data).is_file()
                else f"the corpus data = {t.data!r}")
        finetune = "" if t.task else (f", or finetune this run on the data as it is now: python train.py "
                                      f"--init_from {self.out} --data {t.data}{' --records true' * t.records} "
                                      f"--out NEW_FOLDER")
        return (f"{what} changed since the run began: the tokenizer built from it now ({new.vocab_size} tokens, "
                f"hash {new.hash()}) is not the run's {self.out / 'tokenizer.json'} ({saved.vocab_size} tokens, "
                f"hash {saved.hash()}), so the ids would no longer mean what the model learned. Resume with "
                f"the data as it was when the run began{finetune}")

    def wrap(self, model):
        """The model as the training step runs it: in DistributedDataParallel under torchrun (the process
        group is started here: gloo on CPUs, nccl on GPUs), then through torch.compile if asked."""
        net = model
        if self.procs.world > 1:
            import torch.distributed as dist
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return torch.compile(net) if self.tcfg.compile else net

    def autocast(self):
        """The forward pass in tcfg.dtype (a no-op for float32)."""
        dtype = tools.DTYPES[self.tcfg.dtype]
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def close(self) -> None:
        """End the process group torchrun's processes trained in (nothing to do in one process)."""
        import torch.distributed as dist
        if self.procs.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def my_rows(self, batch, shard: int = 0):
        """This process's `shard`-th share of a global batch (batch_size rows), on this process's device. A
        global batch has one share per process the run was started with; a run resumed by fewer processes
        takes several shares each (`self.shards`), one after the other, as gradient accumulation."""
        n, k = self.tcfg.batch_size, self.procs.rank * self.shards + shard
        return batch.rows(k * n, (k + 1) * n).to(self.device)

    # --- resume -----------------------------------------------------------------------------------
    @classmethod
    def resume(cls, out, progress: bool = True, verbose: bool = True, **overrides) -> "Trainer":
        """Rebuild a run from its folder and its checkpoint; `overrides` change TrainConfig fields
        (e.g. a larger max_iters; the schedule then differs from the original run's)."""
        out = Path(out)
        folder = runs.RunFolder(out)
        cfgs = folder.resume_configs(**overrides)  # no checkpoint.pt, or finished: refused, saying why
        tcfg = cfgs["train"]
        ck = folder.load_checkpoint()
        started, world = ck.get("processes", 1), tools.processes().world
        if started % world:
            raise tools.RunFolderError(
                f"{out} was trained by {started} process(es), with a global batch of {started} x {tcfg.batch_size} "
                f"examples; {world} processes cannot share it evenly. Resume it with a number of processes that "
                f"divides {started}, e.g. torchrun --nproc_per_node={started} train.py --resume {out}, or "
                f"python train.py --resume {out} (one process then takes every share, by gradient accumulation)")
        self = cls(cfgs["model"], tcfg, out, progress, verbose, _resume=True, _processes=started)
        folder.check_weights(ck["model"], self.model)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if "scaler" in ck and self.scaler.is_enabled():
            self.scaler.load_state_dict(ck["scaler"])
        self.step, self.tokens, self.elapsed, self.best = ck["step"], ck["tokens"], ck["elapsed"], ck["best"]
        self.origin = ck.get("origin", {})
        self.pending = PendingRow.from_dict(ck["pending"])
        tools.set_rng_state(ck["rng"])
        self.data_rng.bit_generator.state = ck["data_rng"]
        if ck.get("memory") is not None:  # the memory a --stream run carries into its next step
            state = self.model.init_state(tcfg.batch_size)
            vars(state).update(ck["memory"])
            self.memory = carried(state, self.device)
        self.rows = [r for r in folder.read_log() if r["step"] <= self.step]
        return self

    def checkpoint(self, rng=None, data_rng=None) -> None:
        """checkpoint.pt: everything a resume needs; model.pt: the same weights alone (for load_run), written by
        the main process alone (`runs.RunFolder.save_checkpoint`)."""
        self.saved_at = self.step
        if not self.procs.main:
            return
        self.folder.save_checkpoint(self.model.state_dict(), {
            "optimizer": self.optimizer.state_dict(), "step": self.step, "tokens": self.tokens,
            "elapsed": self.elapsed, "best": self.best, "pending": self.pending.to_dict(),
            "rng": rng or tools.rng_state(), "data_rng": data_rng or self.data_rng.bit_generator.state,
            "origin": self.origin, "processes": self.procs.world * self.shards,
            "memory": None if self.memory is None else vars(self.memory),
            **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {})})

    # --- run --------------------------------------------------------------------------------------
    def save_configs(self) -> None:
        """The configs, the tokenizer (a classifier's labels) and summary.json begun with the run's identity
        (`runs.RunFolder.save_configs`), by the main process."""
        if not self.procs.main:
            return
        labels = self.src.task.labels if self.src.task is not None else None
        self.folder.save_configs(self.mcfg, self.tcfg, self.src.tokenizer, self.identity(), labels)

    def new_row(self) -> PendingRow:
        return PendingRow(lr=lr_at(self.step, self.tcfg))

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
        with self.autocast():
            # every process evaluates: their rows and best stay the same
            row.update(evaluation.validation_scores(self.model, self.src.val, self.src.task))
        self.rows.append(row)
        if self.procs.main:
            self.folder.write_log(self.rows, self.columns)
        if row["val_loss"] < self.best:
            self.best = row["val_loss"]
            if self.procs.main:
                self.folder.save_best(self.model.state_dict())
        self.pending = self.new_row()
        self.checkpoint()
        if self.verbose and not self.progress:
            print(runs.format_row(row))
        return row

    def gradients(self, lr: float) -> tuple[float, float, int, dict]:
        """The gradients of one optimizer step, over grad_accum micro-batches (each a global batch, of which this
        process takes its shards), clipped: (mean loss, gradient norm before clipping, real tokens seen, mean of
        each aux term). Nothing is updated yet: `update` does that."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.on_step(self.step / max(1, self.tcfg.max_iters))
        accum, shards, ddp = self.tcfg.grad_accum, self.shards, self.procs.world > 1
        n = accum * shards
        total, tokens, aux = 0.0, 0, dict.fromkeys(self.model.aux_terms, 0.0)
        memory = None if self.memory is None else carried(self.memory)  # a copy: the model updates it in place
        for i in range(accum):
            window = self.step * accum + i
            batch = self.src.train_batch(self.data_rng, window)
            if self.carries and (memory is None or self.src.stream.starts_over(window)):
                memory = self.model.init_state(batch.size)
            for j in range(shards):
                rows = self.my_rows(batch, j)
                # DDP averages gradients across processes on the last micro-batch's backward only
                with self.net.no_sync() if ddp and i * shards + j < n - 1 else contextlib.nullcontext():
                    with self.autocast():
                        out = self.net(rows, memory) if self.carries else self.net(rows)
                    self.scaler.scale(out.loss / n).backward()
                total += out.loss.item() / n
                tokens += rows.n_tokens
                for k in aux:
                    aux[k] += out.aux[k].item() / n
            if self.carries:  # the next window reads on from this one's memory, cut from its graph
                memory = carried(memory)
        self.next_memory = memory
        if ddp:  # the step's figures over every process
            import torch.distributed as dist
            figures = torch.tensor([total, tokens, *aux.values()], dtype=torch.float64, device=self.device)
            dist.all_reduce(figures)
            total, tokens = figures[0].item() / self.procs.world, int(figures[1].item())
            aux = {k: v.item() / self.procs.world for k, v in zip(aux, figures[2:])}
        self.scaler.unscale_(self.optimizer)  # clip the true gradients (a no-op without a scaler)
        clip = self.tcfg.grad_clip if self.tcfg.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip).item()
        return total, norm, tokens, aux

    def train_step(self, lr: float) -> tuple[float, float, int, dict]:
        """One whole optimizer step, `gradients` then `update` (what benchmarks and tests time or call; the loop
        runs the two apart, so that no signal falls between the update and the step count)."""
        loss, norm, tokens, aux = self.gradients(lr)
        self.update(self.finite(loss, norm))
        self.memory = self.next_memory
        return loss, norm, tokens, aux

    def finite(self, loss: float, norm: float) -> bool:
        """May the step's update be taken? A non-finite gradient norm is the scaler's to skip when there is one."""
        return math.isfinite(loss) and (math.isfinite(norm) or self.scaler.is_enabled())

    def update(self, finite: bool) -> None:
        """The optimizer step on the gradients `gradients` left (skipped when they are not finite; with a
        scaler, also when they overflowed), then the gradients are cleared."""
        if finite:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self) -> "Trainer":
        """Train to max_iters (or until stopped), keeping the run folder up to date all along. The folder is
        locked meanwhile (a second writer is refused). Ctrl-C and SIGTERM stop the run at the next step
        boundary, where it saves (`tools.Interrupts`); a second one stops it at once."""
        with self.folder.lock() if self.procs.main else contextlib.nullcontext(), \
                tools.Interrupts(say=self.say) as self.interrupts:
            self.claim()
            self._run()
        return self

    def say(self, message: str) -> None:
        """A line for the user, above the progress bar if there is one (main process only)."""
        if self.procs.main and (self.verbose or self.progress):
            tqdm.write(message, file=sys.stderr)

    def stop_requested(self) -> str | None:
        """The signal that asked the run to stop, if one did; under torchrun the processes agree (one asked,
        all stop at the same step boundary, or the others would wait for it in the next step's all-reduce)."""
        asked = self.interrupts.requested
        if self.procs.world > 1:
            import torch.distributed as dist
            flag = torch.tensor([asked is not None], dtype=torch.int32, device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            asked = asked or ("a signal to another process" if flag.item() else None)
        return asked

    def interrupted(self, by: str) -> str:
        """Why the run stopped, after a signal `by` (its name), and how to go on."""
        by = "" if by == "Ctrl-C" else f" by {by}"
        return f"interrupted{by} at step {self.step}; continue with: python train.py --resume {self.out}"

    def claim(self) -> None:
        """Under the lock: the folder must still hold no other run (one may have finished there since this
        Trainer was built); with overwrite, the old run's files go now."""
        if self.claimed or not self.procs.main:
            return
        self.folder.claim(self.overwrite)
        self.claimed = True

    def _run(self) -> None:
        t, m = self.tcfg, self.model
        self.save_configs()
        m.train()
        bar = tqdm(total=t.max_iters, initial=self.step, disable=not self.progress, desc=self.out.name)
        unfinished = None
        try:
            if self.due():  # step 0, or a row whose evaluation a second Ctrl-C cut short
                self.log()
            while self.step < t.max_iters:
                if asked := self.stop_requested():  # at a step boundary: the checkpoint resumes exactly
                    if self.saved_at != self.step:
                        self.checkpoint()
                    self.stopped = self.interrupted(asked)
                    break
                unfinished = tools.rng_state(), self.data_rng.bit_generator.state  # to save exactly on Ctrl-C
                lr, t0 = lr_at(self.step, t), time.perf_counter()
                loss, norm, tokens, aux = self.gradients(lr)
                finite = self.finite(loss, norm)
                with self.interrupts.held():  # the update and the step count go together, or not at all
                    self.update(finite)
                    self.memory = self.next_memory  # the memory goes with them: a step cut before is redone
                    if not finite:
                        what = "loss" if not math.isfinite(loss) else "gradient norm"
                        self.stopped = (f"non-finite {what} at step {self.step + 1}: stopped, the last good "
                                        f"checkpoint (step {int(self.rows[-1]['step'])}) is kept; try a lower "
                                        f"--lr or --grad_clip")
                        break
                    dt = time.perf_counter() - t0
                    self.step, self.tokens, self.elapsed, unfinished = (self.step + 1, self.tokens + tokens,
                                                                        self.elapsed + dt, None)
                    p = self.pending
                    p.losses.append(loss)
                    for k, v in aux.items():
                        p.aux.setdefault(k, []).append(v)
                    p.tokens, p.time, p.lr, p.grad_norm = p.tokens + tokens, p.time + dt, lr, norm
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}")
                if self.after_step:
                    self.after_step(self)
                if self.due():
                    self.log()
        except KeyboardInterrupt as e:
            # A second signal (or Ctrl-C outside the main thread) cut a step or an evaluation short. A step cut
            # before its update is dropped: its parameters were not updated, and the RNG states from its start
            # are saved, so a resume repeats it as if it had never begun (the update itself is never cut).
            self.checkpoint(*unfinished) if unfinished else self.checkpoint()
            self.stopped = self.interrupted(e.args[0] if e.args else "Ctrl-C")
        finally:
            bar.close()
        if self.procs.main:
            self.write_readme()

    # --- reporting --------------------------------------------------------------------------------
    def sample(self) -> str:
        """A short sample for the run's README: generated text, or a few task answers."""
        from inference import generate
        m = self.model.eval()
        if self.src.task is not None:
            return evaluation.show_examples(m, self.src.task, self.src.val[0])
        if self.tcfg.records:  # three records written from <bos>, each up to its <eos>, in the records format
            return "\n\n".join(generate(m, self.src.tokenizer, [""] * 3, max_new_tokens=self.tcfg.sample_len,
                                         temperature=0.8, top_k=50, seed=self.tcfg.seed))
        prompt = self.src.tokenizer.decode(self.src.val[0].x[0, :16].tolist())
        return prompt + generate(m, self.src.tokenizer, prompt, max_new_tokens=self.tcfg.sample_len,
                                 temperature=0.8, top_k=50, seed=self.tcfg.seed)

    def identity(self) -> dict:
        """What the run is, known from its start (`runs.identity`)."""
        return runs.identity(self.mcfg.arch, self.model.num_params(), self.src.name, self.src.tokenizer, self.origin)

    def summary(self) -> dict:
        """The run's identity and figures (`runs.summary`): final ones, or, after a stop, the last evaluation's."""
        return runs.summary(self.identity(), self.step, self.tokens, self.elapsed, self.rows, self.best,
                            bool(self.stopped), self.columns)

    def failure(self, e: BaseException) -> str | None:
        """One line for a run that `e` ended and that a user can act on (out of memory; under torchrun, another
        process stopped), saying where to resume; None for any other error."""
        if tools.out_of_memory(e):
            what = (f"out of memory on {self.device} after step {self.step} ({str(e).splitlines()[0]}); "
                    f"{tools.memory_hint(self.mcfg, self.tcfg, self.model_fixed)}")
        elif tools.lost_peer(e, self.procs.world):
            what = (f"rank {self.procs.rank} of {self.procs.world}: another process of this torchrun stopped "
                    f"after step {self.step}, torchrun's report names it ({str(e).splitlines()[0]})")
        else:
            return None
        if not self.rows:
            return f"{what}; no checkpoint was written yet"
        return (f"{what}; the last checkpoint is at step {int(self.rows[-1]['step'])}: continue with "
                f"python train.py --resume {self.out}")

    def write_readme(self) -> None:
        """README.md and summary.json (`runs.RunFolder.write_readme`), with a sample unless the loss diverged."""
        s = self.summary()
        sample = self.sample() if self.tcfg.sample_len and not self.stopped.startswith("non-finite") else ""
        notes = [runs.finetune_note(self.origin, self.tcfg.records, self.src.note) if self.origin else self.src.note,
                 runs.evaluation_note(s, self.stopped, self.tcfg.max_iters)]
        self.folder.write_readme(s, sample, notes, self.stopped or "finished")
        self.sample_text = sample



def train(mcfg: ModelConfig | None, tcfg: TrainConfig, out=None, progress: bool = False, verbose: bool = True,
          overwrite: bool = False) -> Trainer:
    """Train a run from Python (notebooks): returns the finished Trainer (`.model`, `.rows`, `.out`).
    A folder `out` that already holds a run is refused unless `overwrite`. A finetune (`tcfg.init_from`) takes
    its source run's model config: pass mcfg = None."""
    return Trainer(mcfg, tcfg, out, progress, verbose, overwrite).run()


# --- command line -----------------------------------------------------------------------------------
def build_parser(arch: str) -> tools.ArgParser:
    p = tools.ArgParser(prog="train.py", description="Train a mnemo model; writes a run folder under trained/.",
               formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=32),  # long flag names
               argument_default=argparse.SUPPRESS, allow_abbrev=False,
               epilog=f"architectures: {', '.join(sorted(MODEL_CONFIGS))}. Flags of another architecture: "
                      f"python train.py --arch NAME --help.")
    p.add_argument("--out", help="run folder (default: trained/<arch>-<data>-<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint; other "
                                                   "flags then change its TrainConfig (e.g. --max_iters)")
    p.add_argument("--overwrite", type=parse_bool, metavar="BOOL", help="replace the run already in --out "
                                                                        "(default: false: such a folder is refused)")
    p.add_argument("--progress", type=parse_bool, metavar="BOOL", help="show a progress bar (default: true)")
    p.add_argument("--preset", help="a named model size, which flags given beside it override: " + "; ".join(
        f"{k} ({', '.join(sorted(v.archs))}): {v.doc}" for k, v in PRESETS.items()))
    add_flags(p.add_argument_group(f"model ({MODEL_CONFIGS[arch].__name__})"), MODEL_CONFIGS[arch])
    add_flags(p.add_argument_group("training (TrainConfig)"), TrainConfig)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pre = tools.ArgParser(prog="train.py", add_help=False)
    pre.add_argument("--arch", default="gpt")
    pre.add_argument("--preset", default="")
    arch, preset = vars(pre.parse_known_args(argv)[0]).values()
    if arch not in MODEL_CONFIGS:
        tools.ArgParser(prog="train.py").error(f"--arch {arch!r} is not valid; choose one of {sorted(MODEL_CONFIGS)}")
    parser = build_parser(arch)
    args = vars(parser.parse_args(argv))
    out, resume, progress = args.pop("out", None), args.pop("resume", None), args.pop("progress", True)
    overwrite, _ = args.pop("overwrite", False), args.pop("preset", None)
    model_keys = {f.name for f in fields(MODEL_CONFIGS[arch])}
    if resume and (out or overwrite):
        parser.error("--resume continues the run in its own folder: leave out --out and --overwrite")
    keeper = "--resume" if resume else "--init_from" if args.get("init_from") else ""
    extra = sorted(k for k in args if k in model_keys) + (["--preset"] if preset else [])
    if keeper and extra:
        parser.error(f"{keeper} keeps the model config of its run; cannot change {extra}")
    with tools.exit_on_interrupt("train.py", "start-up (reading the data, building the model)"):
        try:
            if resume:
                trainer = Trainer.resume(resume, progress=progress, **args)
            else:
                mcfg = None if keeper else config_from_dict(
                    {"arch": arch, **preset_fields(preset, arch), **{k: v for k, v in args.items() if k in model_keys}})
                tcfg = TrainConfig(**{k: v for k, v in args.items() if k not in model_keys})
                trainer = Trainer(mcfg, tcfg, out, progress=progress, overwrite=overwrite)
        except (ConfigError, ValueError, FileNotFoundError, DownloadError) as e:  # RunFolderError is a ValueError
            parser.error(str(e))
        except (RuntimeError, MemoryError) as e:
            if not tools.out_of_memory(e):
                raise
            parser.error(f"out of memory while setting up the run ({str(e).splitlines()[0]}); "
                         f"{tools.memory_hint(fixed=keeper)}")
    try:
        trainer.run()
    except tools.RunFolderError as e:  # another process took the folder meanwhile
        parser.error(str(e))
    except (RuntimeError, MemoryError) as e:
        message = trainer.failure(e)
        if message is None:
            raise
        print(f"train.py: error: {message}", file=sys.stderr)
        return 1
    finally:
        trainer.close()
    if not trainer.procs.main:  # under torchrun, the main process reports
        return 1 if trainer.stopped else 0
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
