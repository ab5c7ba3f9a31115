"""Byte-level BPE tokenizer, written by hand (docs/design.md#tokenizers).

References:
- Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words with Subword Units"
  (byte pair encoding for text: repeatedly merge the most frequent adjacent pair).
- Radford et al. 2019, GPT-2, https://github.com/openai/gpt-2/blob/master/src/encoder.py
  (BPE on UTF-8 bytes, so any string encodes; a regex pre-split so merges never cross word classes;
  encoding merges the pair of lowest rank first).
- tiktoken, https://github.com/openai/tiktoken/blob/main/tiktoken_ext/openai_public.py
  (the GPT-2 and GPT-4 `cl100k_base` split patterns; `allowed_special` / `disallowed_special`).
- Karpathy's minbpe, https://github.com/karpathy/minbpe (the teaching layout: `get_stats`, `merge`).

The shape of the algorithm:
1. Pre-split. The regex cuts text into chunks (words with their leading space, runs of digits,
   punctuation, whitespace). Merges happen inside a chunk, never across two.
2. Bytes. Each chunk becomes its UTF-8 bytes, ids 0..255: every string is encodable, no `<unk>`.
3. Train. Count every adjacent pair of ids, merge the most frequent pair into a new id, repeat until
   the vocabulary is full. The list of merges, in order, *is* the tokenizer.
4. Encode. Cut into chunks as in 1, and in each chunk apply the learned merges in the order they
   were learned (lowest rank first) until no learned pair is left.

Training here is fast where the textbook loop (recount every pair of the whole text after every
merge, as minbpe does) is slow:
- the text is counted as *distinct* chunks with their frequencies (`the` is stored once, weight 9000);
- pair counts live in a dict kept up to date incrementally: a merge only revisits the chunks that hold
  the merged pair (an index pair -> chunks says which);
- the most frequent pair comes from a max-heap with lazy updates: a count that goes up pushes a fresh
  entry; one that goes down leaves its old, too-high entry in place, corrected when it surfaces.

Encoding is fast where the textbook loop (scan every pair of a chunk for the lowest rank, rebuild the
list with it merged, start again) is slow:
- a text repeats its chunks (the built-in corpus has 99,329 chunks, 6,652 of them distinct), so each
  distinct chunk is encoded once and its ids are kept in a cache;
- a merge changes only the pairs on either side of it, so `encode_chunk` keeps the rank of every
  adjacent pair in a list and looks up just those two again (tiktoken's `_byte_pair_merge` does the same).

Deterministic ties: among pairs of equal count the smallest pair `(id0, id1)` wins, so the same
text gives the same merges whatever the order of its chunks or documents.
Overlapping pairs: in `a a a a` the pair `(a, a)` counts 2, not 3, because `merge` replaces it
left to right without overlap (`aa aa`). Counting what merging will really do keeps the counts exact.

Id layout (for a vocabulary of size N = 256 + 4 + number of merges):
    0..255        the 256 bytes (id == byte value)
    256..259      the special tokens <pad> <sep> <bos> <eos> (SPECIAL_TOKENS order)
    260..N-1      merge k (k = 0, 1, ...) makes token 260 + k; lower id = earlier merge = lower rank
(A tokenizer trained with extra special tokens puts them after these four, and its merges after them.)
So the vocabularies are nested: `bpe-512` is the first 252 merges of `bpe-4096`, and every id of the
smaller one means the same bytes in the larger one. `vocab_size` counts bytes, specials and merges.

Lone surrogates (a str can hold "\\ud800"; strict UTF-8 refuses it) are written as their 3-byte
surrogate encoding ("surrogatepass"), so `decode(encode(s)) == s` for every Python string. Ids that
are not valid UTF-8 as a whole (a model's sample cut mid-character) decode with U+FFFD in place of
the bad bytes, as tiktoken does; surrogates still come back as surrogates.
"""
from __future__ import annotations

import codecs
import heapq
from collections import Counter, defaultdict
from pathlib import Path

import regex

from .base import SPECIAL_TOKENS, Tokenizer

GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}

SHIPPED_FILE = Path(__file__).resolve().parent / "bpe_builtin.json"
SHIPPED_SIZES = (512, 1024, 2048, 4096)
ENCODE_CACHE_SIZE = 1 << 18  # chunks remembered by encode; the cache is emptied when it is full
NOT_A_MERGE = 1 << 62  # the rank of a pair that no merge replaces: above every real rank


def _decode_error_handler(err: UnicodeDecodeError):
    """Bytes of a lone surrogate come back as the surrogate; any other bad byte becomes U+FFFD."""
    try:
        return codecs.lookup_error("surrogatepass")(err)
    except UnicodeDecodeError:
        return codecs.replace_errors(err)


codecs.register_error("mnemo.surrogatepass_replace", _decode_error_handler)


def to_bytes(text: str) -> bytes:
    """UTF-8, with lone surrogates kept as their 3-byte encoding so that nothing is refused."""
    return text.encode("utf-8", "surrogatepass")


def from_bytes(data: bytes) -> str:
    """The inverse of `to_bytes`; bytes that are not UTF-8 decode to U+FFFD."""
    return data.decode("utf-8", "mnemo.surrogatepass_replace")


# --- the two small steps of BPE ---------------------------------------------------------------------
def get_stats(ids, counts=None) -> dict:
    """Add to `counts` how many times `merge` would replace each adjacent pair of `ids`.

    Counted left to right without overlap: in `a a a a` the pair (a, a) counts 2, not 3.
    """
    counts = {} if counts is None else counts
    after_double = False  # the previous pair counted was (x, x), so a next (x, x) overlaps it
    for pair in zip(ids, ids[1:]):
        if pair[0] == pair[1]:
            if after_double:
                after_double = False
                continue
            after_double = True
        else:
            after_double = False
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids, pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` by `new_id`, left to right."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def textbook_encode_chunk(ranks: dict, data: bytes) -> list[int]:
    """The textbook encoder, the reference `BPETokenizer.encode_chunk` must agree with (tests) and beat
    (benchmarks/bpe_speed.py): find the learned pair of lowest rank among all adjacent pairs, merge every
    occurrence of it, start again. `ranks` maps a pair to its merged id (merged ids grow with the rank)."""
    ids = list(data)
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge(ids, pair, ranks[pair])
    return ids


# --- training ---------------------------------------------------------------------------------------
def special_pattern(specials) -> str:
    """A regex for any of the special-token strings (longest first, so none hides a longer one)."""
    return "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True))


def split_specials(text: str, specials) -> list[str]:
    """The text with every special-token string cut out: the ordinary pieces between them."""
    return regex.split(special_pattern(specials), text) if specials else [text]


def count_chunks(text: str, pattern: str, specials=()) -> Counter:
    """Pre-split: distinct chunk -> how many times it occurs (special tokens never join a chunk)."""
    split = regex.compile(pattern)
    counts = Counter()
    for piece in split_specials(text, specials):
        counts.update(split.findall(piece))
    return counts


def learn_merges(chunk_counts: dict, n_merges: int, first_id: int) -> list[tuple[int, int]]:
    """The first `n_merges` merges of BPE over chunks with frequencies; merge k makes `first_id + k`.

    Each distinct chunk is a list of ids with a weight. `counts[pair]` is the weighted number of times
    the pair would be merged, `where[pair]` the chunks holding it. `heap` holds (-count, pair) entries;
    every pair has one at least as high as its count, so an entry that is exact when it reaches the
    top is the most frequent pair (the smallest pair among equals, by tuple order).
    """
    words = [list(to_bytes(chunk)) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts, where = {}, defaultdict(set)
    for w, (ids, f) in enumerate(zip(words, freqs)):
        for pair, n in get_stats(ids).items():
            counts[pair] = counts.get(pair, 0) + n * f
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(merges) < n_merges:
        if not heap:
            raise ValueError(f"the text allows only {len(merges)} merges (every chunk is one token); "
                             f"ask for a vocabulary of at most {first_id + len(merges)}")
        neg_count, pair = heapq.heappop(heap)
        count = counts.get(pair, 0)
        if count != -neg_count:  # a stale entry: the count went down (or to 0) after it was pushed
            if count:
                heapq.heappush(heap, (-count, pair))
            continue
        new_id = first_id + len(merges)
        merges.append(pair)
        for w in where.pop(pair):
            _update_word(words, w, freqs[w], pair, new_id, counts, where, heap)
        where.pop(pair, None)
    return merges


def _update_word(words, w, freq, pair, new_id, counts, where, heap) -> None:
    """Merge `pair` in chunk `w`, and move the pair counts by what changed in that chunk alone."""
    old = get_stats(words[w])
    words[w] = merge(words[w], pair, new_id)
    new = get_stats(words[w])
    for p in old.keys() | new.keys():
        delta = (new.get(p, 0) - old.get(p, 0)) * freq
        if delta == 0:
            continue
        c = counts.get(p, 0) + delta
        if c:
            counts[p] = c
        else:
            del counts[p]
        if delta > 0:  # a count that went up needs a new entry; one that went down waits (above)
            heapq.heappush(heap, (-c, p))
        if p not in new:
            where[p].discard(w)
        elif p not in old:
            where[p].add(w)


# --- the tokenizer ----------------------------------------------------------------------------------
class BPETokenizer(Tokenizer):
    """Byte-level BPE: `merges[k]` is the pair of ids that token `256 + len(specials) + k` replaces."""

    type_name = "bpe"

    def __init__(self, merges, pattern: str = GPT4_SPLIT_PATTERN, specials=SPECIAL_TOKENS,
                 name: str = "bpe"):
        self.name = name
        self.pattern = pattern
        self.split = regex.compile(pattern)
        self.specials = list(specials)
        self.merges = [tuple(m) for m in merges]
        self.first_merge_id = 256 + len(self.specials)
        # vocab[i] = the bytes token i stands for (a special stands for its own text)
        self.vocab = [bytes([b]) for b in range(256)] + [s.encode("utf-8") for s in self.specials]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.ranks = {pair: self.first_merge_id + k for k, pair in enumerate(self.merges)}
        self.cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = "gpt4", special_tokens=SPECIAL_TOKENS,
              name: str | None = None) -> "BPETokenizer":
        """Learn `vocab_size - 256 - len(special_tokens)` merges from `text`.

        `pattern` is "gpt4" (cl100k, the default), "gpt2", or a regex of your own. Occurrences of the
        special-token strings in `text` are cut out before counting, so no merge ever learns them.
        The default name, `bpe-custom-N`, keeps a tokenizer you trained apart from the shipped `bpe-N`.
        """
        pattern = PATTERNS.get(pattern, pattern)
        specials = list(special_tokens)
        missing = [s for s in SPECIAL_TOKENS if s not in specials]
        if missing:
            raise ValueError(f"special_tokens must include {list(SPECIAL_TOKENS)}; missing {missing}")
        first_id = 256 + len(specials)
        if vocab_size < first_id:
            raise ValueError(f"vocab_size {vocab_size} is below the {first_id} ids that 256 bytes and "
                             f"{len(specials)} special tokens already take")
        chunks = count_chunks(text, pattern, specials)
        merges = learn_merges(chunks, vocab_size - first_id, first_id)
        return cls(merges, pattern, specials, name=name or f"bpe-custom-{vocab_size}")

    # --- interface ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_ids(self) -> dict[str, int]:
        return {s: 256 + i for i, s in enumerate(self.specials)}

    def encode(self, text: str, allowed_special=frozenset(), disallowed_special="all") -> list[int]:
        """Text -> ids. Special-token strings are tokens only when listed in `allowed_special`
        (a set of them, or "all"); one found in `disallowed_special` (default: every special not
        allowed) raises ValueError; one in neither is encoded as ordinary text."""
        allowed = set(self.specials) if allowed_special == "all" else set(allowed_special)
        disallowed = (set(self.specials) - allowed if disallowed_special == "all"
                      else set(disallowed_special))
        unknown = (allowed | disallowed) - set(self.specials)
        if unknown:
            raise ValueError(f"{sorted(unknown)} are not special tokens of {self.name}; "
                             f"they are {self.specials}")
        for s in disallowed:
            if s in text:
                raise ValueError(f"the text contains the special token {s!r}. Pass "
                                 f"allowed_special={{{s!r}}} to encode it as the special token, or "
                                 f"disallowed_special=() to encode it as ordinary text")
        if not allowed:
            return self.encode_ordinary(text)
        ids = []
        parts = regex.split(f"({special_pattern(allowed)})", text)
        for i, part in enumerate(parts):  # odd positions hold the special tokens that were split on
            ids.extend([self.special_ids[part]] if i % 2 else self.encode_ordinary(part))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids, with special-token strings treated as plain text."""
        ids, cache = [], self.cache
        for chunk in self.split.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                if len(cache) >= ENCODE_CACHE_SIZE:
                    cache.clear()
                chunk_ids = cache[chunk] = self.encode_chunk(to_bytes(chunk))
            ids.extend(chunk_ids)
        return ids

    def encode_chunk(self, data: bytes) -> list[int]:
        """One pre-split chunk: merge the adjacent pair of lowest rank, again and again, until no
        adjacent pair is a learned merge.

        `pair_ranks[i]` is the rank of the pair `(ids[i], ids[i + 1])`, or NOT_A_MERGE. A merge at `i`
        changes only the pairs on either side of it, so only those two are looked up again (tiktoken's
        `_byte_pair_merge` works the same way); the textbook loop rescans every pair and rebuilds the
        list after each merge. A merge's rank is the id of the token it makes, so the lowest rank is
        also the id that replaces the pair.

        Merging the leftmost lowest pair, one at a time, gives the ids of the textbook order (apply
        each merge to the whole chunk, lowest rank first): a merge uses only earlier ids, so the
        pairs it creates rank above it, and the next lowest pair is another occurrence of the same
        merge or a later merge.

        There is no shortcut for a chunk that is itself a token (tiktoken has one): with merges
        written by hand a token's own bytes can encode to other tokens (tests/test_bpe.py shows one).
        """
        ids = list(data)
        ranks = self.ranks
        pair_ranks = [ranks.get(pair, NOT_A_MERGE) for pair in zip(ids, ids[1:])]
        while pair_ranks:
            rank = min(pair_ranks)
            if rank == NOT_A_MERGE:
                break
            i = pair_ranks.index(rank)  # the leftmost pair of that rank
            ids[i:i + 2] = [rank]
            del pair_ranks[i]
            if i > 0:
                pair_ranks[i - 1] = ranks.get((ids[i - 1], rank), NOT_A_MERGE)
            if i < len(pair_ranks):
                pair_ranks[i] = ranks.get((rank, ids[i + 1]), NOT_A_MERGE)
        return ids

    def encode_batch(self, texts, **special) -> list[list[int]]:
        """`encode` for each text (one thread; the chunk cache is shared)."""
        return [self.encode(t, **special) for t in texts]

    def decode(self, ids) -> str:
        return from_bytes(b"".join(self.token_bytes(i) for i in ids))

    def token_bytes(self, i) -> bytes:
        """The bytes token `i` stands for."""
        i = int(i)
        if not 0 <= i < len(self.vocab):
            raise ValueError(f"token id {i} is out of range 0..{len(self.vocab) - 1}")
        return self.vocab[i]

    def piece(self, i) -> str:
        """Token `i` as text. A token that is not whole UTF-8 (part of a character) shows its bytes
        as escapes: the three tokens of `"中"` in a vocabulary without it read `\\xe4`, `\\xb8`, `\\xad`."""
        return self.token_bytes(i).decode("utf-8", "backslashreplace")

    def pieces(self, text: str, **special) -> list[str]:
        """One string per token (see `piece`); `special` as for `encode`."""
        return [self.piece(i) for i in self.encode(text, **special)]

    def explain(self, i: int) -> str:
        """What token `i` is: its text, and the byte or the merge that made it."""
        i = int(i)
        if i < 256:
            return f"{i}: {self.piece(i)!r} = byte 0x{i:02x}"
        if i < self.first_merge_id:
            return f"{i}: {self.piece(i)!r} = special token"
        k = i - self.first_merge_id
        a, b = self.merges[k]
        return (f"{i}: {self.piece(i)!r} = merge {k} of {a} {self.piece(a)!r} + {b} {self.piece(b)!r}"
                f"  (bytes {self.token_bytes(i).hex(' ')})")

    def cut(self, vocab_size: int, name: str | None = None) -> "BPETokenizer":
        """The nested smaller tokenizer: the first `vocab_size - first_merge_id` merges.
        Named `bpe-custom-N` unless named here (only `load_shipped` gives the names `bpe-N`)."""
        if not self.first_merge_id <= vocab_size <= self.vocab_size:
            raise ValueError(f"{self.name} can be cut to a vocabulary of {self.first_merge_id}.."
                             f"{self.vocab_size}, not {vocab_size}")
        return BPETokenizer(self.merges[:vocab_size - self.first_merge_id], self.pattern,
                            self.specials, name=name or f"bpe-custom-{vocab_size}")

    # --- file format ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"type": self.type_name, "name": self.name, "pattern": self.pattern,
                "specials": self.specials, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        """Check everything a file could get wrong, and say which field and which entry."""
        if not isinstance(d["pattern"], str):
            raise ValueError("'pattern' must be a regex string")
        try:
            regex.compile(d["pattern"])
        except regex.error as e:
            raise ValueError(f"'pattern' is not a valid regex: {e}") from None
        specials = d["specials"]
        if not (isinstance(specials, list) and all(isinstance(s, str) for s in specials)
                and all(s in specials for s in SPECIAL_TOKENS)):
            raise ValueError(f"'specials' must be a list of strings including {list(SPECIAL_TOKENS)}, "
                             f"got {specials!r}")
        merges = d["merges"]
        if not isinstance(merges, list):
            raise ValueError("'merges' must be a list of [id, id] pairs")
        first_id = 256 + len(specials)
        for k, m in enumerate(merges):
            ok = (isinstance(m, list) and len(m) == 2 and all(type(x) is int for x in m))
            if not ok:
                raise ValueError(f"merge {k} is {m!r}; each merge must be a pair of ids [a, b]")
            for x in m:
                if not (0 <= x < 256 or first_id <= x < first_id + k):
                    raise ValueError(f"merge {k} ({m}) uses id {x}: a merge may use bytes 0..255 "
                                     f"or earlier merges {first_id}..{first_id + k - 1}, not "
                                     f"special tokens or later merges")
        if len(set(map(tuple, merges))) != len(merges):
            raise ValueError("'merges' holds the same pair twice")
        return cls(merges, d["pattern"], specials, name=str(d.get("name", "bpe")))


def load_shipped(name: str) -> BPETokenizer:
    """`bpe-N`: the shipped tokenizer of the built-in corpus, cut to a vocabulary of N."""
    full = BPETokenizer.load(SHIPPED_FILE)
    size = name.removeprefix("bpe-")
    if not size.isdigit() or not full.first_merge_id <= int(size) <= full.vocab_size:
        raise ValueError(f"no shipped tokenizer {name!r}: shipped names are bpe-N with N in "
                         f"{full.first_merge_id}..{full.vocab_size} (trained at "
                         f"{', '.join(f'bpe-{n}' for n in SHIPPED_SIZES)}); a tokenizer you trained "
                         f"yourself loads from its JSON file")
    return full.cut(int(size), name=f"bpe-{int(size)}")
