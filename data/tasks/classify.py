"""Classification: the built-in `majority` task (no download) and sentence or sentence-pair classification
from a TSV/CSV file with a header (GLUE's format). Texts of different lengths are padded, with masks; the
metrics are accuracy and macro precision, recall and F1 (`data.metrics.classification_metrics`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from tokenizers import Tokenizer

from ..batch import DECODER, ENCODER_DECODER, Batch, pad_rows
from ..corpus import VAL_FRACTION
from ..metrics import classification_metrics
from .base import Task


def classification_batch(rows: list[list[int]], pad_id: int, labels: list[int] | None = None,
                         layout: str = DECODER) -> Batch:
    """Texts to classify as one batch in the layout of the model that reads them: padded ids (mask True at
    real tokens) as `x` for a decoder or as `src` for an encoder-decoder, and the labels when known."""
    ids, mask = pad_rows(rows, pad_id)
    labels = None if labels is None else torch.tensor(labels)
    if layout == ENCODER_DECODER:
        return Batch(src=ids, src_mask=mask, labels=labels)
    return Batch(x=ids, mask=mask, labels=labels)



def classify_ids(tokenizer: Tokenizer, text: str, pair: str | None = None) -> list[int]:
    """A text to classify as ids, whole: its characters' tokens, or for a sentence pair `text <sep> pair`; an
    empty text is one `<unk>`, so that it still has a position to pool."""
    ids = tokenizer.encode(text) + ([] if pair is None else [tokenizer.sep_id] + tokenizer.encode(pair))
    return ids or [tokenizer.unk_id]


class Majority(Task):
    """Classification, built in (no download): a string of task_len//2 .. task_len symbols in which one of
    the first `n_keys` symbols fills more than half the positions; the label is which one. Lengths differ,
    so batches are padded (mask True at real tokens). Chance is 1 / n_keys."""
    name = "majority"
    scoring = "labels"  # evaluation.task_scores: the class of the highest logit (see `label_metrics`)

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if not 2 <= n_keys <= task_vocab or task_len < 2:
            raise ValueError(f"majority needs 2 <= n_keys (= {n_keys}) <= task_vocab (= {task_vocab}) classes "
                             f"and task_len >= 2 (= {task_len})")
        super().__init__(task_len, task_vocab, n_keys)
        self.n_classes, self.labels = n_keys, [str(k) for k in range(n_keys)]

    def texts(self, n: int, rng: np.random.Generator) -> tuple[list[list[int]], list[int]]:
        rows, labels = [], []
        for _ in range(n):
            length = int(rng.integers(max(2, self.task_len // 2), self.task_len + 1))
            label = int(rng.integers(self.n_keys))
            row = rng.integers(self.first, self.first + self.task_vocab, size=length)
            row[rng.choice(length, size=length // 2 + 1, replace=False)] = self.first + label
            rows.append(row.tolist())
            labels.append(label)
        return rows, labels

    def sample(self, n, rng):
        return self.texts(n, rng)

    def keys(self, parts):
        """An example is its tokens and its label."""
        return [row + [label] for row, label in zip(*parts)]

    def batch(self, batch_size, rng, layout=DECODER, split="train", exclude=None):
        rows, labels = self.draw(batch_size, rng, split, exclude)
        return classification_batch(rows, self.tokenizer.pad_id, labels, layout)

    @property
    def seq_len(self) -> int:
        return self.task_len

    def metrics(self):
        return ["val_acc", "val_precision", "val_recall", "val_f1"]

    def label_metrics(self, pred: torch.Tensor, true: torch.Tensor) -> dict:
        """Accuracy and macro precision, recall and F1 of the predicted class ids `pred` against `true`."""
        return classification_metrics(pred, true, self.n_classes)

    def show_labels(self, batch: Batch, pred: torch.Tensor, n: int = 4) -> str:
        """A few examples as text, `text -> predicted label (true label)`, given the predicted class ids."""
        ids, mask = (batch.src, batch.src_mask) if batch.src is not None else (batch.x, batch.mask)
        return "\n".join(f"{self.tokenizer.decode(ids[i][mask[i]].tolist())} -> {self.labels[pred[i]]} "
                         f"(true {self.labels[batch.labels[i]]})" for i in range(min(n, len(pred))))

class DataFileError(ValueError):
    """A malformed data file; the message names the file, the line and the column."""


def read_table(path: Path, columns: list[str]) -> list[tuple[int, list[str]]]:
    """The given columns of a TSV (tab-separated, no quoting, GLUE's format) or CSV (`.csv`, quoted fields)
    file with a header line: [(line number, [value per column])], blank lines skipped. A row with more fields
    than the header (a tab inside a TSV text, an unquoted comma in a CSV one) is refused: its fields would
    otherwise be read into the wrong columns."""
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    tsv = path.suffix.lower() != ".csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
            header = [h.strip() for h in next(reader, [])]
            if not any(header):
                raise DataFileError(f"{path}, line 1: the file is empty; expected a header line naming the "
                                    f"columns {columns}")
            for c in columns:
                if c not in header:
                    raise DataFileError(f"{path}, line 1 (header), column {c!r}: no such column; the columns are "
                                        f"{header}" + (" (a .tsv file is split at tabs)" if tsv and len(header) == 1 else ""))
            index = [header.index(c) for c in columns]
            rows = []
            for row in reader:
                if not any(v.strip() for v in row):
                    continue
                if len(row) > len(header):
                    fix = ("a tab inside a text splits it: remove the tab" if tsv else
                           'a comma inside a text splits it unless the field is quoted: "a, b"')
                    raise DataFileError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                                        f"{len(header)} ({header}); the extra: {row[len(header):]}; {fix}")
                for c, i in zip(columns, index):
                    if i >= len(row):
                        raise DataFileError(f"{path}, line {reader.line_num}, column {c!r}: missing (the row has "
                                            f"{len(row)} fields, the header {len(header)})")
                rows.append((reader.line_num, [row[i] for i in index]))
    except UnicodeDecodeError as e:
        raise DataFileError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise DataFileError(f"{path}, line 2: a header but no rows")
    return rows


class Classify(Majority):
    """Sentence (or sentence-pair) classification from a TSV/CSV file with a header, GLUE's format:
    `--task classify --data train.tsv --text_column sentence [--text_pair_column s2] --label_column label`.

    Validation: the GLUE sibling of the file (`dev.tsv` or `validation.tsv` next to `train.tsv`, same
    extension) when there is one, else a seeded 10% of the rows held out; every validation row is scored.
    Characters are the tokens (a CharTokenizer over the training texts; others become <unk>); a pair is
    `text <sep> pair`. Length: task_len 0 (the default) takes it from the data, the longest example's tokens
    up to `block_size` (the model's); task_len N cuts at N tokens. How many examples were cut is said in
    `note`. Labels are the distinct training values, sorted; an empty label is refused, with its file and
    line, as is a validation label the training file does not have. Without a file (`--data builtin`, the
    default) it is the built-in `majority` task (no download), 8 symbols long unless task_len says."""
    name = "classify"

    def __init__(self, task_len: int = 0, task_vocab: int = 10, n_keys: int = 4, data: str = "builtin",
                 text_column: str = "sentence", text_pair_column: str = "", label_column: str = "label",
                 block_size: int | None = None):
        self.path = None if data in ("", "builtin") else Path(data)
        if self.path is None:
            super().__init__(task_len or 8, task_vocab, n_keys)
            return
        columns = [text_column] + ([text_pair_column] if text_pair_column else []) + [label_column]
        train = read_table(self.path, columns)
        self.label_column = label_column
        self.labels = sorted({v[-1].strip() for _, v in train} - {""})
        if len(self.labels) < 2:
            found = f"one label only ({self.labels})" if self.labels else "no label (every one is empty)"
            raise DataFileError(f"{self.path}, column {label_column!r}: {found}; classification needs at least 2")
        val_path = next((p for p in (self.path.with_name(n + self.path.suffix) for n in ("dev", "validation"))
                         if p != self.path and p.is_file()), None)
        if val_path is not None:
            val = read_table(val_path, columns)
        else:
            val_path = self.path
            order = np.random.default_rng(0).permutation(len(train))
            n_val = max(1, int(len(train) * VAL_FRACTION))
            val, train = [train[i] for i in order[:n_val]], [train[i] for i in order[n_val:]]
        self.chars = "".join(sorted({c for _, v in train for t in v[:-1] for c in t}))
        Task.__init__(self, task_len, task_vocab, n_keys)
        train_rows, self.train_labels = self.encode_rows(train, self.path)
        val_rows, self.val_labels = self.encode_rows(val, val_path)
        self.n_classes = len(self.labels)
        longest = max(map(len, train_rows + val_rows))
        self.task_len = task_len or min(longest, block_size or longest)
        self.train_rows, self.val_rows = ([r[:self.task_len] for r in rows] for rows in (train_rows, val_rows))
        self.note = self.length_note(task_len, longest, [sum(len(r) > self.task_len for r in rows)
                                                         for rows in (train_rows, val_rows)])

    @classmethod
    def from_config(cls, tcfg, block_size=None) -> "Classify":
        return cls(tcfg.task_len, tcfg.task_vocab, tcfg.n_keys, tcfg.data, tcfg.text_column,
                   tcfg.text_pair_column, tcfg.label_column, block_size)

    def alphabet(self) -> str:
        return super().alphabet() if self.path is None else self.chars

    def encode_rows(self, rows, path: Path) -> tuple[list[list[int]], list[int]]:
        """The whole ids and the class id of each (line, values) row read from `path`."""
        ids = [classify_ids(self.tokenizer, v[0], v[1] if len(v) == 3 else None) for _, v in rows]
        return ids, [self.label_id(v[-1], path, line) for line, v in rows]

    def label_id(self, value: str, path: Path, line: int) -> int:
        """The class id of the label `value` read at `path`, `line`; an empty label, or one the training file
        does not have, is a DataFileError naming both and the valid labels."""
        label = value.strip()
        if label not in self.labels:
            what = "the label is empty" if not label else f"label {value!r} is not among the training labels"
            raise DataFileError(f"{path}, line {line}, column {self.label_column!r}: {what}; every row needs one "
                                f"of {self.labels}, the labels of {self.path}")
        return self.labels.index(label)

    def length_note(self, task_len: int, longest: int, cut: list[int]) -> str:
        """What the length did to the examples: `cut` counts the training and the validation ones it cut."""
        total = len(self.train_labels) + len(self.val_labels)
        if not sum(cut):
            return f"classify: {total:,} examples, the longest {longest} tokens: none cut"
        why, fix = ("task_len", "--task_len") if task_len else ("block_size", "--block_size")
        return (f"classify: {sum(cut):,} of {total:,} examples cut to {why} = {self.task_len} tokens ({cut[0]:,} "
                f"training, {cut[1]:,} validation; the longest has {longest}): raise {fix} to keep them whole")

    def draw(self, n, rng, split="train", exclude=None):
        """From a file: training rows only, whatever the split (its held-out examples are the validation rows,
        which `val_batches` reads in order); the built-in task: held out by hash (`Task.draw`)."""
        return super().draw(n, rng, split, exclude) if self.path is None else self.texts(n, rng)

    def texts(self, n, rng):
        if self.path is None:
            return super().texts(n, rng)
        pick = rng.integers(0, len(self.train_rows), size=n)
        return [self.train_rows[i] for i in pick], [self.train_labels[i] for i in pick]

    def val_batches(self, n, batch_size, seed, layout=DECODER, split="val", exclude=None):
        """The built-in task: n seeded batches of held-out examples; a file: every validation row, in order."""
        if self.path is None:
            return super().val_batches(n, batch_size, seed, layout, split, exclude)
        return [classification_batch(self.val_rows[i:i + batch_size], self.tokenizer.pad_id,
                                     self.val_labels[i:i + batch_size], layout)
                for i in range(0, len(self.val_rows), batch_size)]

    @property
    def seq_len(self) -> int:
        return self.task_len if self.path is None else max(map(len, self.train_rows + self.val_rows))
