"""Causality, the property every decoder must have (docs/design.md#models): changing token p never changes a
logit before p, for every registered architecture that declares itself `causal` and every option, with and
without the streaming state (KV cache, memory) for those that declare `streams`, with dropout in eval mode
and (same seed) in train mode.

New architectures are picked up automatically from the registry: each is built through
`config.model_config(arch, ...)` with small shared sizes (and short segments / memories when its config has
those fields), and its declared capabilities say which tests apply — never its name."""
import dataclasses
import itertools

import pytest
import torch

import modules
from config import MODEL_CONFIGS, model_config
from modules import build_model
from modules.attention import Attention

VOCAB, T, B = 13, 16, 2
SMALL = dict(vocab_size=VOCAB, n_layer=2, d_model=16, n_head=2, block_size=T)
# Fields of segment-recurrent / hierarchical configs, set small so a 16-token input spans several
# segments of uneven size and the memory is actually used.
SHORT = {"seg_len": 5, "mem_len": 4, "n_mem": 2, "hierarchy": "1@1 1@3 0@1"}  # hierarchy: 2 layers, as n_layer


def arch_config(arch, **kw):
    names = {f.name for f in dataclasses.fields(MODEL_CONFIGS[arch])}
    fields = {**SMALL, **{k: v for k, v in SHORT.items() if k in names}, **kw}
    if "hierarchy" in names and "hierarchy" not in kw:  # its depth comes from the hierarchy: leave it derived
        fields.pop("n_layer")
    return model_config(arch, **fields)


def make(arch="gpt", seed=0, **kw):
    """A small model whose every parameter is random (so zero-initialised tables and biases matter)."""
    torch.manual_seed(seed)
    m = build_model(arch_config(arch, **kw))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m.eval()


def tokens(seed=0, n=T):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (B, n), generator=g)


def perturbed(x, p, rows=None):
    x2 = x.clone()
    rows = slice(None) if rows is None else rows
    x2[rows, p] = (x2[rows, p] + 1 + torch.arange(x2[rows, p].numel()).view_as(x2[rows, p])) % VOCAB
    assert (x2[rows, p] != x[rows, p]).all()
    return x2


def check_causal(model, x, positions=(0, 1, 4, 7, T - 2, T - 1), logits=None, seed=None):
    """Perturbing token p leaves logits < p exactly equal and changes the logits at p (every row)."""
    logits = logits or (lambda ids: model(ids).logits)

    def run(ids):
        if seed is not None:
            torch.manual_seed(seed)  # same dropout masks in train mode
        return logits(ids)

    base = run(x)
    assert base.shape == (x.shape[0], x.shape[1], VOCAB)
    for p in positions:
        out = run(perturbed(x, p))
        assert torch.equal(out[:, :p], base[:, :p]), f"a change at {p} leaked into earlier logits"
        assert ((out[:, p] - base[:, p]).abs().amax(-1) > 1e-6).all(), f"a change at {p} did not change logits at {p}"


# --- GPT: every option ------------------------------------------------------------------------------
GPT_OPTIONS = list(itertools.product(["learned", "sinusoidal", "rope", "relative"], ["rms", "layer", "cosine"],
                                     ["gelu", "swiglu"], [0, 1]))


@pytest.mark.parametrize("pos, norm, mlp, n_kv_head", GPT_OPTIONS,
                         ids=[f"{p}-{n}-{m}-kv{k or 'all'}" for p, n, m, k in GPT_OPTIONS])
def test_gpt_is_causal_for_every_option(pos, norm, mlp, n_kv_head):
    m = make("gpt", pos=pos, norm=norm, mlp=mlp, n_kv_head=n_kv_head, bias=norm == "layer")
    check_causal(m, tokens())


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope", "relative"])
def test_gpt_kv_cache_chunks_equal_the_full_forward(pos):
    m = make("gpt", pos=pos, n_kv_head=1, n_head=4)
    check_streaming(m, tokens())


# --- every architecture -----------------------------------------------------------------------------
def pos_choices(arch):
    f = {f.name: f for f in dataclasses.fields(MODEL_CONFIGS[arch])}["pos"]
    return f.metadata.get("choices") or (f.default,)


def archs(capability):
    """Registered architectures that declare `capability`."""
    return sorted(a for a, cls in modules.architectures().items() if capability in cls.capabilities)


CAUSAL_ARCHS, STREAMING_ARCHS = archs(modules.CAUSAL), archs(modules.STREAMS)
ARCH_POS = [(a, p) for a in CAUSAL_ARCHS for p in pos_choices(a)]


@pytest.mark.parametrize("arch, pos", ARCH_POS, ids=[f"{a}-{p}" for a, p in ARCH_POS])
def test_every_architecture_is_causal(arch, pos):
    m = make(arch, pos=pos)
    check_causal(m, tokens())
    check_causal(m, tokens(seed=1), positions=(3, 11))


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_every_architecture_is_causal_with_dropout(arch):
    m = make(arch, dropout=0.3)
    x = tokens()
    assert torch.equal(m(x).logits, m(x).logits)  # eval mode: dropout is off
    check_causal(m, x)
    m.train()
    check_causal(m, x, seed=123)  # train mode: the same dropout masks on both inputs
    torch.manual_seed(5)
    a = m(x).logits
    assert not torch.equal(a, m(x).logits)  # ...and dropout really is on in train mode


@pytest.mark.parametrize("arch", CAUSAL_ARCHS)
def test_every_architecture_keeps_the_rows_of_a_batch_apart(arch):
    m = make(arch)
    x = tokens()
    base = m(x).logits
    out = m(perturbed(x, 2, rows=0)).logits
    assert torch.equal(out[1], base[1])
    assert not torch.equal(out[0], base[0])


@pytest.mark.parametrize("arch", STREAMING_ARCHS)
def test_every_streaming_architecture_streams_in_chunks_like_the_full_forward(arch):
    m = make(arch)
    assert m.init_state(B) is not None, f"{arch} declares 'streams' but init_state gives no state"
    check_streaming(m, tokens())


def test_the_registry_lists_every_architecture_with_declared_capabilities():
    found = modules.architectures()
    assert {"gpt", "transformer_xl", "rmt"} <= set(found)
    for arch, cls in found.items():
        assert cls.capabilities and set(cls.capabilities) <= set(modules.CAPABILITIES), arch


def check_streaming(m, x):
    """Feed x in chunks of varying sizes through the streaming state: the logits match the full forward,
    and the cached path is causal too."""
    full = m(x).logits
    for sizes in [(T,), (1,) * T, (3, 1, 5, 2, 4, 1), (7, 9)]:
        state, outs, start = m.init_state(B), [], 0
        for n in sizes:
            o = m(x[:, start:start + n], state)
            state = o.state if o.state is not None else state
            outs.append(o.logits)
            start += n
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0, msg=lambda s: f"chunks {sizes}: {s}")

    def cached(ids):
        state = m.init_state(B)
        first = m(ids[:, :6], state)
        rest = m(ids[:, 6:], first.state if first.state is not None else state)
        return torch.cat([first.logits, rest.logits], 1)

    check_causal(m, x, logits=cached)


# --- the test itself can fail -----------------------------------------------------------------------
def test_a_leaking_model_is_caught(monkeypatch):
    """Negative control: attention without the causal mask must fail `check_causal`."""
    m = make("gpt", pos="rope")
    forward = Attention.forward

    def leaky(self, x, context=None, mask=None, causal=False, **kw):
        return forward(self, x, context, mask=mask, causal=False, **kw)

    monkeypatch.setattr(Attention, "forward", leaky)
    with pytest.raises(AssertionError, match="leaked"):
        check_causal(m, tokens())
