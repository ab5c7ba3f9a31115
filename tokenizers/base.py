"""The interface every mnemo tokenizer shares (docs/design.md#tokenizers).

A tokenizer turns text into integer ids and back. Every tokenizer has the same four special tokens,
`<pad> <sep> <bos> <eos>`, reachable as `pad_id`, `sep_id`, `bos_id`, `eos_id`, and saves itself as
readable JSON (never pickle) whose `"type"` field names the class that loads it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<sep>", "<bos>", "<eos>")


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read: the message names the file and what is wrong."""


class Tokenizer:
    """Base class: subclasses implement `encode`, `decode`, `vocab_size`, `to_dict`, `from_dict`,
    `special_ids` and `pieces`."""

    type_name = "base"
    name = "tokenizer"

    # --- the interface -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids with every special-token string (`<eos>` written in the text) encoded as plain text.
        This is how corpora and prompts are read: text is text; special tokens enter as ids."""
        return self.encode(text)

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def special_ids(self) -> dict[str, int]:
        """{'<pad>': id, '<sep>': id, '<bos>': id, '<eos>': id}."""
        raise NotImplementedError

    def pieces(self, text: str) -> list[str]:
        """The text cut into the pieces the tokenizer sees, one string per token."""
        raise NotImplementedError

    def unknown_chars(self, text: str) -> set[str]:
        """The characters of `text` that have no token of their own (they would encode to a fallback). None
        for a byte-level tokenizer, which spells every character in bytes."""
        return set()

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, d: dict) -> "Tokenizer":
        raise NotImplementedError

    # --- shared conveniences -------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return self.special_ids["<pad>"]

    @property
    def sep_id(self) -> int:
        return self.special_ids["<sep>"]

    @property
    def bos_id(self) -> int:
        return self.special_ids["<bos>"]

    @property
    def eos_id(self) -> int:
        return self.special_ids["<eos>"]

    @property
    def never_generated(self) -> tuple[int, ...]:
        """The ids generation never draws: `<pad>`, `<sep>` and `<bos>`, which lay out training sequences and
        stand for no text of their own. `<eos>` is not among them: drawing it ends the text."""
        return self.pad_id, self.sep_id, self.bos_id

    def decode_generated(self, ids) -> str:
        """Generated ids as text for a reader: `<pad>` and `<bos>`, which stand for no text, are left out
        (`<sep>` and `<eos>` stay visible: they mark where a prompt or a document ends)."""
        drop = {self.pad_id, self.bos_id}
        return self.decode([i for i in map(int, ids) if i not in drop])

    def check_ids(self, ids) -> None:
        """Raise ValueError naming the first id outside 0..vocab_size-1."""
        for i in map(int, ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is out of range 0..{self.vocab_size - 1} of the tokenizer "
                                 f"{self.name!r} ({self.vocab_size} tokens)")

    def display(self, text: str, sep: str = "|") -> str:
        """The text with its token boundaries made visible: `Hel|lo| world`."""
        return sep.join(self.pieces(text))

    def hash(self) -> str:
        """A short content hash: two tokenizers with the same hash encode identically."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def save(self, path) -> Path:
        """Write the tokenizer as JSON, atomically (a crash never leaves half a file)."""
        from tools import atomic_write_text
        return atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a file written by `save`; a malformed file raises TokenizerFileError naming it."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TokenizerFileError(f"tokenizer file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenizerFileError(f"tokenizer file {path} is not valid UTF-8 JSON: {e}") from None
        if not isinstance(d, dict) or "type" not in d:
            raise TokenizerFileError(f"tokenizer file {path} has no 'type' field (expected 'char' or 'bpe')")
        if cls is not Tokenizer and d["type"] != cls.type_name:
            raise TokenizerFileError(f"tokenizer file {path} holds a {d['type']!r} tokenizer, not {cls.type_name!r}")
        try:
            return _registry()[d["type"]].from_dict(d)
        except KeyError as e:
            if e.args and e.args[0] == d["type"]:
                raise TokenizerFileError(f"tokenizer file {path}: unknown type {d['type']!r}; "
                                         f"valid: {sorted(_registry())}") from None
            raise TokenizerFileError(f"tokenizer file {path}: missing field {e}") from None
        except (TypeError, ValueError) as e:
            raise TokenizerFileError(f"tokenizer file {path}: {e}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size})"


def _registry() -> dict[str, type]:
    """type name -> class, for every Tokenizer subclass that has been imported."""
    out, todo = {}, list(Tokenizer.__subclasses__())
    while todo:
        c = todo.pop()
        out[c.type_name] = c
        todo.extend(c.__subclasses__())
    return out
