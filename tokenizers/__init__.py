"""mnemo's handwritten tokenizers: `character` (one token per character) and `bpe` (byte-level BPE).

`load(name_or_path)` gives a tokenizer from a JSON file, or from a name:
- `"bpe-N"`: the shipped byte-level BPE trained on the built-in corpus, cut to vocabulary size N
  (sizes are nested: the first merges of a larger vocabulary are a smaller one).
A character tokenizer is built from the text it will encode (`CharTokenizer.train(text)`), so it has no
shipped file; `data.py` builds and caches it per corpus.

The folder shadows the Hugging Face `tokenizers` package when the repo root is on `sys.path`: never
import that package in the same process.
"""
from __future__ import annotations

from pathlib import Path

from .base import SPECIAL_TOKENS, Tokenizer, TokenizerFileError
from .bpe import BPETokenizer
from .character import CharTokenizer

HERE = Path(__file__).resolve().parent


def load(name_or_path) -> Tokenizer:
    """A tokenizer from a saved JSON file, or a shipped one by name (`bpe-1024`)."""
    name = str(name_or_path)
    if name.startswith("bpe-") and not Path(name).exists():
        from .bpe import load_shipped
        return load_shipped(name)
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        return Tokenizer.load(path)
    raise ValueError(f"unknown tokenizer {name!r}: give a path to a tokenizer JSON file or 'bpe-N' "
                     f"(N a shipped vocabulary size); character tokenizers are built from their text "
                     f"with CharTokenizer.train(text)")


__all__ = ["BPETokenizer", "CharTokenizer", "SPECIAL_TOKENS", "Tokenizer", "TokenizerFileError", "load"]
