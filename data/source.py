"""What the training loop reads: a training batch per step and a fixed set of validation batches, from a
corpus or a task, in the layout the model reads; and the model config completed with what the data decides.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from config import ConfigError, ModelConfig, TrainConfig
from tokenizers import Tokenizer

from .batch import DECODER
from .corpus import Corpus, Records
from .tasks import curriculum_stages, task_from_config


@dataclass
class Source:
    """What the loop needs from the data: a training batch per call, fixed validation batches."""
    tokenizer: Tokenizer
    train_batch: callable       # (np.random.Generator, i) -> Batch, i = step x grad_accum + micro-batch (the
                                # step: for a curriculum; the window: for a stream)
    val: list                   # fixed validation batches
    task: object = None         # the Task, when training on one (adds its metrics: val_acc, ...)
    name: str = ""
    note: str = ""              # what reading the data changed, said at the start and kept in the README: how
                                # the text was fitted to a tokenizer not built from it (data.fit_texts), how
                                # many classify examples were cut
    stream: object = None       # the training Stream (data.corpus) of a --stream run: train_batch(rng, i) reads
                                # its window i, and a model's memory is dropped where stream.starts_over(i)
    stage: callable = None      # a task run: i -> the Task train_batch(rng, i) draws from (a curriculum's stage)


def make_source(mcfg: ModelConfig, tcfg: TrainConfig, layout: str, progress: bool = True,
                processes: int = 1, tokenizer: Tokenizer | None = None) -> tuple[Source, ModelConfig]:
    """The data of `tcfg` in batch `layout` (the one the model reads), and the model config completed with
    what the data decides (vocab size; for a task, the tokenizer, the sequence length and the classes; a
    length classify takes from its data is at most mcfg.block_size). A task that does not make `layout` is
    refused. A training batch holds batch_size examples for each of `processes` processes:
    every process draws the same global batch and takes its own rows. `tokenizer`: the one to read a corpus
    with (a finetune's, which its text is fitted to), instead of mcfg.tokenizer built from the text."""
    batch_size = tcfg.batch_size * processes
    if tcfg.task:
        task = task_from_config(tcfg, mcfg.block_size)
        mcfg = replace(mcfg, tokenizer=task.tokenizer.name, block_size=task.seq_len,
                       vocab_size=task.tokenizer.vocab_size, n_classes=task.n_classes)
        if layout not in task.layouts:
            raise ConfigError(f"arch = {mcfg.arch!r} reads {layout} batches, and task = {tcfg.task!r} makes "
                              f"{list(task.layouts)} only; choose a model that reads one of them")
        stages = [task]
        if tcfg.curriculum:
            if not hasattr(mcfg, "seg_len"):
                raise ConfigError(f"curriculum = {tcfg.curriculum} counts segments, and arch = {mcfg.arch!r} has "
                                  f"none; use a segmented model (rmt, transformer_xl) or curriculum 0")
            stages = curriculum_stages(task, mcfg.seg_len)
        accum = tcfg.grad_accum
        stage = lambda i: stages[min(i // accum // max(1, tcfg.curriculum), len(stages) - 1)]
        train, val = ("train", "val") if tcfg.heldout else (None, None)  # runs saved before: any example
        src = Source(task.tokenizer, lambda rng, i: stage(i).batch(batch_size, rng, layout, train),
                     task.val_batches(tcfg.eval_iters, tcfg.batch_size, tcfg.seed + 1, layout, val), task,
                     tcfg.task, task.note, stage=stage)
        return src, mcfg
    if layout != DECODER:
        raise ConfigError(f"arch = {mcfg.arch!r} is an encoder-decoder: it reads a source and writes a target, "
                          f"so it trains on a task (--task NAME, e.g. --task copy), not on a corpus")
    corpus = (Records if tcfg.records else Corpus).load(tcfg.data, tokenizer or mcfg.tokenizer, progress=progress)
    if mcfg.vocab_size not in (0, corpus.tokenizer.vocab_size):
        raise ConfigError(f"vocab_size = {mcfg.vocab_size} does not match the tokenizer's "
                          f"{corpus.tokenizer.vocab_size}; leave it at 0 to take the tokenizer's")
    mcfg = replace(mcfg, vocab_size=corpus.tokenizer.vocab_size)
    val = corpus.val_batches(tcfg.eval_iters, tcfg.batch_size, mcfg.block_size, tcfg.seed + 1)
    if tcfg.stream:
        stream = corpus.stream("train", batch_size, mcfg.block_size)
        return Source(corpus.tokenizer, lambda rng, i: stream.batch(i), val, None, corpus.name, corpus.note,
                      stream=stream), mcfg
    src = Source(corpus.tokenizer, lambda rng, i: corpus.batch("train", batch_size, mcfg.block_size, rng),
                 val, None, corpus.name, corpus.note)
    return src, mcfg
