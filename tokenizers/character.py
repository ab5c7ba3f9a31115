"""Character tokenizer: one token per Unicode code point seen in the training text.

The simplest tokenizer, and the first in the teaching order (minbpe starts the same way). The vocabulary
is the four special tokens, one fallback token `<unk>`, then the training text's characters in code
point order, so the same text always gives the same ids.

Fallback: a character that was not in the training text encodes to `<unk>`, which decodes to U+FFFD
(the Unicode replacement character). So `decode(encode(s)) == s` exactly for any text made of the
training characters, and unseen text never crashes the tokenizer.
"""
from __future__ import annotations

from .base import SPECIAL_TOKENS, Tokenizer

UNK = "<unk>"
UNK_TEXT = "\ufffd"


class CharTokenizer(Tokenizer):
    type_name = "char"

    def __init__(self, chars: str, name: str = "char"):
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: chars must not repeat")
        self.name = name
        self.chars = chars
        self.specials = list(SPECIAL_TOKENS) + [UNK]
        self.stoi = {c: i + len(self.specials) for i, c in enumerate(chars)}
        self.unk_id = self.specials.index(UNK)

    @classmethod
    def train(cls, text: str, name: str = "char") -> "CharTokenizer":
        """Build the vocabulary: every distinct character of `text`, in code point order."""
        return cls("".join(sorted(set(text))), name=name)

    @property
    def vocab_size(self) -> int:
        return len(self.specials) + len(self.chars)

    @property
    def special_ids(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.specials) if t != UNK}

    def encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(c, unk) for c in text]

    def decode(self, ids) -> str:
        n, size = len(self.specials), self.vocab_size
        out = []
        for i in map(int, ids):
            if not 0 <= i < size:
                self.check_ids([i])  # raises, naming the id and the valid range
            out.append(self.chars[i - n] if i >= n else UNK_TEXT if i == self.unk_id else self.specials[i])
        return "".join(out)

    @property
    def never_generated(self) -> tuple[int, ...]:
        """Also `<unk>`: it stands for a character the training text lacked, and decodes to U+FFFD."""
        return *super().never_generated, self.unk_id

    def unknown_chars(self, text: str) -> set[str]:
        return set(text) - self.stoi.keys()

    def pieces(self, text: str) -> list[str]:
        return [self.decode([i]) for i in self.encode(text)]

    def to_dict(self) -> dict:
        return {"type": self.type_name, "name": self.name, "specials": self.specials, "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("specials", cls("").specials) != cls("").specials:
            raise ValueError(f"special tokens {d.get('specials')} differ from {cls('').specials}")
        if not isinstance(d["chars"], str):
            raise ValueError("'chars' must be a string")
        return cls(d["chars"], name=d.get("name", "char"))
