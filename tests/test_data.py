"""Tests of data.py: the built-in corpus, Corpus splits and batches, the .npy id cache, the downloader
(against an HTTP server on 127.0.0.1), and tasks with greedy accuracy (docs/design.md#data-and-tasks)."""
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import data
from evaluation import greedy_answers, task_scores
from data import (IGNORE, Copy, Corpus, DownloadError, Remote, builtin_text, corpus_name, download, load_text,
                  make_task)


def task_accuracy(model, batches, task=None):
    """(per-token, whole-answer) greedy accuracy through the task's own scorer."""
    s = task_scores(model, task or make_task("copy"), batches)
    return s["val_acc"], s["val_exact"]


ANSWER_TASKS = sorted(n for n, cls in data.TASKS.items() if make_task(n).n_classes == 0)
from tokenizers import CharTokenizer

ROOT = Path(__file__).resolve().parent.parent


# --- the built-in corpus ----------------------------------------------------------------------------
def test_builtin_corpus_is_substantial_english():
    text = builtin_text()
    assert len(text.encode("utf-8")) > 400_000
    words = text.lower().split()
    assert len(words) > 50_000
    common = sum(words.count(w) for w in ("the", "of", "and", "to", "is", "a"))
    assert common / len(words) > 0.08  # English prose, not a table of numbers
    assert sum(c.isascii() for c in text) / len(text) > 0.99
    assert builtin_text() == text  # the same text every time (sorted topics)


# --- Corpus: split and batches ----------------------------------------------------------------------
def stream(n=1000):
    return Corpus(np.arange(n, dtype=np.int64), CharTokenizer("ab"), name="arange")


def test_split_is_the_last_ten_percent_disjoint_and_complete():
    c = stream(1000)
    train, val = c.splits["train"], c.splits["val"]
    assert len(val) == 100 and len(train) == 900
    assert np.array_equal(np.concatenate([train, val]), np.arange(1000))
    assert val.min() > train.max()
    assert len(stream(5).splits["val"]) == 1  # never empty


def test_batch_targets_are_inputs_shifted_by_one_inside_the_split():
    c = stream(1000)
    rng = np.random.default_rng(0)
    for _ in range(20):
        b = c.batch("train", 8, 16, rng)
        assert b.x.shape == b.y.shape == (8, 16) and b.x.dtype == torch.int64
        assert torch.equal(b.x[:, 1:], b.y[:, :-1])
        assert torch.equal(b.y, b.x + 1)  # each window is a contiguous stretch of the stream
        assert int(b.y.max()) < 900  # no validation token in a training batch
    v = c.batch("val", 8, 16, rng)
    assert int(v.x.min()) >= 900 and torch.equal(v.y, v.x + 1)


def test_every_window_of_the_train_split_can_be_drawn():
    c = stream(300)
    rng = np.random.default_rng(1)
    xs = torch.cat([c.batch("train", 64, 16, rng).x for _ in range(100)])
    assert int(xs[:, 0].min()) == 0  # the first window
    ys = torch.cat([c.batch("train", 64, 16, rng).y for _ in range(100)])
    assert int(ys[:, -1].max()) == 269  # the last target of the train split (270 tokens)


def test_batches_are_reproducible_for_a_seeded_rng():
    c = stream(1000)
    a = [c.batch("train", 4, 8, np.random.default_rng(7)) for _ in range(2)]
    assert torch.equal(a[0].x, a[1].x)
    rng = np.random.default_rng(7)
    first, second = c.batch("train", 4, 8, rng), c.batch("train", 4, 8, rng)
    assert torch.equal(first.x, a[0].x) and not torch.equal(first.x, second.x)
    assert not torch.equal(c.batch("train", 4, 8, np.random.default_rng(8)).x, a[0].x)


def test_validation_batches_are_fixed_and_from_the_val_split():
    c = stream(1000)
    v1, v2 = c.val_batches(3, 4, 8, seed=5), c.val_batches(3, 4, 8, seed=5)
    assert len(v1) == 3
    for a, b in zip(v1, v2):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
        assert int(a.x.min()) >= 900
    assert not torch.equal(v1[0].x, v1[1].x)


def test_a_split_too_short_for_the_block_is_refused():
    with pytest.raises(ValueError, match="block_size"):
        stream(100).batch("val", 2, 10, np.random.default_rng(0))


# --- Corpus.load and the id cache -------------------------------------------------------------------
def test_builtin_corpus_loads_and_splits(tmp_path):
    c = Corpus.load("builtin", "char", cache_dir=tmp_path, progress=False)
    text = builtin_text()
    assert c.name == "builtin" and c.tokenizer.vocab_size == 5 + len(set(text))
    ids = np.concatenate([c.splits["train"], c.splits["val"]])
    assert len(ids) == len(text)
    assert c.tokenizer.decode(ids[:200].tolist()) == text[:200]
    assert len(c.splits["val"]) == int(len(text) * 0.1)


def test_ids_are_cached_and_the_second_load_does_not_tokenize(tmp_path, monkeypatch):
    f = tmp_path / "story.txt"
    f.write_text("once upon a time there was a tiny corpus. " * 50, encoding="utf-8")
    cache = tmp_path / "cache"
    first = Corpus.load(str(f), "char", cache_dir=cache, progress=False)
    files = list((cache / "ids").glob("*.npy"))
    assert len(files) == 1

    def no_encoding(self, text):
        raise AssertionError("encode called: the cache was not used")

    monkeypatch.setattr(CharTokenizer, "encode", no_encoding)
    second = Corpus.load(str(f), "char", cache_dir=cache, progress=False)
    for split in ("train", "val"):
        assert np.array_equal(first.splits[split], second.splits[split])
    assert second.name == "story"
    assert list((cache / "ids").glob("*.npy")) == files


def test_id_cache_is_keyed_by_text_and_tokenizer(tmp_path):
    f = tmp_path / "t.txt"
    cache = tmp_path / "cache"
    f.write_text("abcabcabcabc" * 20, encoding="utf-8")
    a = Corpus.load(str(f), "char", cache_dir=cache, progress=False)
    f.write_text("cbacbacbacba" * 20, encoding="utf-8")  # same length and alphabet, other text
    b = Corpus.load(str(f), "char", cache_dir=cache, progress=False)
    assert not np.array_equal(a.splits["train"], b.splits["train"])
    assert b.tokenizer.decode(b.splits["train"][:3].tolist()) == "cba"
    other = CharTokenizer.train("abcxyz")
    c = Corpus.load(str(f), other, cache_dir=cache, progress=False)  # a tokenizer instance: its own key
    assert c.tokenizer is other and c.tokenizer.decode(c.splits["train"][:3].tolist()) == "cba"
    assert len(list((cache / "ids").glob("*.npy"))) == 3


def test_load_text_errors(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        load_text(str(tmp_path / "missing.txt"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="UTF-8") as e:
        load_text(str(bad))
    assert str(bad) in str(e.value)


def test_cache_location_follows_mnemo_cache(tmp_path):
    env = {**os.environ, "MNEMO_CACHE": str(tmp_path / "elsewhere")}
    out = subprocess.run([sys.executable, "-c", "import data; print(data.CACHE)"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "elsewhere")


# --- the downloader, against a server on loopback ---------------------------------------------------
@pytest.fixture
def server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, counting requests; shut down at the end."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{srv.server_port}", hits=hits)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def served(server, name="corpus.txt", size=200_000):
    body = ("All the world's a stage, and all the men and women merely players.\n" * (size // 66 + 1))[:size]
    blob = body.encode("utf-8")
    (server.root / name).write_bytes(blob)
    return blob, hashlib.sha256(blob).hexdigest()


def test_good_download_lands_whole_with_the_right_checksum(server, tmp_path):
    blob, sha = served(server)
    cache = tmp_path / "cache"
    path = download(Remote(f"{server.url}/corpus.txt", sha, "corpus.txt"), cache_dir=cache, progress=False)
    assert path == cache / "corpus.txt"
    assert path.read_bytes() == blob and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert [p.name for p in cache.iterdir()] == ["corpus.txt"]  # no temporary file left behind
    assert server.hits == ["/corpus.txt"]


def test_checksum_mismatch_raises_naming_both_hashes_and_leaves_no_file(server, tmp_path):
    blob, sha = served(server)
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        download(Remote(f"{server.url}/corpus.txt", wrong, "corpus.txt"), cache_dir=cache, progress=False)
    assert wrong in str(e.value) and sha in str(e.value)
    assert not (cache / "corpus.txt").exists()
    assert not cache.exists() or list(cache.iterdir()) == []


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_url_raises_a_helpful_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    url = f"http://127.0.0.1:{closed_port()}/corpus.txt"
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as e:
        download(Remote(url, "0" * 64, "corpus.txt"), cache_dir=cache, progress=False)
    msg = str(e.value)
    assert url in msg  # what failed
    assert str(cache / "corpus.txt") in msg and "builtin" in msg  # what to do instead
    assert not (cache / "corpus.txt").exists()


def test_http_error_raises_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(Remote(f"{server.url}/missing.txt", "0" * 64, "m.txt"), cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "m.txt").exists()


def test_cached_file_is_not_downloaded_again(server, tmp_path):
    blob, sha = served(server)
    remote = Remote(f"{server.url}/corpus.txt", sha, "corpus.txt")
    first = download(remote, cache_dir=tmp_path, progress=False)
    (server.root / "corpus.txt").unlink()  # the server no longer has it
    second = download(remote, cache_dir=tmp_path, progress=False)
    assert first == second and second.read_bytes() == blob
    assert server.hits == ["/corpus.txt"]


def test_named_remote_corpus_goes_through_the_downloader(server, tmp_path, monkeypatch):
    blob, sha = served(server, "tiny.txt", 5_000)
    monkeypatch.setitem(data.REMOTES, "tinystories", Remote(f"{server.url}/tiny.txt", sha, "tiny.txt"))
    assert load_text("tinystories", cache_dir=tmp_path, progress=False) == blob.decode("utf-8")
    c = Corpus.load("tinystories", "char", cache_dir=tmp_path, progress=False)
    assert c.name == "tinystories" and len(c.splits["train"]) + len(c.splits["val"]) == 5_000
    assert server.hits == ["/tiny.txt"]  # downloaded once, then read from the cache


def test_a_cached_file_is_verified_too(server, tmp_path):
    """A file put into the cache by hand (or left half-written) is checked like a download."""
    blob, sha = served(server)
    remote = Remote(f"{server.url}/corpus.txt", sha, "corpus.txt")
    (tmp_path / "corpus.txt").write_bytes(blob[:1000])  # a partial copy put there by hand
    with pytest.raises(DownloadError) as e:
        download(remote, cache_dir=tmp_path, progress=False)
    msg = str(e.value)
    assert str(tmp_path / "corpus.txt") in msg and sha in msg and hashlib.sha256(blob[:1000]).hexdigest() in msg
    assert "Delete it" in msg and server.hits == []
    (tmp_path / "corpus.txt").write_bytes(blob)  # the right file by hand: used without a download
    assert download(remote, cache_dir=tmp_path, progress=False).read_bytes() == blob and server.hits == []


def test_an_offline_corpus_is_one_clear_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    import train
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    url = f"http://127.0.0.1:{closed_port()}/input.txt"
    monkeypatch.setitem(data.REMOTES, "tinystories", Remote(url, "0" * 64, "TinyStories-valid.txt"))
    with pytest.raises(SystemExit) as e:
        train.main(["--data", "tinystories", "--out", str(tmp_path / "run"), "--progress", "false"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("train.py: error: could not download")
    assert "--data builtin" in err and len(err.splitlines()) <= 3


@pytest.mark.parametrize("tokenizer", ["char", "bpe-512"])
def test_a_corpus_that_mentions_special_tokens_is_read_as_text(tmp_path, tokenizer):
    """This README, any text about tokenizers, mnemo's own source: `<eos>` in a corpus is five characters."""
    text = "Generation stops at <eos>; prompts start with <bos>, pad with <pad>, split at <sep>.\n" * 40
    f = tmp_path / "about_tokens.txt"
    f.write_text(text)
    c = Corpus.load(str(f), tokenizer, cache_dir=tmp_path, progress=False)
    ids = np.concatenate([c.splits["train"], c.splits["val"]]).tolist()
    assert c.tokenizer.decode(ids) == text
    assert not set(ids) & set(c.tokenizer.special_ids.values())  # no special token came from the text


def test_a_char_tokenizer_of_a_text_with_special_strings_keeps_them_apart():
    tok = CharTokenizer.train("say <eos> here")
    ids = tok.encode("<eos>")
    assert len(ids) == 5 and tok.eos_id not in ids and tok.decode(ids) == "<eos>"
    assert tok.decode([tok.eos_id]) == "<eos>"  # the special token itself still decodes as its name


def test_shakespeare_ships_with_the_repository_and_is_checked(tmp_path, monkeypatch):
    """tiny-shakespeare is read offline from data/, never from the cache or the network; an edited copy is
    refused with the file, both hashes and how to restore it."""
    monkeypatch.setattr(data, "CACHE", tmp_path / "no-cache")
    text = load_text("shakespeare")
    assert len(text) == 1_115_394 and text.startswith("First Citizen:") and not (tmp_path / "no-cache").exists()
    assert corpus_name("shakespeare") == "shakespeare"
    path, sha = data.SHIPPED["shakespeare"]
    bad = tmp_path / "tinyshakespeare.txt"
    bad.write_text(text[:1000])
    monkeypatch.setitem(data.SHIPPED, "shakespeare", (bad, sha))
    with pytest.raises(DownloadError) as e:
        load_text("shakespeare")
    assert str(bad) in str(e.value) and sha in str(e.value) and "git checkout" in str(e.value)


def test_shipped_remotes_are_pinned():
    for name, r in data.REMOTES.items():
        assert r.url.startswith("https://"), name
        assert len(r.sha256) == 64 and int(r.sha256, 16) >= 0, name


# --- tasks ------------------------------------------------------------------------------------------
def test_copy_examples_are_deterministic_per_seed_and_correct():
    task = make_task("copy", task_len=6, task_vocab=10)
    assert isinstance(task, Copy)
    p1, a1 = task.examples(50, np.random.default_rng(3))
    p2, a2 = task.examples(50, np.random.default_rng(3))
    p3, _ = task.examples(50, np.random.default_rng(4))
    assert np.array_equal(p1, p2) and np.array_equal(a1, a2) and not np.array_equal(p1, p3)
    assert p1.shape == (50, 6) and a1.shape == (50, 12)
    assert np.array_equal(a1, np.concatenate([p1, p1], axis=1))  # the answer is the prompt twice
    assert p1.min() >= task.first and p1.max() < task.first + 10
    assert len(np.unique(p1)) == 10  # every symbol is used
    tok = task.tokenizer
    assert tok.pad_id == 0 and tok.sep_id == 1 and tok.vocab_size == task.first + 10
    assert tok.decode(p1[0].tolist()).isalnum()


def test_task_batch_layout_and_loss_mask_cover_exactly_the_answer():
    task = make_task("copy", task_len=5, task_vocab=8)
    b = task.batch(16, np.random.default_rng(0))
    P, A = 5, 10
    assert b.x.shape == b.y.shape == (16, P + A) == (16, task.seq_len)
    mask = b.y != IGNORE
    assert mask.tolist() == [[False] * P + [True] * A] * 16
    assert (b.x[:, P] == task.tokenizer.sep_id).all()
    assert torch.equal(b.y[:, P:], torch.cat([b.x[:, :P], b.x[:, :P]], 1))  # targets: the prompt twice
    assert torch.equal(b.x[:, P + 1:], b.y[:, P:-1])  # teacher forcing: the input is the target shifted
    v1, v2 = task.val_batches(2, 4, seed=9), task.val_batches(2, 4, seed=9)
    assert torch.equal(v1[0].x, v2[0].x) and not torch.equal(v1[0].x, v1[1].x)


def test_task_errors():
    with pytest.raises(ValueError, match="copy"):
        make_task("sort")
    with pytest.raises(ValueError, match="task_vocab"):
        make_task("copy", task_vocab=100)


Out = namedtuple("Out", "logits loss state")


class Recomputed(nn.Module):
    """The part of the model contract that greedy decoding uses, for a stand-in that carries no state."""

    def init_state(self, batch_size, source=None):
        return None

    def next_logits(self, ids, state=None):
        return self(ids).logits[:, -1]


class StandIn(Recomputed):
    """A 'model' whose next-token choice is a rule on the ids it sees (only the last position matters)."""

    def __init__(self, rule, vocab):
        super().__init__()
        self.rule, self.vocab = rule, vocab

    def forward(self, seq):
        logits = torch.zeros(seq.shape[0], seq.shape[1], self.vocab)
        nxt = self.rule(seq)  # (B,)
        logits[torch.arange(seq.shape[0]), -1, nxt] = 1.0
        return Out(logits, None, None)


def copy_oracle(P):
    """Knows the copy task: after the <sep> at index P, answer token k is prompt[k % P]."""
    def rule(seq):
        k = seq.shape[1] - 1 - P
        return seq[:, k % P]
    return rule


def test_oracle_is_perfect_and_constant_model_is_at_chance():
    task = make_task("copy", task_len=5, task_vocab=10)
    batches = task.val_batches(20, 32, seed=0)
    oracle = StandIn(copy_oracle(5), task.tokenizer.vocab_size)
    assert task_accuracy(oracle, batches) == (1.0, 1.0)
    const = StandIn(lambda seq: torch.full((seq.shape[0],), task.first), task.tokenizer.vocab_size)
    acc, exact = task_accuracy(const, batches)
    assert abs(acc - 0.1) < 0.02 and exact == 0.0


def test_accuracy_is_greedy_without_teacher_forcing():
    """A model that gets answer token 0 wrong and then copies its own first copy: greedy decoding carries the
    error into the second copy (2 of 10 wrong); teacher forcing would have hidden it (1 of 10)."""
    P, task = 5, make_task("copy", task_len=5, task_vocab=10)
    V = task.tokenizer.vocab_size

    def rule(seq):
        k = seq.shape[1] - 1 - P
        if k == 0:
            return (seq[:, 0] - task.first + 1) % 10 + task.first  # wrong on purpose
        if k < P:
            return seq[:, k]
        return seq[:, P + 1 + (k - P)]  # its own earlier output

    m = StandIn(rule, V)
    batches = task.val_batches(3, 8, seed=1)
    acc, exact = task_accuracy(m, batches)
    assert acc == pytest.approx(0.8) and exact == 0.0
    pred, true = greedy_answers(m, batches[0])
    assert pred.shape == true.shape == (8, 10)
    assert ((pred != true).sum(1) == 2).all()
    assert ((pred != true)[:, [0, 5]]).all()


def test_task_accuracy_restores_training_mode():
    task = make_task("copy", task_len=3, task_vocab=4)
    m = StandIn(copy_oracle(3), task.tokenizer.vocab_size).train()
    task_accuracy(m, task.val_batches(1, 2, seed=0))
    assert m.training
    task_accuracy(m.eval(), task.val_batches(1, 2, seed=0))
    assert not m.training


class Lookup(Recomputed):
    """Knows the answer of every example it was shown: a perfect model of any task, for scoring."""

    def __init__(self, batches, vocab):
        super().__init__()
        self.P = int((batches[0].y[0] == IGNORE).sum())
        self.vocab = vocab
        self.answers = {tuple(x[:self.P].tolist()): y[self.P:].tolist() for b in batches for x, y in zip(b.x, b.y)}

    def forward(self, seq):
        k = seq.shape[1] - 1 - self.P  # index of the answer token that comes next
        logits = torch.zeros(seq.shape[0], seq.shape[1], self.vocab)
        for i, row in enumerate(seq):
            logits[i, -1, self.answers[tuple(row[:self.P].tolist())][k]] = 1.0
        return Out(logits, None, None)


@pytest.mark.parametrize("name", ANSWER_TASKS)
def test_every_task_batches_consistently(name):
    """Whatever the task: seeded, fixed lengths, `prompt <sep> answer` with the loss on the answer only, and
    every symbol inside the task's alphabet (no <unk>, no special token in a prompt or an answer)."""
    task = make_task(name)
    tok = task.tokenizer
    assert tok.pad_id == 0 and tok.sep_id == 1
    b1, b2 = task.batch(64, np.random.default_rng(0)), task.batch(64, np.random.default_rng(0))
    assert torch.equal(b1.x, b2.x) and torch.equal(b1.y, b2.y)
    assert not torch.equal(b1.x, task.batch(64, np.random.default_rng(1)).x)
    assert b1.x.shape == b1.y.shape == (64, task.seq_len)
    mask = b1.y != IGNORE
    P = int((~mask[0]).sum())
    assert P >= 1 and mask.tolist() == [[False] * P + [True] * (task.seq_len - P)] * 64
    assert (b1.x[:, P] == tok.sep_id).all() and (b1.x[:, :P] != tok.sep_id).all()
    assert torch.equal(b1.x[:, P + 1:], b1.y[:, P:-1])
    symbols = torch.cat([b1.x[:, :P], b1.y[:, P:]], 1)
    assert (symbols >= task.first).all() and (symbols < tok.vocab_size).all(), "a symbol outside the alphabet"
    assert len(set(map(tuple, b1.x[:, :P].tolist()))) > 32  # examples vary


@pytest.mark.parametrize("name", ANSWER_TASKS)
def test_every_task_scores_a_perfect_model_1_and_a_hopeless_one_0(name):
    task = make_task(name)
    batches = task.val_batches(2, 16, seed=0)
    V = task.tokenizer.vocab_size
    assert task_accuracy(Lookup(batches, V), batches) == (1.0, 1.0)
    pad = StandIn(lambda seq: torch.full((seq.shape[0],), task.tokenizer.pad_id), V)
    assert task_accuracy(pad, batches) == (0.0, 0.0)
