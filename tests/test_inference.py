"""Tests of inference.py: cached vs recomputed generation, the sampling filters, seeds, eos, batching of
prompts of different lengths, beam search, and the command line."""
import itertools
import warnings

import pytest
import torch
from torch import nn

import data
import inference
from config import TrainConfig, model_config
from inference import beam_search, filter_logits, generate, generate_ids, next_token
from modules import CAUSAL, build_model
from modules.base import Output
from tokenizers import CharTokenizer

TOK = CharTokenizer.train("abcdefghij xyhelo")
V = TOK.vocab_size
WINDOW = 16


def make(pos="rope", seed=0, vocab=V, **kw):
    torch.manual_seed(seed)
    m = build_model(model_config("gpt", vocab_size=vocab, n_layer=2, d_model=32, n_head=4, block_size=WINDOW,
                                 pos=pos, **kw))
    with torch.no_grad():  # larger random weights: peaky, varied next-token distributions
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return m.eval()


def prompt_ids(b=2, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, V, (b, t), generator=g)


# --- cache vs recomputation -------------------------------------------------------------------------
@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "relative"])
def test_cached_and_uncached_greedy_agree_within_the_window(pos):
    m = make(pos, n_kv_head=2)
    ids = prompt_ids()
    a = generate_ids(m, ids, WINDOW - 5, temperature=0, use_cache=True)
    b = generate_ids(m, ids, WINDOW - 5, temperature=0, use_cache=False)
    assert a.shape == (2, WINDOW)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :5], ids)
    assert len(set(a[:, 5:].flatten().tolist())) > 2  # not a degenerate model that always says the same
    # sampling (same seed) goes through the same distributions, so it agrees too, on varied sequences
    a = generate_ids(m, ids, WINDOW - 5, temperature=3.0, use_cache=True, generator=torch.Generator().manual_seed(0))
    b = generate_ids(m, ids, WINDOW - 5, temperature=3.0, use_cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and len(set(a[:, 5:].flatten().tolist())) > 5


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "relative"])
def test_generation_beyond_the_window_runs_with_and_without_cache(pos):
    m = make(pos)
    ids = prompt_ids()
    n = 3 * WINDOW
    a = generate_ids(m, ids, n, temperature=0, use_cache=True)
    b = generate_ids(m, ids, n, temperature=0, use_cache=False)
    for out in (a, b):
        assert out.shape == (2, 5 + n)
        assert 0 <= int(out.min()) and int(out.max()) < V
    # identical as long as the whole sequence fits the window
    k = WINDOW - 5 + 1
    assert torch.equal(a[:, :5 + k], b[:, :5 + k])


def test_a_prompt_longer_than_the_window(pos="learned"):
    m = make(pos)
    ids = prompt_ids(t=WINDOW + 7)
    for cache in (True, False):
        out = generate_ids(m, ids, 5, temperature=0, use_cache=cache)
        assert out.shape == (2, WINDOW + 12)
    # the first new token sees exactly the last window of the prompt
    with torch.no_grad():
        first = m(ids[:, -WINDOW:]).logits[:, -1].argmax(-1)
    assert torch.equal(generate_ids(m, ids, 1, temperature=0)[:, -1], first)


class StandIn(nn.Module):
    """The part of the model contract that generation uses, for hand-written stand-ins without a state."""
    capabilities = frozenset({CAUSAL})

    def init_state(self, batch_size, source=None):
        return None

    def next_logits(self, ids, state=None):
        return self(ids, state).logits[:, -1]


class SumModel(StandIn):
    """Next token = (sum of every id it was given) mod V: the answer needs the whole context. It carries no
    streaming state (init_state returns None), like any model that does not stream."""

    def __init__(self, window):
        super().__init__()
        self.max_context = window

    def forward(self, x, state=None):
        nxt = x.sum(1) % V
        logits = torch.zeros(x.shape[0], x.shape[1], V)
        logits[torch.arange(x.shape[0]), -1, nxt] = 1.0
        return Output(logits, None, state)


@pytest.mark.parametrize("window", [None, 8])
def test_a_model_without_streaming_state_is_recomputed_even_when_the_cache_is_asked_for(window):
    m = SumModel(window)
    ids = prompt_ids()
    want = generate_ids(m, ids, 12, temperature=0, use_cache=False)
    assert torch.equal(generate_ids(m, ids, 12, temperature=0, use_cache=True), want)


# --- sampling filters -------------------------------------------------------------------------------
PROBS = torch.tensor([0.05, 0.5, 0.15, 0.3])  # sorted: 0.5 (1), 0.3 (3), 0.15 (2), 0.05 (0)


def kept(logits):
    return set(torch.isfinite(logits).nonzero()[:, -1].tolist())


def test_top_k_keeps_exactly_the_k_largest():
    torch.manual_seed(0)
    logits = torch.randn(3, 20)
    for k in (1, 5, 19, 20, 50):
        out = filter_logits(logits, top_k=k)
        for r in range(3):
            assert kept(out[r]) == set(logits[r].topk(min(k, 20)).indices.tolist())
            torch.testing.assert_close(out[r][torch.isfinite(out[r])], logits[r][torch.isfinite(out[r])])


@pytest.mark.parametrize("p, keep", [(0.01, {1}), (0.5, {1}), (0.6, {1, 3}), (0.79, {1, 3}), (0.81, {1, 3, 2}),
                                     (0.96, {0, 1, 2, 3}), (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_smallest_set_reaching_p(p, keep):
    out = filter_logits(PROBS.log()[None], top_p=p)
    assert kept(out[0]) == keep


def test_top_p_comes_after_temperature():
    # temperature 10 flattens (0.5, 0.3, 0.15, 0.05) to about (0.275, 0.262, 0.244, 0.219): 3 tokens reach 0.6
    assert kept(filter_logits(PROBS.log()[None], temperature=10.0, top_p=0.6)[0]) == {1, 3, 2}


@pytest.mark.parametrize("min_p, keep", [(0.5, {1, 3}), (0.2, {1, 3, 2}), (0.05, {0, 1, 2, 3}), (0.9, {1})])
def test_min_p_keeps_tokens_near_the_best(min_p, keep):
    assert kept(filter_logits(PROBS.log()[None], min_p=min_p)[0]) == keep


def test_filters_work_row_by_row():
    logits = torch.stack([PROBS.log(), PROBS.flip(0).log()])
    out = filter_logits(logits, top_k=2)
    assert kept(out[0]) == {1, 3} and kept(out[1]) == {2, 0}
    out = filter_logits(logits, top_p=0.6)
    assert kept(out[0]) == {1, 3} and kept(out[1]) == {2, 0}


def test_temperature_scales_and_zero_is_argmax():
    torch.manual_seed(0)
    logits = torch.randn(4, 10)
    torch.testing.assert_close(filter_logits(logits, temperature=2.0), logits / 2)
    assert torch.equal(next_token(logits, 0, None, None, None, None), logits.argmax(-1, keepdim=True))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(next_token(logits, 1.0, 1, None, None, g), logits.argmax(-1, keepdim=True))  # top-1


def test_sampling_follows_the_filtered_distribution():
    g = torch.Generator().manual_seed(0)
    logits = PROBS.log()[None].expand(4000, 4)
    draws = next_token(logits, 1.0, None, None, None, g).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, PROBS, atol=0.03, rtol=0)
    draws = next_token(logits, 1.0, 2, None, None, g).flatten()
    assert set(draws.tolist()) == {1, 3}
    assert abs((draws == 1).float().mean().item() - 0.5 / 0.8) < 0.03  # renormalised over the two kept


# --- seeds, eos, batching ---------------------------------------------------------------------------
def test_sampling_with_a_seed_is_reproducible():
    m = make()
    a = generate(m, TOK, "abc", max_new_tokens=20, temperature=1.0, seed=3)
    torch.manual_seed(99)  # the global RNG does not matter
    b = generate(m, TOK, "abc", max_new_tokens=20, temperature=1.0, seed=3)
    c = generate(m, TOK, "abc", max_new_tokens=20, temperature=1.0, seed=4)
    assert a == b and a != c
    assert generate(m, TOK, "abc", max_new_tokens=20, temperature=1.0, top_k=1, seed=5) == \
        generate(m, TOK, "abc", max_new_tokens=20, temperature=0)


class Bigram(StandIn):
    """Deterministic next token from the last token: a -> b -> <eos> -> c -> a."""
    max_context = None

    def __init__(self):
        super().__init__()
        a, b, c = TOK.encode("abc")
        self.table = torch.full((V, V), -10.0)
        for x, y in [(a, b), (b, TOK.eos_id), (TOK.eos_id, c), (c, a)]:
            self.table[x, y] = 10.0
        self.calls = 0

    def forward(self, x, state=None):
        self.calls += 1
        return Output(self.table[x], None, state)


def test_generation_stops_at_eos():
    m = Bigram()
    assert generate(m, TOK, "a", max_new_tokens=10, temperature=0) == "b"
    assert generate(m, TOK, "c", max_new_tokens=10, temperature=0) == "ab"
    full = generate(m, TOK, "a", max_new_tokens=7, temperature=0, stop_at_eos=False)
    assert full == "b<eos>cab<eos>c"
    ids = torch.tensor([TOK.encode("a"), TOK.encode("c")])
    out = generate_ids(m, ids, 10, temperature=0, eos_id=TOK.eos_id)
    a, b, c = TOK.encode("abc")
    # the first row ended early and is padded with eos; generation stopped once both rows ended
    assert out.tolist() == [[a, b, TOK.eos_id, TOK.eos_id], [c, a, b, TOK.eos_id]]


@pytest.mark.filterwarnings("ignore::inference.UnknownCharactersWarning")  # "hello world" has letters TOK lacks
def test_batched_prompts_of_different_lengths_equal_one_by_one():
    m = make()
    prompts = ["ab", "hello", "c", "xy", "hello world", "ij"]
    batched = generate(m, TOK, prompts, max_new_tokens=6, temperature=0)
    assert isinstance(batched, list) and len(batched) == len(prompts)
    single = [generate(m, TOK, p, max_new_tokens=6, temperature=0) for p in prompts]
    assert batched == single and all(isinstance(s, str) for s in single)
    assert len(set(single)) > 2  # the prompts lead to different continuations
    assert generate(m, TOK, [], max_new_tokens=3) == []


def test_an_empty_prompt_starts_from_bos():
    m = make()
    with torch.no_grad():
        first = m(torch.tensor([[TOK.bos_id]])).logits[0, -1].argmax().item()
    out = generate(m, TOK, "", max_new_tokens=1, temperature=0, stop_at_eos=False)
    assert out == TOK.decode([first])


# --- beam search ------------------------------------------------------------------------------------
def logprob(m, ids, prompt_len):
    """Total log-probability of ids[prompt_len:] given ids[:prompt_len] (one row)."""
    with torch.no_grad():
        lp = m(ids[None]).logits[0].float().log_softmax(-1)
    return sum(lp[t - 1, ids[t]].item() for t in range(prompt_len, len(ids)))


def test_beam_search_with_one_beam_is_greedy():
    m = make()
    ids = prompt_ids(b=1)
    greedy = generate_ids(m, ids, 8, temperature=0, use_cache=False)
    for lp in (0.0, 1.0):
        assert torch.equal(beam_search(m, ids, beams=1, max_new_tokens=8, length_penalty=lp), greedy)


def test_beam_search_finds_the_most_likely_sequence_when_it_is_wide_enough():
    vocab, n = 5, 3
    m = make(vocab=vocab, seed=1)
    ids = torch.tensor([[1, 4, 2]])
    best = max((torch.tensor([1, 4, 2, *tail]) for tail in itertools.product(range(vocab), repeat=n)),
               key=lambda s: logprob(m, s, 3))
    out = beam_search(m, ids, beams=vocab ** (n - 1), max_new_tokens=n, length_penalty=0.0)
    assert out.tolist() == [best.tolist()]
    greedy = generate_ids(m, ids, n, temperature=0, use_cache=False)
    assert logprob(m, out[0], 3) >= logprob(m, greedy[0], 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_search_is_at_least_as_likely_as_greedy(seed):
    m = make(seed=seed)
    ids = prompt_ids(b=1, seed=seed)
    greedy = generate_ids(m, ids, 8, temperature=0, use_cache=False)
    beam = beam_search(m, ids, beams=4, max_new_tokens=8, length_penalty=0.0)
    assert beam.shape == greedy.shape
    assert logprob(m, beam[0], 5) >= logprob(m, greedy[0], 5) - 1e-5


def test_beam_search_refuses_a_batch():
    with pytest.raises(ValueError, match="one prompt"):
        beam_search(make(), prompt_ids(b=2), beams=2, max_new_tokens=2)


def test_beam_search_keeps_finished_beams():
    m = Bigram()
    ids = torch.tensor([TOK.encode("a")])
    out = beam_search(m, ids, beams=3, max_new_tokens=6, eos_id=TOK.eos_id)
    assert out.tolist() == [[*TOK.encode("ab"), TOK.eos_id]]  # a -> b -> eos, then finished
    assert generate(m, TOK, "a", max_new_tokens=6, beams=3) == "b"


def test_zero_new_tokens_gives_the_empty_continuation():
    m = make()
    assert generate(m, TOK, "abc", max_new_tokens=0, temperature=0) == ""
    assert generate(m, TOK, "abc", max_new_tokens=0, beams=2) == ""


# --- command line -----------------------------------------------------------------------------------
def test_inference_cli_on_a_run_folder(tmp_path, monkeypatch, capsys):
    from train import Trainer
    monkeypatch.setattr(data, "CACHE", tmp_path / "cache")
    out = tmp_path / "run"
    Trainer(model_config("gpt", n_layer=1, d_model=16, n_head=2, block_size=16),
            TrainConfig(max_iters=1, eval_interval=1, eval_iters=1, batch_size=2, sample_len=0), out,
            progress=False, verbose=False).run()
    assert inference.main([str(out), "--prompt", "The ", "--prompt", "def", "--max_new_tokens", "7",
                           "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    from runs import load_run
    model, _, tok = load_run(out)
    want = generate(model, tok, ["The ", "def"], max_new_tokens=7, temperature=0)
    assert f"The {want[0]}\n" in printed and f"def{want[1]}\n" in printed
    assert inference.main([str(out), "--prompt", "\U0001f600 x", "--max_new_tokens", "3"]) == 0
    printed, err = capsys.readouterr()
    assert printed.startswith("\U0001f600 x")
    assert err.splitlines() == [f"inference.py: warning: the prompt holds characters the tokenizer {tok.name!r} "
                                f"has no token for: '\U0001f600'; the model reads each as <unk>"]
    with pytest.raises(SystemExit) as e:
        inference.main([str(tmp_path / "not_a_run")])
    assert e.value.code == 2


# --- every sampling argument checked in one place ---------------------------------------------------
BAD = [
    (dict(temperature=-1), "temperature = -1 is not valid: use a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature = nan is not valid"),
    (dict(temperature=float("inf")), "temperature = inf is not valid"),
    (dict(top_p=2.0), "top_p = 2.0 is not valid: use a number in (0, 1]"),
    (dict(top_p=0.0), "top_p = 0.0 is not valid: use a number in (0, 1]"),
    (dict(min_p=2.0), "min_p = 2.0 is not valid: use a number in [0, 1]"),
    (dict(min_p=-0.1), "min_p = -0.1 is not valid"),
    (dict(top_k=-5), "top_k = -5 is not valid: use an integer >= 0"),
    (dict(top_k=2.5), "top_k = 2.5 is not valid"),
    (dict(beams=0), "beams = 0 is not valid: use an integer >= 1"),
    (dict(max_new_tokens=-5), "max_new_tokens = -5 is not valid: use an integer >= 0"),
    (dict(beams=3, top_p=0.5), "top_p apply to sampling, but beams = 3"),
]


@pytest.mark.parametrize("kw, says", BAD)
def test_each_bad_sampling_argument_gets_its_message(kw, says):
    m = make()
    with pytest.raises(inference.SamplingError) as e:
        generate(m, TOK, "ab", **{"max_new_tokens": 3, **kw})
    assert says in str(e.value)


@pytest.mark.parametrize("kw, says", BAD)
def test_the_cli_checks_sampling_arguments_before_loading_anything(kw, says, capsys, monkeypatch):
    import runs
    monkeypatch.setattr(runs, "load_run", lambda *a, **k: pytest.fail("the run was loaded before the check"))
    args = [x for k, v in kw.items() for x in (f"--{k}", str(v))]
    with pytest.raises(SystemExit) as e:
        inference.main(["trained/gpt-builtin-reference", *args])
    err = capsys.readouterr().err
    name, rest = says.split(" = ", 1)
    assert e.value.code == 2 and err.startswith("inference.py: error:") and f"--{name}" in err.splitlines()[0]
    if "invalid int value" not in err:  # argparse itself refuses --top_k 2.5
        assert rest.split(" is not valid")[-1] in err  # the valid range (the value may print as a float)
    assert len(err.splitlines()) == 2 and "usage:" not in err  # the reason first, one hint, no usage block


def test_the_cli_help_states_the_valid_values_the_errors_state(capsys):
    with pytest.raises(SystemExit):
        inference.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name, (_, valid) in inference.SAMPLING_ARGS.items():
        assert f"--{name}" in help_text and f"{valid} (default:" in help_text
    assert "top_k = -1 is not valid: use an integer >= 0: keep the k most likely tokens; 0 = off" in str(
        pytest.raises(inference.SamplingError, inference.check_sampling, top_k=-1).value)
    inference.check_sampling(top_k=0)  # the control: 0, which the help calls "off", is accepted


def test_valid_edge_values_are_accepted():
    m = make()
    for kw in (dict(temperature=0), dict(top_p=1.0), dict(min_p=0.0), dict(min_p=1.0), dict(top_k=0),
               dict(top_k=10 * V), dict(max_new_tokens=0)):
        assert isinstance(generate(m, TOK, "ab", **{"max_new_tokens": 3, **kw}), str)


# --- streaming and what generated text shows --------------------------------------------------------
def test_streamed_pieces_arrive_during_generation_and_join_to_the_result():
    m, pieces, steps = make(), [], []
    real = m.forward

    def forward(*a, **k):
        steps.append(len(pieces))
        return real(*a, **k)

    m.forward = forward
    out = generate(m, TOK, "ab", max_new_tokens=12, temperature=1.0, seed=3, on_text=pieces.append)
    assert "".join(pieces) == out and len(pieces) >= 6
    assert steps[-1] > 0  # text was handed out before the last forward pass, not at the end


def test_streaming_holds_back_an_unfinished_character():
    from tokenizers import load
    bpe = load("bpe-512")
    got = []
    stream = inference.TextStream(bpe, got.append)
    for i in bpe.encode("a") + list("中".encode("utf-8")) + bpe.encode("b"):
        stream(torch.tensor([[i]]))
    stream.flush()
    assert "".join(got) == "a中b" and all("\ufffd" not in g for g in got)


def test_generated_ids_read_as_text_leave_out_pad_and_bos():
    x, y = TOK.encode("xy")
    assert TOK.decode_generated([TOK.bos_id, x, TOK.pad_id, y]) == "xy"
    assert TOK.decode([TOK.bos_id, x, TOK.pad_id, y]) != "xy"  # the control: plain decode spells them


class Favours(StandIn):
    """Logits that favour, by far, the tokens that stand for no text (<pad> <sep> <bos> <unk>), then "x"; every
    other token (<eos> too) is out of reach."""
    max_context = None

    def forward(self, x, state=None):
        logits = torch.full((x.shape[0], x.shape[1], V), -1e9)
        logits[..., list(TOK.never_generated)] = 10.0
        logits[..., TOK.encode("x")[0]] = 0.0
        return Output(logits, None, state)


def test_generation_never_draws_a_token_that_stands_for_no_text():
    from tokenizers import load
    assert set(TOK.never_generated) == {TOK.pad_id, TOK.sep_id, TOK.bos_id, TOK.unk_id}  # not <eos>: it ends text
    bpe = load("bpe-512")
    assert set(bpe.never_generated) == {bpe.pad_id, bpe.sep_id, bpe.bos_id}  # bytes spell everything: no <unk>
    m = Favours()
    for kw in (dict(temperature=1.5, seed=0), dict(temperature=1.0, top_k=2, seed=0), dict(temperature=0),
               dict(beams=3)):
        assert generate(m, TOK, "a", max_new_tokens=30, stop_at_eos=False, **kw) == "x" * 30, kw
    # the control: the same model, sampled without the ban, draws them and almost nothing else, <unk> among them
    ids, g = torch.tensor([TOK.encode("a")]), lambda: torch.Generator().manual_seed(0)
    drawn = set(generate_ids(m, ids, 30, temperature=1.5, generator=g())[0, 1:].tolist())
    assert drawn <= set(TOK.never_generated) and TOK.unk_id in drawn
    banned = generate_ids(m, ids, 30, temperature=1.5, generator=g(), banned=TOK.never_generated)[0, 1:]
    assert banned.tolist() == TOK.encode("x" * 30)


def test_a_prompt_with_characters_the_tokenizer_lacks_warns_once_naming_them():
    m = make()
    with pytest.warns(inference.UnknownCharactersWarning) as caught:
        generate(m, TOK, ["ab\u20acc", "z\u20ac"], max_new_tokens=2, temperature=0)
    assert len(caught) == 1
    assert "'z', '\u20ac'" in str(caught[0].message) and "<unk>" in str(caught[0].message)
    with warnings.catch_warnings():  # the control: a prompt the tokenizer spells warns nothing
        warnings.simplefilter("error")
        generate(m, TOK, ["abc", "hello"], max_new_tokens=2, temperature=0)


def test_a_prompt_that_mentions_special_tokens_is_text():
    from tokenizers import load
    bpe = load("bpe-512")
    m = make(vocab=bpe.vocab_size)
    assert isinstance(generate(m, bpe, "ends with <eos>", max_new_tokens=3, temperature=0), str)


# --- a classifier run: the label of each prompt, with its probability --------------------------------
@pytest.fixture(scope="module")
def film_classifier(tmp_path_factory):
    """A tiny GPT classifier trained (in about a second) on test_tasks.film_files: pos or neg."""
    from test_tasks import film_files
    from train import Trainer
    folder = tmp_path_factory.mktemp("films")
    t = Trainer(model_config("gpt", n_layer=1, d_model=32, n_head=2),
                TrainConfig(task="classify", data=str(film_files(folder)), max_iters=80, eval_interval=80,
                            eval_iters=1, batch_size=16, warmup_iters=0, sample_len=0), folder / "run",
                progress=False, verbose=False).run()
    assert t.rows[-1]["val_acc"] == 1.0
    return folder / "run"


def test_inference_on_a_classifier_prints_each_prompts_label_and_probability(film_classifier, capsys):
    from runs import load_labels, load_run
    assert inference.main([str(film_classifier), "--prompt", "the film was great", "--prompt",
                           "the film was awful indeed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model, cfgs, tok = load_run(film_classifier)
    labels = load_labels(film_classifier, cfgs["model"].n_classes)
    pos, neg = inference.classify(model, tok, ["the film was great", "the film was awful indeed"], labels)
    assert labels == ["neg", "pos"] and pos.ranked[0][0] == "pos" and neg.ranked[0][0] == "neg"
    assert pos.ranked[0][1] > 0.9 and sum(p for _, p in pos.ranked) == pytest.approx(1.0)
    assert lines == [f"the film was great -> pos ({pos.ranked[0][1]:.3f}); then neg ({pos.ranked[1][1]:.3f})",
                     f"the film was awful indeed -> neg ({neg.ranked[0][1]:.3f}); then pos ({neg.ranked[1][1]:.3f})"]


def test_a_prompt_longer_than_the_training_examples_is_cut_and_said_so(film_classifier, capsys):
    from runs import load_labels, load_run
    model, cfgs, tok = load_run(film_classifier)
    labels = load_labels(film_classifier, 2)
    block = cfgs["model"].block_size
    long, whole = "the film was good" + "!" * (block - 10), "the film was good"
    cut = inference.classify(model, tok, long, labels)
    assert cut.cut == len(long) - block and cut.ranked == inference.classify(model, tok, long[:block], labels).ranked
    assert inference.classify(model, tok, whole, labels).cut == 0            # the control: a text that fits
    inference.main([str(film_classifier), "--prompt", long])
    assert f"its last {len(long) - block} tokens were not read: the model reads {block} at most" in \
        capsys.readouterr().out


def test_a_classifier_without_a_prompt_or_given_to_generate_is_refused(film_classifier, capsys):
    from runs import load_run
    with pytest.raises(SystemExit) as e:
        inference.main([str(film_classifier)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "is a classifier (labels ['neg', 'pos']): give the text to classify with --prompt" \
        in err
    model, _, tok = load_run(film_classifier)
    with pytest.raises(ValueError, match="the model is a classifier.*use classify"):
        generate(model, tok, "the film")
    with pytest.raises(ValueError, match="a language-model head.*use generate"):
        inference.classify(make(), TOK, "abc", ["a", "b"])


def test_a_run_without_labels_json_names_its_classes_by_id_and_a_wrong_one_is_refused(film_classifier, tmp_path,
                                                                                       capsys):
    import shutil
    from runs import load_labels
    from tools import RunFolderError
    run = shutil.copytree(film_classifier, tmp_path / "run")
    (run / "labels.json").unlink()                                     # a run saved before train.py wrote it
    assert load_labels(run, 2) == ["0", "1"]
    inference.main([str(run), "--prompt", "the film was great"])
    assert capsys.readouterr().out.startswith("the film was great -> 1 (")
    (run / "labels.json").write_text('["neg", "pos", "meh"]')
    with pytest.raises(RunFolderError, match=r"labels.json holds \['neg', 'pos', 'meh'\], but model_config.json "
                                             r"says n_classes = 2"):
        load_labels(run, 2)
    with pytest.raises(SystemExit) as e:
        inference.main([str(run), "--prompt", "the film was great"])
    assert e.value.code == 2 and "but model_config.json says n_classes = 2" in capsys.readouterr().err


def test_a_sentence_pair_classifier_reads_two_texts_separated_by_a_tab(tmp_path, capsys):
    """A prompt is read as training read the pair (`q1 <sep> q2`); one without a tab is refused, by name."""
    from data import classification_batch, make_task
    from runs import load_labels, load_run
    from train import Trainer
    path = tmp_path / "pairs.csv"
    path.write_text("q1,q2,same\nabc,abc,yes\nabc,cab,no\nba,ba,yes\nba,ab,no\nc,c,yes\n", encoding="utf-8")
    fields = dict(data=str(path), text_column="q1", text_pair_column="q2", label_column="same")
    Trainer(model_config("gpt", n_layer=1, d_model=16, n_head=2),
            TrainConfig(task="classify", max_iters=1, eval_interval=1, eval_iters=1, batch_size=2, sample_len=0,
                        **fields), tmp_path / "run", progress=False, verbose=False).run()
    model, cfgs, tok = load_run(tmp_path / "run")
    task = make_task("classify", **fields)
    row = task.train_rows[[tok.decode(r) for r in task.train_rows].index("abc<sep>cab")]
    with torch.no_grad():
        want = model(classification_batch([row], tok.pad_id)).logits.softmax(-1)[0]
    got = inference.classify(model, tok, "abc\tcab", load_labels(tmp_path / "run", 2), pairs=True)
    assert dict(got.ranked) == pytest.approx({"no": float(want[0]), "yes": float(want[1])})
    assert inference.main([str(tmp_path / "run"), "--prompt", "abc\tcab"]) == 0
    assert capsys.readouterr().out.startswith(f"abc\tcab -> {got.ranked[0][0]} ({got.ranked[0][1]:.3f})")
    with pytest.raises(SystemExit) as e:
        inference.main([str(tmp_path / "run"), "--prompt", "abc cab"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--prompt 'abc cab' is one text, and the model classifies sentence pairs: give the " \
        "two texts separated by a tab" in err
