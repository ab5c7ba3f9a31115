"""Tests of the Hourglass (modules/hourglass.py): the hierarchy string, causality for every shortening x
upsampling and several hierarchies at lengths that are not multiples of the factors, the negative control
(without the shift the causality check fails), parameter counts, any length, streaming in chunks, and
cached generation equal to recomputation token for token."""
import itertools

import pytest
import torch

from config import ConfigError, hierarchy_depth, model_config, parse_hierarchy
from inference import generate_ids
from modules import build_model, trace
from modules.hourglass import Level

V, B = 13, 2
SHORTEN, UPSAMPLE = ("avg", "linear", "attention"), ("repeat", "linear", "attention")
HIERARCHIES = ("1@1 2@2 1@1", "1@1 1@3 1@1", "1@1 1@2 1@6 1@2 1@1", "0@1 1@4 2@1")


def make(hierarchy="1@1 1@2 1@6 1@2 1@1", seed=0, **kw):
    """A small Hourglass whose every parameter is random (so zero-initialised biases and norms matter)."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=V, d_model=16, n_head=2, block_size=64, hierarchy=hierarchy, **kw)
    m = build_model(model_config("hourglass", **fields))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m.eval()


def ids(T=23, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def perturbed(x, p):
    x2 = x.clone()
    x2[:, p] = (x2[:, p] + 1 + torch.arange(B)) % V
    return x2


def check_causal(model, x, positions):
    base = model(x).logits
    for p in positions:
        out = model(perturbed(x, p)).logits
        assert torch.equal(out[:, :p], base[:, :p]), f"a change at {p} leaked into earlier logits"
        assert ((out[:, p] - base[:, p]).abs().amax(-1) > 1e-6).all(), f"a change at {p} did not change logits at {p}"


# --- the hierarchy string ---------------------------------------------------------------------------
def test_hierarchy_parses_into_nested_levels_and_derives_the_depth():
    assert parse_hierarchy("2@1 4@3 2@1") == [(2, 1), (4, 3), (2, 1)]
    assert parse_hierarchy(" 1@1  1@2 2@6 1@2 1@1 ") == [(1, 1), (1, 2), (2, 6), (1, 2), (1, 1)]
    assert parse_hierarchy("3@1") == [(3, 1)]  # one level: a plain Transformer
    assert hierarchy_depth("1@1 1@2 2@6 1@2 1@1") == 6
    assert model_config("hourglass", hierarchy="2@1 4@3 3@1").n_layer == 9
    assert model_config("hourglass", hierarchy="2@1 4@3 2@1", n_layer=8).n_layer == 8


@pytest.mark.parametrize("text, says", [
    ("", "empty"),
    ("1@1 2@2", "odd number"),
    ("1@1 2x2 1@1", "not N@F"),
    ("1@1 2@2.5 1@1", "not N@F"),
    ("1@1 -1@2 1@1", "not N@F"),
    ("1@1 2@2 1@3", "not a palindrome"),
    ("2@2 4@4 2@2", "full length"),
    ("1@1 2@1 1@1", "must grow"),
    ("1@1 1@4 1@2 1@4 1@1", "must grow"),
    ("1@1 1@2 2@5 1@2 1@1", "not a multiple"),
    ("1@1 0@2 1@1", "no layers"),
    ("1@0 1@0 1@0", "full length"),
])
def test_malformed_hierarchies_are_rejected_with_the_reason_and_a_valid_example(text, says):
    with pytest.raises(ConfigError) as e:
        model_config("hourglass", hierarchy=text)
    msg = str(e.value)
    assert "hierarchy" in msg and says in msg and "1@1 2@2 1@1" in msg, msg


def test_n_layer_that_contradicts_the_hierarchy_is_rejected():
    with pytest.raises(ConfigError, match="n_layer = 5 does not match .* sum to 4"):
        model_config("hourglass", hierarchy="1@1 2@2 1@1", n_layer=5)


# --- causality --------------------------------------------------------------------------------------
COMBOS = list(itertools.product(SHORTEN, UPSAMPLE))


@pytest.mark.parametrize("shorten, upsample", COMBOS, ids=[f"{s}-{u}" for s, u in COMBOS])
def test_every_shortening_and_upsampling_is_causal(shorten, upsample):
    for hierarchy in HIERARCHIES:
        m = make(hierarchy, shorten=shorten, upsample=upsample)
        check_causal(m, ids(23), positions=(0, 1, 2, 5, 6, 11, 12, 21, 22))


def test_causal_for_lengths_shorter_than_and_not_multiple_of_the_factors():
    m = make("1@1 1@2 1@6 1@2 1@1", shorten="attention", upsample="attention")
    for T in (1, 5, 7, 13):
        check_causal(m, ids(T), positions=range(T))


def test_without_the_shift_the_causality_check_fails(monkeypatch):
    """Negative control: groups cut from the unshifted sequence let position gk see gk+k-1."""
    m = make("1@1 2@4 1@1")
    check_causal(m, ids(16), positions=(0, 3, 8))

    def no_shift(self, x, tail=None):
        return torch.cat([x, x.new_zeros(x.shape[0], self.k - 1, x.shape[2])], dim=1)

    monkeypatch.setattr(Level, "shift_right", no_shift)
    with pytest.raises(AssertionError, match="leaked"):
        check_causal(m, ids(16), positions=(0, 3, 8))


# --- any length -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shorten, upsample", [("linear", "linear"), ("attention", "attention")])
def test_logits_do_not_depend_on_the_length_of_the_input(shorten, upsample):
    """Position t's logits are the same whether the input ends at t+1 or later (no padding artefact)."""
    m = make(shorten=shorten, upsample=upsample)
    x = ids(29)
    full = m(x).logits
    for T in (1, 2, 5, 6, 7, 11, 13, 24, 25):
        torch.testing.assert_close(m(x[:, :T]).logits, full[:, :T], atol=1e-5, rtol=0)


# --- parameters -------------------------------------------------------------------------------------
def gpt_params(n_layer, **kw):
    return build_model(model_config("gpt", vocab_size=V, d_model=16, n_head=2, n_layer=n_layer, **kw)).num_params()


@pytest.mark.parametrize("bias", [False, True])
def test_parameter_counts(bias):
    C = 16
    for hierarchy, ks in [("1@1 2@2 1@1", [2]), ("1@1 1@2 2@6 1@2 1@1", [2, 3])]:
        gpt = gpt_params(hierarchy_depth(hierarchy), bias=bias)
        count = {(s, u): make(hierarchy, shorten=s, upsample=u, bias=bias).num_params()
                 for s in ("avg", "linear") for u in ("repeat", "linear")}
        assert count["avg", "repeat"] == gpt                                  # avg and repeat add nothing
        assert count["linear", "repeat"] - gpt == sum(k * C * C + bias * C for k in ks)       # Linear(kC -> C)
        assert count["avg", "linear"] - gpt == sum(C * k * C + bias * k * C for k in ks)      # Linear(C -> kC)
        assert count["linear", "linear"] - gpt == sum(2 * k * C * C + bias * (C + k * C) for k in ks)


# --- streaming and cached generation ----------------------------------------------------------------
@pytest.mark.parametrize("shorten, upsample", COMBOS, ids=[f"{s}-{u}" for s, u in COMBOS])
def test_streaming_in_chunks_equals_the_full_forward(shorten, upsample):
    m = make(shorten=shorten, upsample=upsample)
    x = ids(25)
    full = m(x).logits
    for sizes in [(1,) * 25, (3, 1, 5, 2, 4, 1, 9), (7, 18)]:
        state, outs, start = m.init_state(B), [], 0
        for n in sizes:
            outs.append(m(x[:, start:start + n], state).logits)
            start += n
        assert len(state) == 25
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("hierarchy", ["1@1 2@3 1@1", "1@1 1@2 1@6 1@2 1@1"])
def test_cached_generation_equals_recomputation_token_for_token(hierarchy):
    """25 tokens in all (5 + 20): not a multiple of 2, 3 or 6."""
    m = make(hierarchy, shorten="linear", upsample="attention")
    prompt = ids(5)
    greedy = [generate_ids(m, prompt, 20, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(*greedy)
    sampled = [generate_ids(m, prompt, 20, temperature=1.0, use_cache=c, generator=torch.Generator().manual_seed(0))
               for c in (True, False)]
    assert torch.equal(*sampled)
    assert len(set(sampled[0][0, 5:].tolist())) > 3  # the check is not about one repeated token
    seq, state = sampled[0], m.init_state(B)
    with torch.no_grad():
        steps = [m(seq[:, :5], state).logits[:, -1]] + [m(seq[:, t:t + 1], state).logits[:, -1] for t in range(5, 24)]
        torch.testing.assert_close(torch.stack(steps, 1), m(seq[:, :-1]).logits[:, 4:], atol=1e-5, rtol=0)


def test_short_levels_keep_caches_one_factor_as_long():
    m = make("1@1 1@2 1@6 1@2 1@1", upsample="attention")
    state = m.init_state(B)
    m(ids(25), state)
    top, mid, low = state.top, state.top.inner, state.top.inner.inner
    assert (len(top), len(mid), len(low)) == (25, 13, 5)  # ceil(25/2) groups, then ceil(13/3)
    assert [len(c) for c in top.pre + top.post] == [25, 25]
    assert [len(c) for c in mid.pre + mid.post] == [13, 13] and len(top.up) == 13
    assert [len(c) for c in low.pre] == [5] and len(mid.up) == 5


# --- tracing ----------------------------------------------------------------------------------------
def test_trace_names_the_papers_steps():
    m = make("1@1 1@2 1@6 1@2 1@1", shorten="attention", upsample="attention")
    with trace(m) as t:
        m(ids(11))
    names = [e.name for e in t.events]
    for step in ("hourglass.shift_right", "hourglass.shorten", "hourglass.inner.forward",
                 "hourglass.inner.shorten", "hourglass.upsample", "hourglass.upsampling.visible"):
        assert step in names, step


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "relative"])
def test_other_position_schemes_are_causal_and_stream(pos):
    m = make("1@1 1@2 1@6 1@2 1@1", pos=pos, shorten="attention", upsample="linear")
    x = ids(19)
    check_causal(m, x, positions=(0, 5, 6, 12, 18))
    state = m.init_state(B)
    outs = [m(x[:, :4], state).logits] + [m(x[:, t:t + 1], state).logits for t in range(4, 19)]
    torch.testing.assert_close(torch.cat(outs, 1), m(x).logits, atol=1e-5, rtol=0)


# --- the paper's claim, on a shipped run ------------------------------------------------------------
def test_shipped_run_matches_the_gpt_at_the_same_compute():
    """trained/hourglass-builtin-1x4x1 (`1@1 4@2 1@1`, 6 layers) against trained/gpt-builtin-reference (4 layers),
    same data, steps and validation batches (experiments/hourglass_same_compute.py). The paper claims better
    than a Transformer at the same compute; at this toy scale and one seed each, it is a tie: the final
    validation losses are within 0.01 (1.3291 against 1.3315), and along the run the gap changes sign."""
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "experiments"))
    from hourglass_same_compute import GPT_RUN, HG_RUN, config_of, cost_per_token, val_losses
    gpt, hg = config_of(GPT_RUN), config_of(HG_RUN)
    (gm, ga), (hm, ha) = cost_per_token(gpt, 128), cost_per_token(hg, 128)
    assert hm == gm and ha < 0.8 * ga  # same matrix work per token, a quarter less attention
    g, h = val_losses(GPT_RUN), val_losses(HG_RUN)
    assert max(g) == max(h) == 500
    assert abs(h[500] - g[500]) < 0.01
    diffs = [h[s] - g[s] for s in g if s > 0]
    assert min(diffs) < 0 < max(diffs)
