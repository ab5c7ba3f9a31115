"""Corpora: a token stream split into training and validation, sampled as windows.

Text is tokenized once and the ids cached as `.npy` (keyed by the text's hash and the tokenizer's hash).
Corpus text is encoded as plain text: a `<eos>` written in it is five characters, not the special token
(`Tokenizer.encode_ordinary`); special tokens enter a sequence only as ids, where the pipeline means them.
The last 10% of the stream is validation; training batches are random windows drawn from a seeded
NumPy generator whose state is part of the checkpoint, so a resumed run draws the same batches.

Records (`Records`, `--records true`): any of these texts read as records separated by blank lines, each
becoming `<bos> record <eos>`, so a model learns where a record starts and where it ends (and stops there when
generating). The records are packed back to back, without padding, and every window starts at a record's
`<bos>`, as generation from scratch does; every tenth record is validation.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch

from tokenizers import Tokenizer
from tools import atomic_write_bytes

from .batch import Batch
from .sources import CACHE, corpus_name, fit_texts, load_text, make_tokenizer, split_records

VAL_FRACTION = 0.1
VAL_EVERY = 10       # records: every tenth record is validation


class Corpus:
    """A token stream split into train (first 90%) and validation (last 10%), sampled as windows. `note` says
    how the text was fitted to a tokenizer not built from it (`fit_texts`), '' when it was not changed;
    `source` is what was read (a corpus name or a file's path), named when the text is too short."""
    cache_tag = ""  # tells the cached ids of one text read as a corpus and as records apart

    def __init__(self, ids: np.ndarray, tokenizer: Tokenizer, name: str = "corpus", note: str = "",
                 source: str = ""):
        self.tokenizer, self.name, self.note, self.source = tokenizer, name, note, source or name
        self.splits = self.split(ids)

    def split(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        n_val = max(1, int(len(ids) * VAL_FRACTION))
        return {"train": ids[:-n_val], "val": ids[-n_val:]}

    @classmethod
    def pieces(cls, text: str, where: str) -> list[str]:
        """The texts the stream is made of: the whole text, for a corpus."""
        return [text]

    @classmethod
    def encode(cls, pieces: list[str], tokenizer: Tokenizer) -> list[int]:
        return tokenizer.encode_ordinary(pieces[0])  # corpus text is text, `<eos>` included

    @classmethod
    def load(cls, data: str = "builtin", tokenizer: str | Tokenizer = "char", cache_dir=None,
             progress: bool = True) -> "Corpus":
        """Read, tokenize (once; ids are cached as .npy) and split corpus `data`. A tokenizer given as an
        instance was not built from this text: the text is fitted to it first (`fit_texts`)."""
        text = load_text(data, cache_dir, progress)
        pieces, note = cls.pieces(text, data), ""
        if isinstance(tokenizer, Tokenizer):
            tok, (pieces, note) = tokenizer, fit_texts(pieces, tokenizer, data)
        else:
            tok = make_tokenizer(tokenizer, text)
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16] + "-" + tok.hash()
        path = Path(cache_dir or CACHE) / "ids" / f"{key}{cls.cache_tag}.npy"
        if path.exists():
            ids = np.load(path)
        else:
            dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.int32
            ids = np.asarray(cls.encode(pieces, tok), dtype=dtype)
            buf = io.BytesIO()
            np.save(buf, ids)
            atomic_write_bytes(path, buf.getvalue())
        return cls(ids, tok, name=corpus_name(data), note=note, source=data)

    def batch(self, split: str, batch_size: int, block_size: int, rng: np.random.Generator) -> Batch:
        """`batch_size` random windows of `block_size` tokens; targets are the inputs shifted by one."""
        ids = self.splits[split]
        if len(ids) <= block_size:
            raise ValueError(self.too_short(block_size))
        starts = rng.integers(0, len(ids) - block_size, size=batch_size)
        window = np.stack([ids[s:s + block_size + 1] for s in starts]).astype(np.int64)
        w = torch.from_numpy(window)
        return Batch(w[:, :-1], w[:, 1:])

    def val_batches(self, n: int, batch_size: int, block_size: int, seed: int) -> list[Batch]:
        """The fixed validation set: the same `n` batches at every evaluation."""
        rng = np.random.default_rng(seed)
        return [self.batch("val", batch_size, block_size, rng) for _ in range(n)]

    def stream(self, split: str, rows: int, block_size: int, max_tokens: int | None = None) -> "Stream":
        """The split (its first `max_tokens`, when given) read as `rows` contiguous streams (`Stream`)."""
        ids = self.splits[split][:max_tokens]
        if len(ids) // rows <= block_size:
            raise ValueError(f"{self.source}: its {split} split holds {len(ids):,} tokens of the tokenizer "
                             f"{self.tokenizer.name!r}, too few for {rows} streams of at least one window of "
                             f"block_size + 1 = {block_size + 1} tokens; use fewer rows (--batch_size), a smaller "
                             f"--block_size or a longer text")
        return Stream(ids, rows, block_size)

    def too_short(self, block_size: int) -> str:
        """Why the text cannot give windows of `block_size`: its size and the fewest tokens that would (both
        splits hold a window of block_size + 1 tokens, the inputs and their next-token targets)."""
        need = int((block_size + 1) / VAL_FRACTION) - 1  # at or just below the fewest, whatever the rounding
        while min(map(len, self.split(np.zeros(need)).values())) <= block_size:
            need += 1
        have = sum(map(len, self.splits.values()))
        return (f"{self.source} is too short for block_size = {block_size}: it holds {have:,} tokens of the "
                f"tokenizer {self.tokenizer.name!r}, and needs at least {need:,} (training and validation, the last "
                f"{VAL_FRACTION:.0%}, each need a window of block_size + 1 tokens). Use a longer text, or a "
                f"smaller --block_size")


class Records(Corpus):
    """Records separated by blank lines, each `<bos> record <eos>`, packed back to back into one stream.

    Packed, not padded: every position of a batch is a real next-token prediction, and the loss needs no mask.
    Every window starts at a record's `<bos>` (as generation from scratch does) and runs on through as many
    records as it holds; a split shorter than a window is read as a loop (np.take's wrap), so a handful of
    records still makes batches. A record longer than the window is cut, and its `<eos>` is never a target.
    Every tenth record is validation (the last one when there are fewer than ten), so a file sorted by topic
    is split evenly."""
    cache_tag = "-records"

    @classmethod
    def pieces(cls, text, where):
        """The records (fitted to a finetune's tokenizer one by one: the blank lines between them stay)."""
        records = split_records(text, where)
        if len(records) < 2:
            raise ValueError(f"{where} holds 1 record; training on records needs at least 2 (one is validation)")
        return records

    @classmethod
    def encode(cls, pieces, tokenizer):
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        return [i for r in pieces for i in (bos, *tokenizer.encode_ordinary(r), eos)]

    def split(self, ids):
        """The records, every tenth to validation; `self.starts` keeps where each split's records begin."""
        records = np.split(ids, np.flatnonzero(ids == self.tokenizer.bos_id)[1:])
        val = set(range(VAL_EVERY - 1, len(records), VAL_EVERY)) or {len(records) - 1}
        splits = {"train": np.concatenate([r for i, r in enumerate(records) if i not in val]),
                  "val": np.concatenate([r for i, r in enumerate(records) if i in val])}
        self.starts = {k: np.flatnonzero(v == self.tokenizer.bos_id) for k, v in splits.items()}
        return splits

    def batch(self, split, batch_size, block_size, rng):
        """`batch_size` windows of `block_size` tokens, each from a random record's `<bos>` on."""
        ids, starts = self.splits[split], self.starts[split]
        first = starts[rng.integers(0, len(starts), size=batch_size)]
        w = torch.from_numpy(np.take(ids, first[:, None] + np.arange(block_size + 1), mode="wrap").astype(np.int64))
        return Batch(w[:, :-1], w[:, 1:])


class Stream:
    """A token stream cut into `rows` equal parts, each read in order, window after window: Transformer-XL's
    training and evaluation order (Dai et al. 2019, their `LMOrderedIterator`), in which the window a row reads
    at one step continues where its window of the step before ended, so a memory carried from step to step
    holds the text just before.

        part r = ids[r L : (r + 1) L]           L = len(ids) // rows
        window i of row r = part r [w T : w T + T + 1]      w = i mod W, W = (L - 1) // T windows a part

    Window i depends on i alone (no random state), so a resumed run reads on exactly; after the last whole
    window of its part, a row starts again at the beginning of its part (`starts_over(i)`: the memory carried
    from before no longer belongs to the text), and the tail shorter than a window is never read."""

    def __init__(self, ids: np.ndarray, rows: int, block_size: int):
        self.ids, self.rows, self.block_size = ids, rows, block_size
        self.part = len(ids) // rows
        self.windows = (self.part - 1) // block_size

    def batch(self, i: int) -> Batch:
        """Window `i` of every row: x (rows, T) and the next tokens y (rows, T)."""
        T, w = self.block_size, i % self.windows
        starts = np.arange(self.rows) * self.part + w * T
        window = np.stack([self.ids[s:s + T + 1] for s in starts]).astype(np.int64)
        w = torch.from_numpy(window)
        return Batch(w[:, :-1], w[:, 1:])

    def starts_over(self, i: int) -> bool:
        """Does window `i` begin the rows' parts (the first window, or a row's next pass over its part)?"""
        return i % self.windows == 0

    def __len__(self) -> int:
        """Windows in one pass over the parts."""
        return self.windows
