"""Where a corpus's text comes from, and how it is made to fit a tokenizer.

- `builtin`: the text of `pydoc_data.topics`, which ships with every CPython (~465 KB of English);
- `builtin-records`: one record per documented built-in function, type, method and function of a few standard
  modules, `name: first sentence of its docstring` (~460 records, ~30 KB), built at run time, offline;
- `shakespeare`: tiny-shakespeare (Karpathy's char-rnn corpus, 40,000 lines of the plays, public domain, 1.1 MB),
  shipped in `data/tinyshakespeare.txt` and SHA-256 checked when read, so it works offline;
- `tinystories`: downloaded once into the cache (progress bar, SHA-256 checked);
- any UTF-8 text file, by path.

A text read with a tokenizer that was not built from it (a finetune: `--init_from`) is first fitted to it
(`fit_texts`): a character the tokenizer has no token for is folded to its NFKD decomposition's characters
that it has (é -> e, ﬁ -> fi, ² -> 2), or else dropped; more than MAX_DROPPED of the text dropped is an error.
The cache lives in `$MNEMO_CACHE`, default `data_cache/` in the repo (ignored by git).
"""
from __future__ import annotations

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

from tqdm.auto import tqdm

from tokenizers import CharTokenizer, Tokenizer
from tokenizers import load as load_tokenizer
from tokenizers.bpe import SHIPPED_FILE, SHIPPED_SIZES, BPETokenizer
from tools import ROOT, atomic_write_bytes, sha256_of

CACHE = Path(os.environ.get("MNEMO_CACHE", ROOT / "data_cache"))
MAX_DROPPED = 0.01   # the largest fraction of a text's characters that fitting it to a tokenizer may drop
BUILTINS = ("builtin", "builtin-records")  # the corpora built from what Python ships


@dataclass(frozen=True)
class Remote:
    """A downloadable corpus: where it lives, its SHA-256, and the file name in the cache."""
    url: str
    sha256: str
    filename: str


# The corpora that ship with the repository: name -> (file, its SHA-256). tiny-shakespeare came from
# https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt
SHIPPED = {
    "shakespeare": (Path(__file__).resolve().parent / "tinyshakespeare.txt",
                    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}

REMOTES = {
    # The validation split (19 MB) of TinyStories, pinned to a dataset revision so the hash stays valid.
    "tinystories": Remote(
        "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/"
        "f54c09fd23315a6f9c86f9dc80f725de7d8f9c64/TinyStories-valid.txt",
        "94e431816c4cce81ff71e4408ff8d3bda9a42e8d2663986697c3954288cb38b4", "TinyStories-valid.txt"),
}


class DownloadError(RuntimeError):
    """A corpus could not be fetched or failed its checksum; the message says what to do."""


def shipped(name: str) -> Path:
    """The file of the shipped corpus `name`, its checksum verified (a truncated or edited copy is refused)."""
    path, want = SHIPPED[name]
    if not path.is_file():
        raise DownloadError(f"the shipped corpus {path} is missing; restore it with `git checkout -- {path.name}` "
                            f"in {path.parent}")
    if (got := sha256_of(path)) != want:
        raise DownloadError(f"the shipped corpus {path} has sha256 {got}, expected {want} (an edited or truncated "
                            f"copy); restore it with `git checkout -- {path.name}` in {path.parent}")
    return path


def builtin_text() -> str:
    """Python's own help topics: English prose with code, available offline on every install."""
    import pydoc_data.topics as t
    return "\n\n".join(t.topics[k] for k in sorted(t.topics))


def train_shipped_bpe(path=SHIPPED_FILE) -> BPETokenizer:
    """Regenerate tokenizers/'s shipped BPE file from the built-in corpus: one run to the largest size; the
    smaller sizes are its prefixes. Deterministic (same text, same file).

        python -c "from data.sources import train_shipped_bpe; train_shipped_bpe()"   # from the repo root"""
    tok = BPETokenizer.train(builtin_text(), max(SHIPPED_SIZES), name=f"bpe-{max(SHIPPED_SIZES)}")
    tok.save(path)
    print(f"wrote {path} ({tok.vocab_size} tokens, hash {tok.hash()})")
    return tok


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
    in SHIPPED or REMOTES, or a path to a UTF-8 file."""
    if data == "builtin":
        return builtin_text()
    if data == "builtin-records":
        return "\n\n".join(builtin_records())
    if data in SHIPPED:
        path = shipped(data)
    elif data in REMOTES:
        path = download(REMOTES[data], cache_dir, progress)
    else:
        path = Path(data)
        if not path.is_file():
            raise ValueError(f"data = {data!r} is neither a corpus name ({[*BUILTINS, *SHIPPED, *REMOTES]}) nor a "
                             f"file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None


def corpus_name(data: str) -> str:
    """The short name of corpus `data` (run folder names, logs): the corpus name, or the file's stem."""
    return data if data in (*BUILTINS, *SHIPPED, *REMOTES) else Path(data).stem


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
