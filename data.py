"""Data: corpora (token streams sampled as random windows) and tasks (seeded prompt/answer examples).

Corpora
- `builtin`: the text of `pydoc_data.topics`, which ships with every CPython (~465 KB of English);
- `builtin-records`: one record per documented built-in function, type, method and function of a few standard
  modules, `name: first sentence of its docstring` (~460 records, ~30 KB), built at run time, offline;
- `shakespeare`, `tinystories`: downloaded once into the cache (progress bar, SHA-256 checked);
- any UTF-8 text file, by path.
Text is tokenized once and the ids cached as `.npy` (keyed by the text's hash and the tokenizer's hash).
Corpus text is encoded as plain text: a `<eos>` written in it is five characters, not the special token
(`Tokenizer.encode_ordinary`); special tokens enter a sequence only as ids, where the pipeline means them.
The last 10% of the stream is validation; training batches are random windows drawn from a seeded
NumPy generator whose state is part of the checkpoint, so a resumed run draws the same batches.

Records (`Records`, `--records true`): any of these texts read as records separated by blank lines, each
becoming `<bos> record <eos>`, so a model learns where a record starts and where it ends (and stops there when
generating). The records are packed back to back, without padding, and every window starts at a record's
`<bos>`, as generation from scratch does; every tenth record is validation.

A text read with a tokenizer that was not built from it (a finetune: `--init_from`) is first fitted to it
(`fit_texts`): a character the tokenizer has no token for is folded to its NFKD decomposition's characters
that it has (é -> e, ﬁ -> fi, ² -> 2), or else dropped; more than MAX_DROPPED of the text dropped is an error.

Tasks (loss on the answer only), in the layout of the model that reads them — decoder-only `prompt <sep>
answer`, or encoder-decoder with the prompt as the source: the RMT paper's `copy`, `reverse`, `retrieval`
(associative retrieval) and `sqeq` (quadratic equations with the worked solution); `icll`, in-context
language learning (each example's strings come from its own random automaton; RegBench, Akyurek et al. 2024);
and `majority`, a built-in classification task with sentences of different lengths (padded, with
masks). `task.score(model, batches)` gives the task's metrics: greedy accuracy (no teacher forcing) per answer token and per whole
answer, accuracy and macro precision/recall/F1 for classification, or for `icll` the rate of legal greedy
next tokens.

The cache lives in `$MNEMO_CACHE`, default `data_cache/` in the repo (ignored by git).
"""
from __future__ import annotations

import csv
import hashlib
import inspect
import io
import os
import re
import sys
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from modules.base import IGNORE, Batch
from tokenizers import CharTokenizer, Tokenizer
from tokenizers import load as load_tokenizer
from tools import ROOT, atomic_write_bytes

CACHE = Path(os.environ.get("MNEMO_CACHE", ROOT / "data_cache"))
VAL_FRACTION = 0.1
VAL_EVERY = 10       # records: every tenth record is validation
MAX_DROPPED = 0.01   # the largest fraction of a text's characters that fitting it to a tokenizer may drop
BUILTINS = ("builtin", "builtin-records")  # the corpora built from what Python ships


# --- sources ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Remote:
    """A downloadable corpus: where it lives, its SHA-256, and the file name in the cache."""
    url: str
    sha256: str
    filename: str


REMOTES = {
    "shakespeare": Remote(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", "tinyshakespeare.txt"),
    # The validation split (19 MB) of TinyStories, pinned to a dataset revision so the hash stays valid.
    "tinystories": Remote(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/"
        "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64/TinyStories-valid.txt",
        "94e431816c4cce81ff71e4408ff8d3bda9a42e8d2663986697c3954288cb38b4", "TinyStories-valid.txt"),
}


class DownloadError(RuntimeError):
    """A corpus could not be fetched or failed its checksum; the message says what to do."""


def builtin_text() -> str:
    """Python's own help topics: English prose with code, available offline on every install."""
    import pydoc_data.topics as t
    return "\n\n".join(t.topics[k] for k in sorted(t.topics))


def doc_summary(obj) -> str:
    """The first sentence of `obj`'s docstring, on one line, skipping signature lines (`B.islower() -> bool`);
    '' when it has none."""
    for para in (inspect.getdoc(obj) or "").split("\n\n"):
        line = " ".join(para.split())
        if line and "->" not in line:
            return re.split(r"(?<=\.)\s", line, maxsplit=1)[0]
    return ""


def builtin_records() -> list[str]:
    """`name: summary` for every documented public function and class of `builtins`, method of the built-in
    types, and function of a few standard modules, in a fixed order: short records (a median of ~60
    characters) that ship with every Python, for finetuning a model to write one and stop."""
    import builtins
    import importlib
    spaces = [("", builtins), *((f"{t.__name__}.", t) for t in (str, bytes, list, tuple, dict, set, int, float)),
              *((f"{m}.", importlib.import_module(m))
                for m in ("math", "operator", "itertools", "functools", "os.path", "random", "string"))]
    out = []
    for prefix, space in spaces:
        for name in sorted(getattr(space, "__all__", None) or vars(space)):
            obj = getattr(space, name)
            module = getattr(obj, "__module__", None) or "builtins"  # a built-in type's methods name none
            shipped = module.split(".")[0] in sys.stdlib_module_names  # not what IPython adds to builtins
            summary = doc_summary(obj)
            if not name.startswith("_") and (inspect.isroutine(obj) or inspect.isclass(obj)) and shipped and summary:
                out.append(f"{prefix}{name}: {summary}")
    return out


def sha256_of(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(remote: Remote, cache_dir=None, progress: bool = True, chunk: int = 1 << 16) -> Path:
    """The cached file of `remote`, downloading it first if needed (atomically, checksum verified). A file
    already in the cache (downloaded earlier, or put there by hand) is verified too."""
    path = Path(cache_dir or CACHE) / remote.filename
    if path.exists():
        got = sha256_of(path)
        if got != remote.sha256:
            raise DownloadError(f"the cached file {path} is not the expected {remote.filename}: its sha256 is "
                                f"{got}, expected {remote.sha256} (a partial, edited or different file). Delete "
                                f"it to download it again, or put the right file there")
        return path
    digest, buf = hashlib.sha256(), io.BytesIO()
    try:
        with urllib.request.urlopen(remote.url, timeout=30) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename, disable=not progress) as bar:
                while block := r.read(chunk):
                    digest.update(block)
                    buf.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"could not download {remote.url} ({e}); are you offline? Put the file at "
                            f"{path} by hand, or use --data builtin (no download needed)") from None
    if digest.hexdigest() != remote.sha256:
        raise DownloadError(f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, got "
                            f"{digest.hexdigest()}; the file was not saved")
    return atomic_write_bytes(path, buf.getvalue())


def load_text(data: str, cache_dir=None, progress: bool = True) -> str:
    """The text of corpus `data`: 'builtin', 'builtin-records' (its records separated by blank lines), a name
    in REMOTES, or a path to a UTF-8 file."""
    if data == "builtin":
        return builtin_text()
    if data == "builtin-records":
        return "\n\n".join(builtin_records())
    if data in REMOTES:
        path = download(REMOTES[data], cache_dir, progress)
    else:
        path = Path(data)
        if not path.is_file():
            raise ValueError(f"data = {data!r} is neither a corpus name ({[*BUILTINS, *REMOTES]}) nor a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None


def corpus_name(data: str) -> str:
    """The short name of corpus `data` (run folder names, logs): the corpus name, or the file's stem."""
    return data if data in (*BUILTINS, *REMOTES) else Path(data).stem


def make_tokenizer(spec: str, text: str) -> Tokenizer:
    """'char' -> a character tokenizer built from `text`; 'bpe-N' -> the shipped BPE of size N."""
    if spec == "char":
        return CharTokenizer.train(text)
    return load_tokenizer(spec)


def fit_texts(texts: list[str], tokenizer: Tokenizer, where: str) -> tuple[list[str], str]:
    """`texts` (a corpus, or the records of a file) made of characters `tokenizer` has tokens for, and a note of
    what changed ('' when nothing did).

    A tokenizer that was not built from the text (a character tokenizer from pretraining, met by finetuning
    text) would turn every unseen character into `<unk>`, which the model never saw. Instead each unseen
    character becomes what the tokenizer knows of its NFKD decomposition: accents and compatibility forms come
    apart (é -> e + U+0301, ﬁ -> fi, ² -> 2) and the parts it has are kept (folded); a character none of whose
    parts it has is dropped. Dropping more than MAX_DROPPED of the characters is a ValueError naming `where`
    and the most common lost characters: the text then needs another tokenizer, not a silent loss."""
    unknown = set().union(*(tokenizer.unknown_chars(t) for t in texts))
    if not unknown:
        return texts, ""
    counts = Counter(c for t in texts for c in t if c in unknown)
    total = sum(map(len, texts))
    table = {c: "".join(p for p in unicodedata.normalize("NFKD", c) if not tokenizer.unknown_chars(p))
             for c in unknown}
    folded = Counter({c: n for c, n in counts.items() if table[c]})
    dropped = Counter({c: n for c, n in counts.items() if not table[c]})

    def listing(counter, arrow):
        return ", ".join(f"{c!r}{' -> ' + repr(table[c]) if arrow else ''} x{n}" for c, n in counter.most_common(5))

    lost = sum(dropped.values())
    if lost > MAX_DROPPED * total:
        raise ValueError(f"{where}: {lost:,} of its {total:,} characters ({lost / total:.1%}) have no "
                         f"token in the tokenizer {tokenizer.name!r} and no NFKD form it has tokens for (most "
                         f"common: {listing(dropped, False)}); at most {MAX_DROPPED:.0%} may be dropped. Clean the "
                         f"text, or start from a run whose tokenizer covers it (a byte-level bpe-N covers every "
                         f"character)")
    parts = [f"folded {sum(folded.values()):,} ({listing(folded, True)})"] if folded else []
    parts += [f"dropped {lost:,} ({listing(dropped, False)})"] if dropped else []
    note = (f"{where}: {' and '.join(parts)} of {total:,} characters that the tokenizer {tokenizer.name!r} "
            f"has no token for")
    table = str.maketrans(table)
    return [t.translate(table) for t in texts], note


def split_records(text: str, where: str) -> list[str]:
    """The records of `text`: blocks of lines separated by one or more blank (or whitespace-only) lines, each
    stripped of the whitespace around it; the line breaks inside a record are kept. A text without one is a
    ValueError naming `where`."""
    records = [r.strip() for r in re.split(r"\n[^\S\n]*\n\s*", text.replace("\r\n", "\n"))]
    records = [r for r in records if r]
    if not records:
        raise ValueError(f"{where} holds no records (it is empty or only whitespace); write records as blocks "
                         f"of text separated by blank lines")
    return records


# --- corpora ----------------------------------------------------------------------------------------
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


# --- tasks ------------------------------------------------------------------------------------------
SYMBOLS = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


DECODER, ENCODER_DECODER = "decoder", "encoder_decoder"  # the two layouts of a (prompt, answer) example


def layout_of(model_cls) -> str:
    """The batch layout a model class reads, from its declared capabilities."""
    from modules import ENCODER_DECODER as ENC_DEC
    return ENCODER_DECODER if ENC_DEC in model_cls.capabilities else DECODER


def pad_rows(rows: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists of different lengths: (ids (B, T), mask (B, T) True at real tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


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


class Task:
    """A seeded generator of (prompt, answer) examples over a small symbol alphabet.

    Examples of one task all have the same lengths, so they batch without padding. The tokenizer is a
    CharTokenizer over the task's symbols (specials first, so `<pad>` = 0 and `<sep>` = 1). A batch comes in
    the layout of the model that reads it: decoder-only `prompt <sep> answer` with the loss on the answer, or
    encoder-decoder (source = prompt; decoder input = `<bos>` + answer[:-1]; targets = answer)."""
    name = "task"
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

    def batch(self, batch_size: int, rng: np.random.Generator, layout: str = DECODER) -> Batch:
        """Decoder: x = prompt <sep> answer[:-1]; y = the next token, IGNORE except at answer positions.
        Encoder-decoder: src = prompt; x = <bos> answer[:-1]; y = answer."""
        prompts, answers = self.examples(batch_size, rng)
        prompts, answers = (torch.from_numpy(a.astype(np.int64)) for a in (prompts, answers))
        if layout == ENCODER_DECODER:
            bos = torch.full((batch_size, 1), self.tokenizer.bos_id)
            return Batch(x=torch.cat([bos, answers[:, :-1]], dim=1), y=answers, src=prompts)
        sep = torch.full((batch_size, 1), self.tokenizer.sep_id)
        seq = torch.cat([prompts, sep, answers], dim=1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        y[:, :prompts.shape[1]] = IGNORE  # targets up to and including <sep> carry no loss
        return Batch(x, y)

    def val_batches(self, n: int, batch_size: int, seed: int, layout: str = DECODER) -> list[Batch]:
        rng = np.random.default_rng(seed)
        return [self.batch(batch_size, rng, layout) for _ in range(n)]

    size_field = ""  # the constructor argument that sets how long an example is, for tasks that can shrink

    def smaller(self) -> list["Task"]:
        """The same task at every smaller size (size_field from 1 up), shortest first; [] when it cannot
        shrink. The alphabet, hence the tokenizer, stays the same."""
        if not self.size_field:
            return []
        fields = dict(task_len=self.task_len, task_vocab=self.task_vocab, n_keys=self.n_keys)
        return [type(self)(**{**fields, self.size_field: n}) for n in range(1, fields[self.size_field])]

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

    def show(self, model, batch: Batch, n: int = 4) -> str:
        """A few examples of `batch` as text: `prompt -> greedy answer (true answer)`."""
        pred, true = greedy_answers(model.eval(), batch)
        if batch.src is not None:
            prompts = batch.src
        else:
            prompts = batch.x[:, :int((batch.y[0] == IGNORE).sum())]
        decode = self.tokenizer.decode
        return "\n".join(f"{decode(prompts[i].tolist())} -> {decode(pred[i].tolist())} (true {decode(true[i].tolist())})"
                         for i in range(min(n, len(pred))))

    def score(self, model, batches: list[Batch]) -> dict:
        """Greedy answer accuracy (no teacher forcing): `val_acc` per answer token, `val_exact` per whole
        answer. Each batch is decoded in its own layout."""
        was_training = model.training
        model.eval()
        right = tokens = exact = examples = 0
        for b in batches:
            pred, true = greedy_answers(model, b)
            hit = pred == true
            right, tokens = right + int(hit.sum()), tokens + hit.numel()
            exact, examples = exact + int(hit.all(dim=1).sum()), examples + hit.shape[0]
        model.train(was_training)
        return {"val_acc": right / tokens, "val_exact": exact / examples}


class Copy(Task):
    """`X <sep> X X`: the answer is the prompt twice (RMT paper's copy task, 2n answer tokens)."""
    name = "copy"
    size_field = "task_len"

    def examples(self, n, rng):
        x = rng.integers(self.first, self.first + self.task_vocab, size=(n, self.task_len))
        return x, np.concatenate([x, x], axis=1)


class Reverse(Task):
    """`X <sep> rev(X)`: the prompt backwards (RMT paper's reverse task)."""
    name = "reverse"
    size_field = "task_len"

    def examples(self, n, rng):
        x = rng.integers(self.first, self.first + self.task_vocab, size=(n, self.task_len))
        return x, x[:, ::-1].copy()


class TextTask(Task):
    """A task whose examples are written as strings over its alphabet, then encoded."""

    def texts(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """(prompts, answers) as text; all prompts of one length, all answers of one length."""
        raise NotImplementedError

    def examples(self, n, rng):
        prompts, answers = self.texts(n, rng)
        encode = self.tokenizer.encode
        return np.array([encode(p) for p in prompts]), np.array([encode(a) for a in answers])


class Retrieval(TextTask):
    """Associative retrieval `k1 v1 ... kK vK ? q <sep> v(q)` (RMT paper, after Ba et al. 2016): n_keys
    distinct keys drawn from the first task_vocab letters, each with a digit as its value; the answer is
    the value of the queried key (chance 0.1)."""
    name = "retrieval"
    size_field = "n_keys"
    LETTERS, DIGITS = SYMBOLS[:26], "0123456789"

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if not n_keys <= task_vocab <= len(self.LETTERS):
            raise ValueError(f"retrieval draws n_keys = {n_keys} distinct keys from task_vocab = {task_vocab} "
                             f"letters: need n_keys <= task_vocab <= {len(self.LETTERS)}")
        super().__init__(task_len, task_vocab, n_keys)

    def alphabet(self) -> str:
        return self.LETTERS[:self.task_vocab] + self.DIGITS + "?"

    def texts(self, n, rng):
        prompts, answers = [], []
        for _ in range(n):
            keys = rng.choice(list(self.LETTERS[:self.task_vocab]), size=self.n_keys, replace=False)
            values = rng.choice(list(self.DIGITS), size=self.n_keys)
            q = int(rng.integers(self.n_keys))
            prompts.append("".join(k + v for k, v in zip(keys, values)) + "?" + keys[q])
            answers.append(values[q])
        return prompts, answers


class QuadraticEquations(TextTask):
    """Quadratic equations with the worked solution (the RMT paper's `sqeq`): the prompt is an equation
    with terms on both sides, `ax^2+px+q=sx+t`; the answer is the canonical form, the discriminant and both
    integer roots (ascending), each step in a fixed-width field padded with spaces:

        6x^2+260x-561=-4x-9     <sep>  6x^2+264x-552=0    ;D=82944  ;x=-46,2

    Roots are integers in (-100, 100), a in +-1..9, s and t in -9..9, so every example has the same length
    (the paper's 30-token slots, here sized for characters). Only the whole answer counts (`val_exact`).
    task_len, task_vocab and n_keys do not apply."""
    name = "sqeq"
    WIDTHS = {"equation": 23, "canonical": 19, "discriminant": 9, "roots": 9}  # longest possible texts

    def alphabet(self) -> str:
        return "0123456789+-x^=D;, "

    @staticmethod
    def field(text: str, width: int) -> str:
        if len(text) > width:
            raise ValueError(f"{text!r} is longer than its field of {width} characters")
        return text.ljust(width)

    def solve(self, a: int, r1: int, r2: int, s: int, t: int) -> tuple[str, str]:
        """The (prompt, answer) of a (x - r1)(x - r2) = 0 written as `ax^2+(b+s)x+(c+t)=sx+t`, r1 <= r2."""
        b, c = -a * (r1 + r2), a * r1 * r2
        w = self.WIDTHS
        prompt = self.field(f"{a}x^2{b + s:+d}x{c + t:+d}={s}x{t:+d}", w["equation"])
        answer = ";".join([self.field(f"{a}x^2{b:+d}x{c:+d}=0", w["canonical"]),
                           self.field(f"D={b * b - 4 * a * c}", w["discriminant"]),
                           self.field(f"x={r1},{r2}", w["roots"])])
        return prompt, answer

    def texts(self, n, rng):
        pairs = []
        for _ in range(n):
            a = int(rng.choice([-1, 1]) * rng.integers(1, 10))
            r1, r2 = sorted(int(r) for r in rng.integers(-99, 100, size=2))
            s, t = (int(v) for v in rng.integers(-9, 10, size=2))
            pairs.append(self.solve(a, r1, r2, s, t))
        return [p for p, _ in pairs], [a for _, a in pairs]


class Majority(Task):
    """Classification, built in (no download): a string of task_len//2 .. task_len symbols in which one of
    the first `n_keys` symbols fills more than half the positions; the label is which one. Lengths differ,
    so batches are padded (mask True at real tokens). Chance is 1 / n_keys."""
    name = "majority"

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

    def batch(self, batch_size, rng, layout=DECODER):
        rows, labels = self.texts(batch_size, rng)
        return classification_batch(rows, self.tokenizer.pad_id, labels, layout)

    @property
    def seq_len(self) -> int:
        return self.task_len

    def metrics(self):
        return ["val_acc", "val_precision", "val_recall", "val_f1"]

    def show(self, model, batch, n: int = 4) -> str:
        """A few examples as text: `text -> predicted label (true label)`."""
        ids, mask = (batch.src, batch.src_mask) if batch.src is not None else (batch.x, batch.mask)
        with torch.no_grad():
            pred = model.eval()(batch).logits.argmax(-1)
        return "\n".join(f"{self.tokenizer.decode(ids[i][mask[i]].tolist())} -> {self.labels[pred[i]]} "
                         f"(true {self.labels[batch.labels[i]]})" for i in range(min(n, len(pred))))

    def score(self, model, batches):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(b).logits.argmax(-1) for b in batches])
        model.train(was_training)
        return classification_metrics(pred, torch.cat([b.labels for b in batches]), self.n_classes)


@dataclass
class LegalBatch(Batch):
    """A batch that also carries, for each target, which tokens would have been legal there (icll)."""
    legal: torch.Tensor | None = None  # (B, T, V) bool aligned with y; all False where a target is not scored


class InContextLanguages(Task):
    """In-context language learning in the manner of RegBench (Akyurek et al. 2024, arXiv 2401.12973): every
    example has its own random finite automaton, and the model must infer it from the strings it has read.

    An automaton has 4-8 states (state 0 starts every string) and uses a random subset of 4..task_vocab of the
    letters; each state has 1-3 outgoing letters, each to a random state. Strings are random walks from state
    0 of 1..task_len letters. An example is one walk of exactly task_len letters (the prompt), `<sep>` (the
    end of that string), then STREAM letters of further walks separated by `|` (the answer; the last string is
    cut). The loss is on the answer. The score, `val_legal`, is teacher-forced: at every answer position whose
    true next token is a letter, is the model's greedy letter (its most likely letter, `|` aside: given that
    the string goes on, which letter?) one that this example's automaton allows from the state reached so
    far? (Counting a predicted `|` as legal would let "always end the string" score well; counting it as
    illegal would punish a model for knowing that strings are short.) `val_legal_first` / `val_legal_last`: the same over the first / last third of
    the answer (in-context learning shows as last > first); `val_chance`: what a uniform guess over the
    task_vocab letters scores on the same positions. An oracle that knows the automaton scores 1.0. n_keys
    does not apply."""
    name = "icll"
    LETTERS, SEP = SYMBOLS[:26], "|"
    STATES, MIN_LETTERS, MAX_DEGREE, STREAM = (4, 8), 4, 3, 120

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if not self.MIN_LETTERS <= task_vocab <= len(self.LETTERS):
            raise ValueError(f"icll draws each automaton's letters from task_vocab = {task_vocab} letters: need "
                             f"{self.MIN_LETTERS} <= task_vocab <= {len(self.LETTERS)}")
        super().__init__(task_len, task_vocab, n_keys)
        self.sep_symbol = self.tokenizer.encode(self.SEP)[0]

    def alphabet(self) -> str:
        return self.LETTERS[:self.task_vocab] + self.SEP

    def automaton(self, rng: np.random.Generator) -> np.ndarray:
        """(states, task_vocab) next state for each (state, letter), -1 where the letter is not allowed."""
        n = int(rng.integers(self.STATES[0], self.STATES[1] + 1))
        used = rng.choice(self.task_vocab, size=int(rng.integers(self.MIN_LETTERS, self.task_vocab + 1)),
                          replace=False)
        delta = np.full((n, self.task_vocab), -1)
        for s in range(n):
            out = rng.choice(used, size=int(rng.integers(1, min(self.MAX_DEGREE, len(used)) + 1)), replace=False)
            delta[s, out] = rng.integers(n, size=len(out))
        return delta

    def walk(self, delta: np.ndarray, length: int, rng: np.random.Generator) -> list[int]:
        """A string of `length` letters (indices) from state 0."""
        s, out = 0, []
        for _ in range(length):
            a = int(rng.choice(np.flatnonzero(delta[s] >= 0)))
            out.append(a)
            s = int(delta[s, a])
        return out

    def legal_after(self, delta: np.ndarray, answer: np.ndarray) -> np.ndarray:
        """(A, V) bool: the tokens legal as answer[i], given everything before it (the prompt ended a string);
        all False where answer[i] is `|` (not scored)."""
        legal = np.zeros((len(answer), self.tokenizer.vocab_size), dtype=bool)
        s = 0
        for i, tok in enumerate(answer):
            if tok != self.sep_symbol:
                legal[i, self.first + np.flatnonzero(delta[s] >= 0)] = True
                s = int(delta[s, tok - self.first])
            else:
                s = 0
        return legal

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """(prompts (n, task_len), answers (n, STREAM), legal (n, STREAM, V), automata)."""
        prompts, answers, legal, automata = [], [], [], []
        for _ in range(n):
            delta = self.automaton(rng)
            stream = []
            while len(stream) < self.STREAM:
                stream += self.walk(delta, int(rng.integers(1, self.task_len + 1)), rng) + [-1]
            answer = np.array([self.sep_symbol if a < 0 else self.first + a for a in stream[:self.STREAM]])
            prompts.append(self.first + np.array(self.walk(delta, self.task_len, rng)))
            answers.append(answer)
            legal.append(self.legal_after(delta, answer))
            automata.append(delta)
        return np.stack(prompts), np.stack(answers), np.stack(legal), automata

    def examples(self, n, rng):
        return self.generate(n, rng)[:2]

    def batch(self, batch_size, rng, layout=DECODER) -> LegalBatch:
        prompts, answers, legal, _ = self.generate(batch_size, rng)
        prompts, answers = (torch.from_numpy(a.astype(np.int64)) for a in (prompts, answers))
        legal = torch.from_numpy(legal)
        if layout == ENCODER_DECODER:
            bos = torch.full((batch_size, 1), self.tokenizer.bos_id)
            return LegalBatch(x=torch.cat([bos, answers[:, :-1]], dim=1), y=answers, src=prompts, legal=legal)
        sep = torch.full((batch_size, 1), self.tokenizer.sep_id)
        seq = torch.cat([prompts, sep, answers], dim=1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        P = prompts.shape[1]
        y[:, :P] = IGNORE
        full = torch.zeros(*y.shape, legal.shape[-1], dtype=torch.bool)
        full[:, P:] = legal
        return LegalBatch(x, y, legal=full)

    def metrics(self):
        return ["val_legal", "val_legal_first", "val_legal_last", "val_chance"]

    @torch.no_grad()
    def greedy_letters(self, model, batch: LegalBatch) -> torch.Tensor:
        """(B, T) the most likely letter at every position (teacher-forced), `|` and specials aside."""
        letters = model(batch).logits[..., self.first:self.first + self.task_vocab]
        return self.first + letters.argmax(-1)

    def greedy_legal(self, model, batch: LegalBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(hit, scored), (B, T) bool each: the greedy letter is legal; the position is scored."""
        pred = self.greedy_letters(model, batch)
        scored = batch.legal.any(-1)
        return batch.legal.gather(-1, pred.unsqueeze(-1)).squeeze(-1) & scored, scored

    def score(self, model, batches):
        was_training = model.training
        model.eval()
        hits, scored, chance = [], [], []
        for b in batches:
            h, s = self.greedy_legal(model, b)
            hits.append(h)
            scored.append(s)
            chance.append(b.legal.sum(-1) / self.task_vocab)
        model.train(was_training)
        hit, mask, chance = torch.cat(hits), torch.cat(scored), torch.cat(chance)
        cols = mask.any(0).nonzero().squeeze(1)                                  # the answer's positions
        third = max(1, len(cols) // 3)

        def rate(c):
            return float(hit[:, c].sum() / mask[:, c].sum().clamp(min=1))
        return {"val_legal": rate(cols), "val_legal_first": rate(cols[:third]), "val_legal_last": rate(cols[-third:]),
                "val_chance": float(chance[mask].mean())}

    def show(self, model, batch, n: int = 4) -> str:
        """Each example's answer text, and below it the greedy letters: the letter where it is legal, `!`
        where it is not, ` ` where the position is not scored."""
        hit, scored = self.greedy_legal(model.eval(), batch)
        pred = self.greedy_letters(model, batch)
        lines = []
        for i in range(min(n, batch.size)):
            cols = batch.y[i] != IGNORE
            text = self.tokenizer.decode(batch.y[i][cols].tolist())
            marks = "".join(" " if not s else self.tokenizer.decode([int(p)]) if h else "!"
                            for p, h, s in zip(pred[i][cols], hit[i][cols], scored[i][cols]))
            lines += [f"answer {text}", f"greedy {marks}"]
        return "\n".join(lines)


def classification_metrics(pred: torch.Tensor, true: torch.Tensor, n_classes: int) -> dict:
    """Accuracy and macro-averaged precision, recall and F1 (each class weighs the same; a class never
    predicted has precision 0, a class never present recall 0)."""
    p, r, f = [], [], []
    for c in range(n_classes):
        tp = int(((pred == c) & (true == c)).sum())
        predicted, actual = int((pred == c).sum()), int((true == c).sum())
        pc, rc = tp / predicted if predicted else 0.0, tp / actual if actual else 0.0
        p.append(pc)
        r.append(rc)
        f.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return {"val_acc": float((pred == true).float().mean()), "val_precision": sum(p) / n_classes,
            "val_recall": sum(r) / n_classes, "val_f1": sum(f) / n_classes}


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

    def texts(self, n, rng):
        if self.path is None:
            return super().texts(n, rng)
        pick = rng.integers(0, len(self.train_rows), size=n)
        return [self.train_rows[i] for i in pick], [self.train_labels[i] for i in pick]

    def val_batches(self, n, batch_size, seed, layout=DECODER):
        """The built-in task: n seeded batches; a file: every validation row, in order."""
        if self.path is None:
            return super().val_batches(n, batch_size, seed, layout)
        return [classification_batch(self.val_rows[i:i + batch_size], self.tokenizer.pad_id,
                                     self.val_labels[i:i + batch_size], layout)
                for i in range(0, len(self.val_rows), batch_size)]

    @property
    def seq_len(self) -> int:
        return self.task_len if self.path is None else max(map(len, self.train_rows + self.val_rows))


# --- the HMU framework's synthetic patterns and their metrics ---------------------------------------------
class HMUPattern(Task):
    """A source -> target pattern of the HMU framework, over task_vocab symbols (values 0..V-1), source and
    target both task_len long. Scored with the sequence metrics of `sequence_metrics` (greedy, no teacher
    forcing), plus perplexity (teacher-forced) and memory retention (see `retention`)."""

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

    def score(self, model, batches):
        was_training = model.training
        model.eval()
        preds, trues, blind, nll, count = [], [], [], 0.0, 0
        with torch.no_grad():
            for b in batches:
                pred, true = greedy_answers(model, b)
                preds.append(pred)
                trues.append(true)
                blind.append(greedy_answers(model, without_source(b))[0])
                n = int((b.y != IGNORE).sum())
                nll, count = nll + float(model.loss(model(b).logits, b.y)) * n, count + n
        model.train(was_training)
        pred, true = torch.cat(preds), torch.cat(trues)
        out = sequence_metrics(pred, true, torch.cat(blind))
        return {"val_acc": out["acc"], "val_exact": out["exact"], "val_ppl": float(np.exp(nll / count)),
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


def ngrams(row: list, n: int) -> list[tuple]:
    return [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]


def bleu(preds: list[list], refs: list[list], n: int = 2) -> float:
    """Corpus BLEU-n (Papineni et al. 2002), one reference per prediction: the geometric mean of the clipped
    1..n-gram precisions (each summed over the corpus) times the brevity penalty exp(1 - r/c) when the
    predictions are shorter (c) than the references (r). 0 when any precision is 0 (no smoothing)."""
    from collections import Counter
    log_p = 0.0
    for k in range(1, n + 1):
        hit = total = 0
        for p, r in zip(preds, refs):
            pc, rc = Counter(ngrams(p, k)), Counter(ngrams(r, k))
            hit += sum(min(c, rc[g]) for g, c in pc.items())
            total += sum(pc.values())
        if hit == 0:
            return 0.0
        log_p += np.log(hit / total) / n
    c, r = sum(map(len, preds)), sum(map(len, refs))
    return float(np.exp(log_p + (min(0.0, 1 - r / c) if c else -np.inf)))


def rouge_n(preds: list[list], refs: list[list], n: int = 2) -> float:
    """ROUGE-n F1 (Lin 2004), averaged over examples: the n-grams shared (clipped counts) over those of the
    prediction (precision) and of the reference (recall)."""
    from collections import Counter
    scores = []
    for p, r in zip(preds, refs):
        pc, rc = Counter(ngrams(p, n)), Counter(ngrams(r, n))
        hit = sum(min(c, rc[g]) for g, c in pc.items())
        prec, rec = hit / max(1, sum(pc.values())), hit / max(1, sum(rc.values()))
        scores.append(2 * prec * rec / (prec + rec) if hit else 0.0)
    return float(np.mean(scores))


def distinct_n(rows: list[list], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all rows (1 = no n-gram repeats)."""
    grams = [g for row in rows for g in ngrams(row, n)]
    return len(set(grams)) / max(1, len(grams))


def sequence_metrics(pred: torch.Tensor, true: torch.Tensor, blind: torch.Tensor | None = None) -> dict:
    """Metrics of greedy answers pred against true, (N, A) each, every one 1 for a perfect model:
    - acc: per token; exact: per whole answer (chance 1/V and 1/V^A for uniform targets);
    - bleu2, rouge2: BLEU-2 and ROUGE-2 F1 on the answers as token sequences (chance: what independent
      random answers score, > 0 for a small vocabulary: compare with it, not with 0);
    - distinct2: distinct-2 of the predictions over distinct-2 of the true answers (1 = as diverse as the
      data; a model that repeats one answer scores near 0, one that guesses at random can exceed 1);
    - retention (when `blind`, the answers given the wrong example's source, is passed): how much of the
      accuracy the source explains, (acc - acc_blind) / (1 - acc_blind): 0 when the answer ignores the
      source (a model that learned nothing, or any model on hmu_random), 1 when it is perfect with the right
      source and no better than its blind guess without it. The original's "memory retention" measured
      the similarity of the memory to its own input, which is high for an untrained model."""
    hit = pred == true
    p, t = pred.tolist(), true.tolist()
    out = {"acc": float(hit.float().mean()), "exact": float(hit.all(1).float().mean()), "bleu2": bleu(p, t, 2),
           "rouge2": rouge_n(p, t, 2), "distinct2": distinct_n(p, 2) / max(distinct_n(t, 2), 1e-9)}
    if blind is not None:
        acc_blind = float((blind == true).float().mean())
        out["retention"] = (out["acc"] - acc_blind) / (1 - acc_blind) if acc_blind < 1 else 0.0
    return out


TASKS = {"copy": Copy, "reverse": Reverse, "retrieval": Retrieval, "sqeq": QuadraticEquations,
         "majority": Majority, "icll": InContextLanguages, "hmu_random": HMURandom, "hmu_temporal": HMUTemporal,
         "hmu_hierarchical": HMUHierarchical, "hmu_repetitive": HMURepetitive, "classify": Classify}


def make_task(name: str, task_len: int = 0, task_vocab: int = 10, n_keys: int = 4, **options) -> Task:
    """Task `name`; task_len 0 leaves the task's own default (8 symbols; classify from a file: the longest
    example); `options` are a task's own (classify: data, text_column, text_pair_column, label_column,
    block_size)."""
    if name not in TASKS:
        raise ValueError(f"task = {name!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[name](**({"task_len": task_len} if task_len else {}), task_vocab=task_vocab, n_keys=n_keys,
                       **options)


def curriculum_stages(task: Task, seg_len: int) -> list[Task]:
    """The RMT paper's curriculum over the number of segments (Bulatov et al. 2022, section 4: training
    starts on one segment and the number grows): for each segment count below the full task's, the longest
    smaller task whose sequence fits in that many segments of seg_len, then the task itself; a count no
    smaller task fills exactly is skipped. ValueError when the task cannot shrink."""
    if not task.size_field:
        raise ValueError(f"task {task.name!r} has one size only, so it has no curriculum; tasks that can shrink: "
                         f"{sorted(n for n, t in TASKS.items() if t.size_field)}")
    smaller, stages = task.smaller(), []
    for segments in range(1, -(-task.seq_len // seg_len)):
        fits = [t for t in smaller if t.seq_len <= segments * seg_len]
        if fits and fits[-1] not in stages:
            stages.append(fits[-1])
    return stages + [task]


def task_from_config(tcfg, block_size: int | None = None) -> Task:
    """The task a TrainConfig names, with the fields it reads; `block_size`: the model's, the most a length
    taken from the data may be (classify)."""
    if tcfg.task not in TASKS:
        raise ValueError(f"task = {tcfg.task!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[tcfg.task].from_config(tcfg, block_size)


@torch.no_grad()
def greedy_answers(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy-decode the answer of every example (no teacher forcing): (predicted, true), (B, A) each.

    Decoder-only: the prompt is everything before the first answer target, fed once; each answer token then
    goes through `model.next_logits` with the model's state (the whole sequence is recomputed each step for
    a model that carries none). Encoder-decoder: the source is encoded once (`init_state`, which also
    projects the cross-attention keys and values), and the decoder runs from `<bos>` with its cache."""
    if batch.src is not None:
        start, n = 0, batch.y.shape[1]
        seq, true = batch.x[:, :1], batch.y                     # <bos>
        state = model.init_state(batch.size, batch)
    else:
        answer_mask = batch.y[0] != IGNORE
        start = int(answer_mask.nonzero()[0])      # index in x whose next token is the first answer token
        n, seq, true = int(answer_mask.sum()), batch.x[:, :start + 1], batch.y[:, answer_mask]
        state = model.init_state(batch.size)
    logits = model.next_logits(seq, state)
    for i in range(n):
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
        if i < n - 1:
            logits = model.next_logits(seq if state is None else seq[:, -1:], state)
    return seq[:, start + 1:], true
