"""Tests of the handwritten byte-level BPE tokenizer (tokenizers/bpe.py, docs/design.md#tokenizers)."""
import json
import random

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizers
from data import builtin_text
from tokenizers import SPECIAL_TOKENS, TokenizerFileError
from tokenizers.bpe import (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, SHIPPED_SIZES, BPETokenizer,
                            count_chunks, get_stats, learn_merges, merge, textbook_encode_chunk, to_bytes)

SAMPLE = ("The quick brown fox jumps over the lazy dog. It's 2024; the dog doesn't mind!\n"
          "    def f(x):\n        return x ** 2  # squares\n") * 3
ODD_STRINGS = ["", "a", "aaaa", "héllo wörld", "e\u0301 n\u0303", "中文字符 日本語", "😀👍🏽 👨‍👩‍👧",
               "\x00\x01\x1b\x7f\t\r\n", "\ud800", "x\udfffy", "\ud83d\ude00", "  \n\n \t ",
               "<eos", "\u200b\ufeff\uffff", "🙂" * 7]
EVERY_CHAR = st.characters(exclude_categories=())  # includes lone surrogates (category Cs)


@pytest.fixture(scope="module")
def shipped():
    return tokenizers.load("bpe-4096")


@pytest.fixture(scope="module")
def small():
    return BPETokenizer.train(SAMPLE, 300)


# --- the two small steps ----------------------------------------------------------------------------
def test_get_stats_counts_overlapping_pairs_as_merge_applies_them():
    assert get_stats([1, 1, 1]) == {(1, 1): 1}
    assert get_stats([1, 1, 1, 1]) == {(1, 1): 2}
    assert get_stats([1, 1, 1, 1, 1]) == {(1, 1): 2}
    assert get_stats([1, 1, 2, 1, 1, 1]) == {(1, 1): 2, (1, 2): 1, (2, 1): 1}
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert merge([1, 1, 1, 1, 1], (1, 1), 9) == [9, 9, 1]
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]


@given(st.lists(st.integers(0, 2), max_size=12))
@settings(max_examples=200, deadline=None)
def test_get_stats_is_what_merge_replaces(ids):
    for pair, n in get_stats(ids).items():
        assert len(ids) - len(merge(ids, pair, 99)) == n


# --- training ---------------------------------------------------------------------------------------
def test_hand_checked_tiny_example():
    # "aaabdaaabac" (the Wikipedia example) is one pre-split chunk; a=97 b=98 c=99 d=100.
    # Pairs merge() would replace: aa 2 (not 4: "aaa" holds one), ab 2, bd da ba ac 1.
    # 1. aa (97, 97) vs ab (97, 98), both 2: the tie goes to the smaller pair -> 260 'aa'
    #    [260 97 98 100 260 97 98 97 99]
    # 2. (97, 98) 2 and (260, 97) 2: the smaller pair -> 261 'ab'      [260 261 100 260 261 97 99]
    # 3. (260, 261) 2 -> 262 'aaab'                                      [262 100 262 97 99]
    # 4. all 1: the smallest pair (97, 99) -> 263 'ac'                   [262 100 262 263]
    # 5. all 1: (100, 262) -> 264 'daaab'                                [262 264 263]
    tok = BPETokenizer.train("aaabdaaabac", 265)
    assert tok.merges == [(97, 97), (97, 98), (260, 261), (97, 99), (100, 262)]
    assert tok.encode("aaabdaaabac") == [262, 264, 263]
    assert [tok.token_bytes(i) for i in range(260, 265)] == [b"aa", b"ab", b"aaab", b"ac", b"daaab"]
    assert tok.explain(262) == "262: 'aaab' = merge 2 of 260 'aa' + 261 'ab'  (bytes 61 61 61 62)"
    assert tok.explain(97) == "97: 'a' = byte 0x61"
    assert tok.explain(259) == "259: '<eos>' = special token"
    assert tok.display("aaabdaaabac") == "aaab|daaab|ac"


def textbook_merges(chunks, n_merges, first_id):
    """The slow reference: recount over every chunk occurrence after each merge. A pair's count is
    measured directly as how many ids merge() removes, so it checks get_stats too."""
    words = [list(c.encode("utf-8", "surrogatepass")) for c in chunks]
    merges = []
    for k in range(n_merges):
        candidates = {p for w in words for p in zip(w, w[1:])}
        if not candidates:
            break
        counts = {p: sum(len(w) - len(merge(w, p, -1)) for w in words) for p in candidates}
        pair = min(counts, key=lambda p: (-counts[p], p))  # most frequent, then smallest pair
        merges.append(pair)
        words = [merge(w, pair, first_id + k) for w in words]
    return merges


@given(st.text(alphabet="aaab b\n.é", max_size=60))
@settings(max_examples=60, deadline=None)
def test_incremental_training_equals_the_textbook_recount(text):
    expected = textbook_merges(regex.findall(GPT4_SPLIT_PATTERN, text), 30, 260)
    assert learn_merges(count_chunks(text, GPT4_SPLIT_PATTERN), len(expected), 260) == expected


def test_incremental_training_equals_the_textbook_recount_on_english():
    expected = textbook_merges(regex.findall(GPT4_SPLIT_PATTERN, SAMPLE), 60, 260)
    assert BPETokenizer.train(SAMPLE, 320).merges == expected


def test_incremental_training_equals_a_full_recount_on_real_text():
    """300 merges on 30 KB of the Python docs against a full weighted recount after every merge:
    enough merges for counts to rise and fall many times (the heap's lazy updates)."""
    import pydoc_data.topics
    text = "".join(sorted(pydoc_data.topics.topics.values()))[:30_000]
    chunks = count_chunks(text, GPT4_SPLIT_PATTERN)
    words = {c: list(c.encode()) for c in chunks}
    expected = []
    for k in range(300):
        counts = {}
        for c, ids in words.items():
            for pair, n in get_stats(ids).items():
                counts[pair] = counts.get(pair, 0) + n * chunks[c]
        pair = min(counts, key=lambda p: (-counts[p], p))
        expected.append(pair)
        words = {c: merge(ids, pair, 260 + k) for c, ids in words.items()}
    assert learn_merges(chunks, 300, 260) == expected


def test_merges_do_not_depend_on_the_order_of_chunks():
    rng = random.Random(0)
    lines = [f"{w} {v}{'.' * (i % 3)}\n" for i, (w, v) in
             enumerate(zip(SAMPLE.split() * 3, reversed(SAMPLE.split() * 3)))]
    reference = BPETokenizer.train("".join(lines), 320).merges
    for _ in range(3):
        rng.shuffle(lines)
        assert BPETokenizer.train("".join(lines), 320).merges == reference
    counts = count_chunks(SAMPLE, GPT4_SPLIT_PATTERN)
    reversed_counts = dict(reversed(list(counts.items())))
    assert learn_merges(reversed_counts, 71, 260) == learn_merges(counts, 71, 260)


def test_vocabularies_are_nested(small, shipped):
    big = BPETokenizer.train(SAMPLE, 330)
    assert big.merges[:40] == small.merges
    assert big.cut(300).to_dict() == small.to_dict()
    for n in SHIPPED_SIZES:
        tok = tokenizers.load(f"bpe-{n}")
        assert tok.vocab_size == n and tok.name == f"bpe-{n}"
        assert tok.merges == shipped.merges[:n - 260]
        assert tok.vocab == shipped.vocab[:n]  # every id means the same bytes at every size


def test_training_cuts_out_special_tokens_and_checks_sizes():
    tok = BPETokenizer.train("abc<eos>abc<eos>", 262)
    assert tok.merges == [(97, 98), (260, 99)]
    assert not any(b"<" in t or b">" in t for t in tok.vocab[260:])
    with pytest.raises(ValueError, match="only 2 merges.*at most 262"):
        BPETokenizer.train("abab", 270)
    with pytest.raises(ValueError, match="below the 260 ids"):
        BPETokenizer.train("abab", 100)
    with pytest.raises(ValueError, match="must include"):
        BPETokenizer.train("abab", 270, special_tokens=["<bos>"])


def test_gpt2_pattern_is_selectable_and_restored(tmp_path):
    tok = BPETokenizer.train(SAMPLE, 280, pattern="gpt2")
    assert tok.pattern == GPT2_SPLIT_PATTERN
    loaded = tokenizers.load(tok.save(tmp_path / "t.json"))
    assert loaded.pattern == GPT2_SPLIT_PATTERN
    assert loaded.encode("x   123456 ok") == tok.encode("x   123456 ok")
    # GPT-2 keeps digits in one chunk, GPT-4 cuts them in threes:
    assert loaded.split.findall("123456") == ["123456"]
    assert BPETokenizer([]).split.findall("123456") == ["123", "456"]


# --- encoding ---------------------------------------------------------------------------------------
@given(s=st.text(alphabet=EVERY_CHAR, max_size=40) | st.sampled_from(ODD_STRINGS))
@settings(max_examples=300, deadline=None)
def test_round_trip_any_unicode(s, shipped, small):
    for tok in (shipped, small):
        ids = tok.encode(s, disallowed_special=())
        assert tok.decode(ids) == s
        assert not set(ids) & set(tok.special_ids.values())


def test_round_trip_named_cases(shipped):
    for s in ODD_STRINGS:
        assert shipped.decode(shipped.encode(s)) == s, s
    assert shipped.encode("") == []
    assert shipped.encode("\ud800") == [0xED, 0xA0, 0x80]  # the surrogate's 3 bytes (surrogatepass)
    assert shipped.decode([0xE4]) == "\ufffd"  # half a character: replaced, never an exception
    assert shipped.decode([0xED, 0xA0, 0x80, 0xE4, 0x41]) == "\ud800\ufffdA"
    with pytest.raises(ValueError, match="out of range 0..4095"):
        shipped.decode([4096])


def reference_encode(tok, text):
    """GPT-2's encoder.py bpe(): work on byte strings, merge the lowest-ranked bigram each time."""
    ranks = {(tok.vocab[a], tok.vocab[b]): r for r, (a, b) in enumerate(tok.merges)}
    ids_of = {v: i for i, v in enumerate(tok.vocab) if i < 256 or i >= 260}
    out = []
    for chunk in tok.split.findall(text):
        word = [bytes([b]) for b in chunk.encode("utf-8", "surrogatepass")]
        while len(word) > 1:
            bigram = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float("inf")))
            if bigram not in ranks:
                break
            i = next(i for i in range(len(word) - 1) if (word[i], word[i + 1]) == bigram)
            word[i:i + 2] = [bigram[0] + bigram[1]]
        out.extend(ids_of[w] for w in word)
    return out


def test_encoding_matches_the_reference_bpe(shipped):
    text = SAMPLE + "".join(ODD_STRINGS) + " antidisestablishmentarianism, tokenization's 3.14159"
    for n in (300, 1024, 4096):
        tok = shipped.cut(n)
        assert tok.encode(text) == reference_encode(tok, text)


@given(s=st.text(alphabet="theoqu .\n", max_size=30))
@settings(max_examples=50, deadline=None)
def test_no_learned_pair_is_left_in_a_chunk(s, small):
    for chunk in small.split.findall(s):
        ids = small.encode_ordinary(chunk)
        assert not any(p in small.ranks for p in zip(ids, ids[1:]))
        assert ids == reference_encode(small, chunk)


def test_fast_merge_loop_equals_the_textbook_on_the_builtin_corpus(shipped):
    """Every distinct chunk of the corpus the shipped tokenizers were trained on, at two sizes."""
    chunks = set(shipped.split.findall(builtin_text()))
    for tok in (shipped, shipped.cut(512)):
        for chunk in chunks:
            data = to_bytes(chunk)
            assert tok.encode_chunk(data) == textbook_encode_chunk(tok.ranks, data), chunk


@given(s=st.text(alphabet=EVERY_CHAR, max_size=60) | st.text(alphabet="aab \n.é中", max_size=60))
@settings(max_examples=200, deadline=None)
def test_fast_merge_loop_equals_the_textbook_on_random_text(s, shipped, small):
    for tok in (shipped, small):
        for chunk in tok.split.findall(s):
            data = to_bytes(chunk)
            assert tok.encode_chunk(data) == textbook_encode_chunk(tok.ranks, data)


@st.composite
def merge_lists(draw):
    """Any valid merge list over the bytes a, b, c: each merge pairs bytes or earlier merges, so it
    need not be one that training would learn."""
    merges, ids = [], [97, 98, 99]
    for _ in range(draw(st.integers(0, 12))):
        pair = (draw(st.sampled_from(ids)), draw(st.sampled_from(ids)))
        if pair not in merges:
            ids.append(260 + len(merges))
            merges.append(pair)
    return merges


@given(merge_lists(), st.text(alphabet="abc", max_size=16))
@settings(max_examples=200, deadline=None)
def test_fast_merge_loop_equals_the_textbook_for_any_merge_list(merges, s):
    tok = BPETokenizer(merges)
    assert tok.encode_chunk(s.encode()) == textbook_encode_chunk(tok.ranks, s.encode())


def test_a_token_need_not_encode_to_itself():
    """Merges by hand: bc (260), then ab (261), then ab + c (262). The bytes of 262, "abc", encode to
    a, bc: bc ranks first and leaves no (ab, c) to merge. So a chunk is not looked up as a whole token
    (tiktoken's shortcut) but always merged: the shortcut holds for trained merges, not for every file."""
    tok = BPETokenizer([(98, 99), (97, 98), (261, 99)])
    assert tok.token_bytes(262) == b"abc"
    assert tok.encode("abc") == [97, 260] == textbook_encode_chunk(tok.ranks, b"abc")


def test_encode_batch_and_cache(shipped):
    texts = ["hello world", "", "the the the"]
    assert shipped.encode_batch(texts) == [shipped.encode(t) for t in texts]
    assert shipped.cache[" the"] == shipped.encode(" the")


def test_special_tokens_refused_unless_allowed(shipped):
    ids = shipped.special_ids
    assert ids == {"<pad>": 256, "<sep>": 257, "<bos>": 258, "<eos>": 259}
    assert (shipped.pad_id, shipped.sep_id, shipped.bos_id, shipped.eos_id) == (256, 257, 258, 259)
    with pytest.raises(ValueError, match="special token '<eos>'.*allowed_special"):
        shipped.encode("end<eos>")
    assert shipped.encode("a<eos>b<bos>", allowed_special={"<eos>", "<bos>"}) == \
        shipped.encode("a") + [259] + shipped.encode("b") + [258]
    assert shipped.encode("<pad><sep>", allowed_special="all") == [256, 257]
    with pytest.raises(ValueError, match="<pad>"):
        shipped.encode("<pad><eos>", allowed_special={"<eos>"})
    as_text = shipped.encode("a<eos>", disallowed_special=())
    assert 259 not in as_text and shipped.decode(as_text) == "a<eos>"
    assert shipped.decode(shipped.encode("x<eos>", allowed_special="all")) == "x<eos>"
    with pytest.raises(ValueError, match="not special tokens"):
        shipped.encode("x", allowed_special={"<mask>"})


def test_extra_special_tokens_follow_the_four(tmp_path):
    tok = BPETokenizer.train(SAMPLE + "<mask>", 270, special_tokens=[*SPECIAL_TOKENS, "<mask>"])
    assert tok.special_ids["<mask>"] == 260 and tok.first_merge_id == 261
    assert min(tok.ranks.values()) == 261 and tok.vocab_size == 270
    assert tok.encode("a<mask>", allowed_special="all") == [97, 260]
    assert tokenizers.load(tok.save(tmp_path / "m.json")).special_ids == tok.special_ids


def test_pieces_show_partial_characters_as_bytes(shipped):
    assert shipped.display("the dog.") == "the| do|g|."
    assert shipped.pieces("\ud800") == ["\\xed", "\\xa0", "\\x80"]
    assert "".join(shipped.pieces("中")) == "\\xe4\\xb8\\xad"


# --- files ------------------------------------------------------------------------------------------
def test_save_load_identity(tmp_path, small):
    path = small.save(tmp_path / "bpe.json")
    loaded = tokenizers.load(path)
    assert isinstance(loaded, BPETokenizer)
    assert loaded.to_dict() == small.to_dict() and loaded.hash() == small.hash()
    assert loaded.name == small.name == "bpe-custom-300"
    assert loaded.encode(SAMPLE) == small.encode(SAMPLE)
    assert json.loads(path.read_text())["pattern"] == GPT4_SPLIT_PATTERN


def test_shipped_file_and_names(shipped):
    assert shipped.hash() == tokenizers.load("bpe-4096").hash()
    assert len({tokenizers.load(f"bpe-{n}").hash() for n in SHIPPED_SIZES}) == 4
    ratio = len(SAMPLE.encode()) / len(shipped.encode(SAMPLE))
    assert ratio > 2  # a trained tokenizer, not bytes (4.2 bytes a token on its own corpus)
    for bad in ("bpe-4097", "bpe-100", "bpe-abc", "bpe-"):
        with pytest.raises(ValueError, match=r"bpe-N with N in 260\.\.4096"):
            tokenizers.load(bad)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("merges"), "missing field 'merges'"),
    (lambda d: d.update(merges=[[97, 98], [97]]), r"merge 1 is \[97\]; each merge must be a pair"),
    (lambda d: d.update(merges=[[97, 98], [261, 97]]), r"merge 1 \(\[261, 97\]\) uses id 261"),
    (lambda d: d.update(merges=[[97, 256]]), "uses id 256.*not special tokens"),
    (lambda d: d.update(merges=[[97, "b"]]), "merge 0 is"),
    (lambda d: d.update(merges=[[97, 98], [97, 98]]), "same pair twice"),
    (lambda d: d.update(pattern="(unclosed"), "'pattern' is not a valid regex"),
    (lambda d: d.update(specials=["<bos>"]), "'specials' must be a list of strings including"),
    (lambda d: d.update(type="wordpiece"), "unknown type 'wordpiece'"),
])
def test_malformed_file_names_what_is_wrong(tmp_path, small, change, message):
    d = small.to_dict()
    change(d)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(TokenizerFileError, match=message) as e:
        tokenizers.load(path)
    assert str(path) in str(e.value)


def test_truncated_file(tmp_path, small):
    path = small.save(tmp_path / "t.json")
    path.write_text(path.read_text()[:100])
    with pytest.raises(TokenizerFileError, match="not valid UTF-8 JSON"):
        tokenizers.load(path)


def test_specials_constant_is_the_layout():
    assert list(SPECIAL_TOKENS) == ["<pad>", "<sep>", "<bos>", "<eos>"]
