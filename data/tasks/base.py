"""The task interface: a seeded generator of (prompt, answer) examples, batched in the layout a model reads.

Tasks train with the loss on the answer only. A decoder-only model reads `prompt <sep> answer`; an
encoder-decoder reads the prompt as its source. Each family of tasks has its module: `rmt` (the RMT paper's
copy, reverse, associative retrieval, quadratic equations), `icll` (in-context language learning), `classify`
(the built-in majority task and classification from a TSV/CSV file), `hmu` (the HMU framework's patterns);
`data.tasks` names them all.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from tokenizers import CharTokenizer

from ..batch import DECODER, ENCODER_DECODER, IGNORE, Batch

SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# --- held-out examples: one in ten, by a hash of the example, never trained on ----------------------
HELD_OUT_EVERY = 10
SPLITS = ("train", "val", None)  # None: any example (the sampler of runs saved before held-out examples)


def digests(keys) -> np.ndarray:
    """(n,) uint64: a hash of each example's key (a sequence of ints: its tokens); blake2b, not Python's hash(),
    which changes from one process to the next."""
    digest = lambda k: hashlib.blake2b(np.asarray(k, dtype=np.int64).tobytes(), digest_size=8).digest()
    return np.array([int.from_bytes(digest(k), "little") for k in keys], dtype=np.uint64)


def held_out(keys) -> np.ndarray:
    """(n,) bool: which examples are held out. An example is held out when the hash of its key is a multiple
    of HELD_OUT_EVERY, so the partition depends on the example alone, never on a seed or on which run draws
    it: a training sampler that rejects held-out examples can draw none of the examples validation and
    evaluation read, however many it draws, whatever its seed."""
    return digests(keys) % HELD_OUT_EVERY == 0


def take(part, keep: np.ndarray):
    """The rows of `part` (an array, or a list) where `keep` is True."""
    return part[keep] if isinstance(part, np.ndarray) else [x for x, k in zip(part, keep) if k]


def join(a, b):
    return np.concatenate([a, b]) if isinstance(a, np.ndarray) else a + b


class Task:
    """A seeded generator of (prompt, answer) examples over a small symbol alphabet.

    Examples of one task all have the same lengths, so they batch without padding. The tokenizer is a
    CharTokenizer over the task's symbols (specials first, so `<pad>` = 0 and `<sep>` = 1). A batch comes in
    the layout of the model that reads it: decoder-only `prompt <sep> answer` with the loss on the answer, or
    encoder-decoder (source = prompt; decoder input = `<bos>` + answer[:-1]; targets = answer).

    A task makes examples and the reference answers, and turns a model's answers into its metrics
    (`answer_metrics`); running the model to get those answers is evaluation.py's (`task_scores`, by the
    task's `scoring`).

    Held out: one example in ten, chosen by a hash of the example (`held_out`), is for validation and
    evaluation only. `draw(n, rng, split)` samples with rejection: split "train" never returns a held-out
    example, "val" returns nothing else, so no training run can draw an example it is evaluated on (a small
    example space, like hmu_hierarchical's, is split the same way: a tenth of its distinct examples).
    split None is the sampler of runs saved before this existed (TrainConfig.heldout false)."""
    name = "task"
    scoring = "answers"  # what evaluation.task_scores measures: greedy answers (see `answer_metrics`)
    layouts = (DECODER, ENCODER_DECODER)  # the batch layouts it makes (every task here makes both)
    n_classes = 0  # a classification task says how many labels it has
    labels: tuple = ()  # a classification task's label names, index = class id (saved with a run: labels.json)
    note = ""  # what reading the data changed, said when a run starts and kept in its README

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if task_vocab > len(SYMBOLS):
            raise ValueError(f"task_vocab = {task_vocab} exceeds the {len(SYMBOLS)} available symbols")
        self.task_len, self.task_vocab, self.n_keys = task_len, task_vocab, n_keys
        self.tokenizer = CharTokenizer(self.alphabet(), name=f"task-{self.name}")
        self.first = self.tokenizer.vocab_size - len(self.alphabet())  # id of the first symbol

    @classmethod
    def from_config(cls, tcfg, block_size: int | None = None) -> "Task":
        """The task with the TrainConfig fields it reads; `block_size`, the longest sequence the model takes,
        matters to a task whose length comes from its data (classify)."""
        return cls(task_len=tcfg.task_len, task_vocab=tcfg.task_vocab, n_keys=tcfg.n_keys)

    def alphabet(self) -> str:
        return SYMBOLS[:self.task_vocab]

    def examples(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(prompts (n, P), answers (n, A)) as token ids."""
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator) -> tuple:
        """n examples as a tuple of parts, one row per example in each (`examples`, unless a task keeps more
        of an example, like in-context language learning's legal letters)."""
        return self.examples(n, rng)

    def keys(self, parts: tuple) -> list:
        """What identifies each example of `parts`, as a sequence of ints: its prompt and answer tokens."""
        prompts, answers = parts[:2]
        return [np.concatenate([p, a]) for p, a in zip(prompts, answers)]

    def draw(self, n: int, rng: np.random.Generator, split: str | None = "train", exclude=None) -> tuple:
        """n examples (`sample`'s parts) of `split`: "train" never held out, "val" only held out (`held_out`),
        None any example; none whose digest (`digests`) is in `exclude` (a run's training draws, for runs
        saved before held-out examples). Rejection sampling: "train" costs about 1/0.9 of the draws, "val"
        about 10 times."""
        if split not in SPLITS:
            raise ValueError(f"split = {split!r} is not valid; choose one of {SPLITS}")
        if split is None and exclude is None:
            return self.sample(n, rng)
        parts, tries = None, 0
        while parts is None or len(parts[0]) < n:
            more, tries = self.sample(n, rng), tries + 1
            d = digests(self.keys(more))
            keep = np.ones(len(d), dtype=bool) if split is None else (d % HELD_OUT_EVERY == 0) == (split == "val")
            if exclude is not None:
                keep &= ~np.isin(d, exclude)
            parts = tuple(take(q, keep) if parts is None else join(p, take(q, keep))
                          for p, q in zip(parts or more, more))
            if tries == 1000 and len(parts[0]) < n:
                raise ValueError(f"task {self.name!r}: {len(parts[0])} examples of split {split!r} in 1,000 draws "
                                 f"of {n}: nearly every one is excluded (drawn in training)")
        return tuple(p[:n] for p in parts)

    def batch(self, batch_size: int, rng: np.random.Generator, layout: str = DECODER,
              split: str | None = "train", exclude=None) -> Batch:
        """Decoder: x = prompt <sep> answer[:-1]; y = the next token, IGNORE except at answer positions.
        Encoder-decoder: src = prompt; x = <bos> answer[:-1]; y = answer. `split`, `exclude`: see `draw`."""
        prompts, answers = self.draw(batch_size, rng, split, exclude)
        prompts, answers = (torch.from_numpy(a.astype(np.int64)) for a in (prompts, answers))
        if layout == ENCODER_DECODER:
            bos = torch.full((batch_size, 1), self.tokenizer.bos_id)
            return Batch(x=torch.cat([bos, answers[:, :-1]], dim=1), y=answers, src=prompts)
        sep = torch.full((batch_size, 1), self.tokenizer.sep_id)
        seq = torch.cat([prompts, sep, answers], dim=1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, :prompts.shape[1]] = IGNORE  # targets up to and including <sep> carry no loss
        return Batch(x, y)

    def val_batches(self, n: int, batch_size: int, seed: int, layout: str = DECODER,
                    split: str | None = "val", exclude=None) -> list[Batch]:
        """n seeded batches of held-out examples (split None: of any, as runs saved before held-out
        examples validated; `exclude`: see `draw`)."""
        rng = np.random.default_rng(seed)
        return [self.batch(batch_size, rng, layout, split, exclude) for _ in range(n)]

    size_field = ""  # the constructor argument (and attribute) that sets how long an example is, for tasks
                     # that can shrink

    def smaller(self) -> list["Task"]:
        """The same task at every smaller size (size_field from 1 up), shortest first; [] when it cannot
        shrink. The alphabet, hence the tokenizer, stays the same."""
        if not self.size_field:
            return []
        fields = dict(task_len=self.task_len, task_vocab=self.task_vocab, n_keys=self.n_keys)
        return [type(self)(**{**fields, self.size_field: n}) for n in range(1, getattr(self, self.size_field))]

    @property
    def seq_len(self) -> int:
        """Length of a decoder-only training sequence (the decoder input of an encoder-decoder is shorter)."""
        p, a = self.examples(1, np.random.default_rng(0))
        return p.shape[1] + 1 + a.shape[1] - 1

    def metrics(self) -> list[str]:
        """The names `score` returns, in log.csv's column order."""
        return ["val_acc", "val_exact"]

    def metric_range(self, name: str) -> tuple[float, float]:
        """The values metric `name` can take: (0, 1) for a fraction, the default."""
        return (0.0, 1.0)

    def answer_metrics(self, pred: torch.Tensor, true: torch.Tensor) -> dict:
        """Greedy answer accuracy (no teacher forcing) of the answers `pred` against `true`, (N, A) each:
        `val_acc` per answer token, `val_exact` per whole answer."""
        hit = pred == true
        return {"val_acc": int(hit.sum()) / hit.numel(), "val_exact": int(hit.all(dim=1).sum()) / hit.shape[0]}

    def show_answers(self, batch: Batch, pred: torch.Tensor, true: torch.Tensor, n: int = 4) -> str:
        """A few examples of `batch` as text, `prompt -> greedy answer (true answer)`, given the greedy answers."""
        if batch.src is not None:
            prompts = batch.src
        else:
            prompts = batch.x[:, :int((batch.y[0] == IGNORE).sum())]
        decode = self.tokenizer.decode
        return "\n".join(f"{decode(prompts[i].tolist())} -> {decode(pred[i].tolist())} (true {decode(true[i].tolist())})"
                         for i in range(min(n, len(pred))))
