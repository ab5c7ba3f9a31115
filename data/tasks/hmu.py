"""The HMU framework's synthetic source -> target patterns: random (the control), temporal, hierarchical and
repetitive. Scored with the sequence metrics (data.metrics.sequence_metrics), perplexity, and retention: how
much of the accuracy the source explains, against the same model given another example's source.
"""
from __future__ import annotations

import numpy as np
import torch

from ..batch import IGNORE, Batch
from ..metrics import sequence_metrics
from .base import Task


class HMUPattern(Task):
    """A source -> target pattern of the HMU framework, over task_vocab symbols (values 0..V-1), source and
    target both task_len long. Scored with the sequence metrics of `sequence_metrics` (greedy, no teacher
    forcing), plus perplexity (teacher-forced) and memory retention (see `retention`)."""
    scoring = "sequences"  # evaluation.task_scores: greedy answers, with and without the source, and the loss

    def examples(self, n, rng):
        src, tgt = self.pattern(n, rng)
        return self.first + src, self.first + tgt

    def pattern(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(sources, targets) as values in 0..V-1, (n, task_len) each."""
        raise NotImplementedError

    def metrics(self):
        return ["val_acc", "val_exact", "val_ppl", "val_bleu2", "val_rouge2", "val_distinct2", "val_retention"]

    def metric_range(self, name):
        """Perplexity is >= 1; distinct-2 is a ratio to the data's (a random guesser can exceed 1); retention
        is negative when the wrong source helps more than the right one."""
        return {"val_ppl": (1.0, np.inf), "val_distinct2": (0.0, np.inf), "val_retention": (-np.inf, 1.0)}.get(name, (0.0, 1.0))

    def sequence_scores(self, pred: torch.Tensor, true: torch.Tensor, blind: torch.Tensor, nll: float) -> dict:
        """The task's metrics from the greedy answers `pred` against `true`, the answers `blind` given another
        example's source (`without_source`), and the mean teacher-forced loss `nll` per answer token."""
        out = sequence_metrics(pred, true, blind)
        return {"val_acc": out["acc"], "val_exact": out["exact"], "val_ppl": float(np.exp(nll)),
                **{f"val_{k}": out[k] for k in ("bleu2", "rouge2", "distinct2", "retention")}}


class HMURandom(HMUPattern):
    """Source and target drawn independently: nothing to learn beyond the marginal (chance 1/V). The control
    on which the original's label leak showed ~97% "accuracy"."""
    name = "hmu_random"

    def pattern(self, n, rng):
        V, L = self.task_vocab, self.task_len
        return rng.integers(0, V, size=(n, L)), rng.integers(0, V, size=(n, L))


class HMUTemporal(HMUPattern):
    """A random walk and its running sum: src_i = src_{i-1} + U{1..4} mod V, tgt_i = src_i + tgt_{i-1} mod V
    (tgt_0 = src_0). Each target token needs the whole source prefix (or the previous target)."""
    name = "hmu_temporal"

    def pattern(self, n, rng):
        V, L = self.task_vocab, self.task_len
        steps = np.concatenate([rng.integers(0, V, size=(n, 1)), rng.integers(1, 5, size=(n, L - 1))], axis=1)
        src = np.cumsum(steps, axis=1) % V
        return src, np.cumsum(src, axis=1) % V


class HMUHierarchical(HMUPattern):
    """A random block of task_len/4 symbols (at least 2) tiled to task_len; the target is the source + 1
    (mod V)."""
    name = "hmu_hierarchical"
    parts = 4

    def pattern(self, n, rng):
        V, L = self.task_vocab, self.task_len
        block = rng.integers(0, V, size=(n, min(L, max(2, L // self.parts))))  # one symbol would be a constant
        src = np.tile(block, (1, -(-L // block.shape[1])))[:, :L]
        return src, (src + 1) % V


class HMURepetitive(HMUHierarchical):
    """A random block of task_len/5 symbols (at least 2) tiled to task_len; the target is the source + 1
    (mod V)."""
    name = "hmu_repetitive"
    parts = 5



def without_source(b: Batch) -> Batch:
    """The same batch with every example's source replaced by the next example's (the answers, targets and
    lengths unchanged): what a model answers when it cannot have remembered the right source."""
    if b.src is not None:
        mask = None if b.src_mask is None else b.src_mask.roll(1, 0)
        return Batch(x=b.x, y=b.y, mask=b.mask, src=b.src.roll(1, 0), src_mask=mask)
    start = int((b.y[0] != IGNORE).nonzero()[0])          # x[:, start] is <sep>; the prompt comes before
    x = b.x.clone()
    x[:, :start] = b.x[:, :start].roll(1, 0)
    return Batch(x=x, y=b.y, mask=b.mask)
