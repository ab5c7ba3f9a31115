"""The in-context language learning task (`icll`, data.InContextLanguages): deterministic per seed, every
string a walk of its own automaton, the scorer 1.0 for an oracle that knows the automaton and about the chance
rate for a uniform guesser, and both layouts."""
import numpy as np
import pytest
import torch

from config import model_config
from data import ENCODER_DECODER, LegalBatch, make_task
from evaluation import show_examples, task_scores
from modules import Output, build_model
from modules.base import IGNORE


class StandIn(torch.nn.Module):
    """A fake model: logits (B, T, V) from a function of the input ids."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, batch, state=None, last_only=False):
        return Output(self.fn(batch.x), None)


def test_deterministic_per_seed():
    task = make_task("icll")
    a, b = task.batch(8, np.random.default_rng(3)), task.batch(8, np.random.default_rng(3))
    c = task.batch(8, np.random.default_rng(4))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.legal, b.legal)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (8, task.seq_len) and isinstance(a, LegalBatch)


def test_every_string_is_a_walk_of_its_automaton():
    task = make_task("icll", task_len=6, task_vocab=12)
    prompts, answers, legal, automata = task.generate(32, np.random.default_rng(0))
    assert (prompts >= task.first).all() and prompts.shape == (32, 6)
    for p, a, ok, delta in zip(prompts, answers, legal, automata):
        assert 4 <= delta.shape[0] <= 8 and ((delta >= 0).sum(1) >= 1).all() and ((delta >= 0).sum(1) <= 3).all()
        strings = [list(p)] + [[]]
        for i, tok in enumerate(a):
            if tok == task.sep_symbol:
                assert not ok[i].any() and 1 <= len(strings[-1]) <= 6
                strings.append([])
            else:
                assert ok[i, tok], "the data itself must be legal"
                strings[-1].append(tok)
        for s in strings[:-1]:
            state = 0
            for tok in s:
                assert delta[state, tok - task.first] >= 0
                state = delta[state, tok - task.first]


def oracle_logits(task, automata):
    """Knows each row's automaton: parses the row and puts the highest logit on an allowed letter."""
    def fn(x):
        out = torch.zeros(*x.shape, task.tokenizer.vocab_size)
        for r, delta in enumerate(automata):
            s = 0
            for t, tok in enumerate(x[r].tolist()):
                if tok in (task.sep_symbol, task.tokenizer.sep_id):
                    s = 0
                elif tok >= task.first:
                    s = int(delta[s, tok - task.first])
                out[r, t, task.first + int(np.flatnonzero(delta[s] >= 0)[-1])] = 1.0
        return out
    return fn


def test_an_oracle_scores_1_and_a_uniform_guesser_chance():
    task = make_task("icll")
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    batches = [task.batch(16, rng, split=None) for _ in range(3)]  # any example: the draws of generate()
    rng.bit_generator.state = state
    automata = [task.generate(16, rng)[3] for _ in range(3)]  # the same draws as the batches
    for b, delta in zip(batches, automata):
        assert task_scores(StandIn(oracle_logits(task, delta)), task, [b])["val_legal"] == 1.0
    g = torch.Generator().manual_seed(0)
    letters = slice(task.first, task.first + task.task_vocab)

    def uniform(x):
        out = torch.full((*x.shape, task.tokenizer.vocab_size), -1e9)
        out[..., letters] = torch.rand(*x.shape, task.task_vocab, generator=g)
        return out
    s = task_scores(StandIn(uniform), task, batches)
    assert 0.1 < s["val_chance"] < 0.4
    assert abs(s["val_legal"] - s["val_chance"]) < 0.03, s
    for b, delta in zip(batches, automata):  # the greedy letter is scored: a preferred `|` neither helps nor hurts
        oracle = oracle_logits(task, delta)
        sure_to_end = StandIn(lambda x: oracle(x) + 5 * torch.nn.functional.one_hot(
            torch.full(x.shape, task.sep_symbol), task.tokenizer.vocab_size))
        assert task_scores(sure_to_end, task, [b])["val_legal"] == 1.0


def test_both_layouts_and_a_model_run_it():
    task = make_task("icll")
    b = task.batch(3, np.random.default_rng(0), ENCODER_DECODER)
    assert b.src.shape == (3, task.task_len) and b.y.shape == (3, task.STREAM)
    assert b.legal.shape == (*b.y.shape, task.tokenizer.vocab_size)
    d = task.batch(3, np.random.default_rng(0))
    assert (d.y[:, :task.task_len] == IGNORE).all() and (d.x[:, task.task_len] == task.tokenizer.sep_id).all()
    for arch in ("gpt", "memory_mosaics"):
        torch.manual_seed(0)
        m = build_model(model_config(arch, vocab_size=task.tokenizer.vocab_size, block_size=task.seq_len,
                                     n_layer=1, d_model=16, n_head=2))
        assert torch.isfinite(m(d).loss)
        s = task_scores(m, task, [d])
        assert set(s) == set(task.metrics()) and 0 <= s["val_legal"] <= 1
        assert "greedy" in show_examples(m, task, d, n=1)


def test_invalid_vocab_is_rejected():
    with pytest.raises(ValueError, match="task_vocab = 3"):
        make_task("icll", task_vocab=3)


def test_the_in_context_bigram_counter_predicts_the_letter_that_most_often_followed_in_this_example():
    task = make_task("icll")
    sep, bar = task.tokenizer.sep_id, task.sep_symbol
    a, b, c = (task.first + i for i in range(3))
    row = LegalBatch(x=torch.tensor([[sep, a, b, a, c, a, bar, a]]), y=None)
    # nothing seen after a token yet: the token itself; ties: the first seen; `|` is never counted nor guessed;
    # a string's start (after <sep> or `|`) counts as one token
    assert task.bigram_letters(row).tolist() == [[sep, a, b, b, c, b, a, b]]
    # it learns in context: on held-out examples it is right more often late in the answer than early
    batches = task.val_batches(8, 32, seed=0)
    hits, scored = zip(*(task.legal_hits(x, task.bigram_letters(x)) for x in batches))
    m = task.legal_metrics(list(hits), list(scored), batches)
    assert m["val_legal_last"] > m["val_legal_first"] + 0.03 and m["val_legal"] > 2 * m["val_chance"], m
