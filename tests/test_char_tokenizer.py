"""Tests of the character tokenizer (tokenizers/character.py) and the file format it shares with BPE
(tokenizers/base.py; docs/design.md#tokenizers)."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tokenizers
from data import builtin_text
from tokenizers import SPECIAL_TOKENS, CharTokenizer, Tokenizer, TokenizerFileError

TEXT = builtin_text()
TOK = CharTokenizer.train(TEXT)
ALPHABET = sorted(set(TEXT))
UNSEEN = "\u2603\u00e9\U0001f600\x00"  # snowman, é, an emoji, NUL: none is in the built-in corpus


def test_unseen_characters_are_really_unseen():
    assert not set(UNSEEN) & set(ALPHABET)


@given(st.text(alphabet=ALPHABET, max_size=200))
@settings(max_examples=300, deadline=None)
def test_round_trip_over_the_training_alphabet(s):
    ids = TOK.encode(s)
    assert len(ids) == len(s)
    assert TOK.decode(ids) == s
    assert all(5 <= i < TOK.vocab_size for i in ids)  # never a special or <unk>


def test_empty_string():
    assert TOK.encode("") == []
    assert TOK.decode([]) == ""


@given(st.text(max_size=50))
@settings(max_examples=200, deadline=None)
def test_any_text_encodes_and_unknown_characters_decode_to_the_replacement_character(s):
    want = "".join(c if c in TOK.stoi else "\ufffd" for c in s)
    assert TOK.decode(TOK.encode(s)) == want


def test_unknown_characters_map_to_unk():
    unk = TOK.unk_id
    assert unk == 4 and TOK.specials[unk] == "<unk>"
    ids = TOK.encode("a" + UNSEEN + "b")
    assert ids[1:-1] == [unk] * len(UNSEEN)
    assert TOK.decode(ids) == "a" + "\ufffd" * len(UNSEEN) + "b"


def test_special_ids_are_0_to_3_in_order():
    assert SPECIAL_TOKENS == ("<pad>", "<sep>", "<bos>", "<eos>")
    assert TOK.special_ids == {"<pad>": 0, "<sep>": 1, "<bos>": 2, "<eos>": 3}
    assert (TOK.pad_id, TOK.sep_id, TOK.bos_id, TOK.eos_id) == (0, 1, 2, 3)
    assert TOK.decode([2, 3]) == "<bos><eos>"
    assert "<unk>" not in TOK.special_ids  # the fallback is not one of the four shared specials


def test_vocabulary_is_specials_unk_then_characters_in_code_point_order():
    assert TOK.vocab_size == 5 + len(ALPHABET)
    assert [TOK.decode([i]) for i in range(5, TOK.vocab_size)] == ALPHABET
    assert CharTokenizer.train("cabbage").encode("abc") == CharTokenizer.train("bacegab").encode("abc")
    assert CharTokenizer.train("cab").encode("abc") == [5, 6, 7]


def test_out_of_range_ids_are_refused():
    for bad in (TOK.vocab_size, TOK.vocab_size + 10, -1):
        with pytest.raises(ValueError, match=f"token id {bad} is out of range 0..{TOK.vocab_size - 1}"):
            TOK.decode([5, bad])


def test_generated_text_leaves_out_pad_and_bos():
    s = TOK.special_ids
    ids = [s["<bos>"], *TOK.encode("ab"), s["<pad>"], *TOK.encode("c"), s["<sep>"], s["<eos>"]]
    assert TOK.decode_generated(ids) == "abc<sep><eos>"
    assert TOK.decode(ids).startswith("<bos>ab<pad>")  # decode itself shows every token


def test_repeated_characters_are_refused():
    with pytest.raises(ValueError):
        CharTokenizer("abca")


def test_display_separates_the_pieces():
    t = CharTokenizer.train("hello world")
    assert t.display("hello") == "h|e|l|l|o"
    assert t.display("he lo", sep="·") == "h·e· ·l·o"
    assert t.display("hé") == "h|\ufffd"
    assert t.pieces("hello") == list("hello")
    assert t.display("") == ""


# --- save and load ----------------------------------------------------------------------------------
def test_save_load_identity(tmp_path):
    path = TOK.save(tmp_path / "char.json")
    back = Tokenizer.load(path)
    assert type(back) is CharTokenizer
    assert back.hash() == TOK.hash() and back.vocab_size == TOK.vocab_size and back.name == TOK.name
    sample = TEXT[:5000] + UNSEEN
    assert back.encode(sample) == TOK.encode(sample)
    assert CharTokenizer.load(path).hash() == TOK.hash()
    assert tokenizers.load(path).hash() == TOK.hash()
    assert tokenizers.load(str(path)).hash() == TOK.hash()
    d = json.loads(path.read_text(encoding="utf-8"))  # readable JSON, never pickle
    assert d["type"] == "char" and d["chars"] == "".join(ALPHABET)


def test_names_are_kept_and_hash_tells_tokenizers_apart(tmp_path):
    a = CharTokenizer.train("abc", name="task-copy")
    back = Tokenizer.load(a.save(tmp_path / "t.json"))
    assert back.name == "task-copy"
    assert CharTokenizer.train("abc").hash() != CharTokenizer.train("abd").hash()
    assert CharTokenizer.train("abc").hash() == CharTokenizer.train("cba").hash()


def test_save_writes_atomically_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "t.json"
    CharTokenizer.train("ab").save(path)
    CharTokenizer.train("xyz").save(path)
    assert Tokenizer.load(path).vocab_size == 8
    assert [p.name for p in path.parent.iterdir()] == ["t.json"]  # no temporary file left behind


GOOD = {"type": "char", "name": "char", "specials": ["<pad>", "<sep>", "<bos>", "<eos>", "<unk>"], "chars": "abc"}


@pytest.mark.parametrize("content, says", [
    ("{not json", "JSON"),
    (b"\xff\xfe\x00garbage", "JSON"),
    ("[1, 2, 3]", "type"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "type"}), "type"),
    (json.dumps({**GOOD, "type": "wordpiece"}), "wordpiece"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "chars"}), "chars"),
    (json.dumps({**GOOD, "chars": ["a", "b"]}), "chars"),
    (json.dumps({**GOOD, "chars": "aba"}), "repeat"),
    (json.dumps({**GOOD, "specials": ["<eos>", "<bos>", "<sep>", "<pad>", "<unk>"]}), "special"),
    ("", "JSON"),
], ids=["not-json", "not-utf8", "not-an-object", "no-type", "unknown-type", "no-chars", "chars-not-str",
        "repeated-chars", "wrong-specials", "empty"])
def test_malformed_files_raise_tokenizer_file_error_naming_the_file(tmp_path, content, says):
    path = tmp_path / "broken_tok.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    for load in (Tokenizer.load, tokenizers.load):
        with pytest.raises(TokenizerFileError) as e:
            load(path)
        assert str(path) in str(e.value)
        assert says.lower() in str(e.value).lower(), str(e.value)


def test_wrong_tokenizer_type_for_the_class(tmp_path):
    path = tmp_path / "c.json"
    CharTokenizer.train("abc").save(path)
    from tokenizers.bpe import BPETokenizer
    with pytest.raises(TokenizerFileError, match="char") as e:
        BPETokenizer.load(path)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(TokenizerFileError) as e:
        Tokenizer.load(path)
    assert str(path) in str(e.value)


def test_tokenizer_file_error_is_a_value_error():
    assert issubclass(TokenizerFileError, ValueError)
