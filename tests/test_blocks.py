"""Tests of the shared building blocks (modules/norms.py, positions.py, attention.py, mlp.py, layer.py,
base.py): each against a straightforward formula written out here."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from config import model_config
from modules import build_model
from modules.attention import Attention, KVCache, causal_mask
from modules.base import LMHead, TokenEmbedding
from modules.decoder import DecoderLM
from modules.layer import Block, decoder_parts, stack
from modules.mlp import MLP
from modules.norms import CosineNorm, LayerNorm, RMSNorm, make_norm
from modules.positions import (LearnedPositions, Positions, RelativeBias, RoPE, SinusoidalPositions, positions_after,
                               rotate, sinusoidal_table)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize(module, std=0.3):
    """Give every parameter (gains, biases, tables that start at 1 or 0) a random value."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * std + (1.0 if p.dim() == 1 and p.numel() > 1 else 0.0))
    return module


# --- norms ------------------------------------------------------------------------------------------
def test_rmsnorm_formula():
    n = randomize(RMSNorm(16))
    x = torch.randn(3, 5, 16) * 4 + 1
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + n.eps) * n.weight
    torch.testing.assert_close(n(x), want)


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_formula(bias):
    n = randomize(LayerNorm(16, bias=bias))
    assert (n.bias is not None) == bias
    x = torch.randn(3, 5, 16) * 4 + 1
    mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    want = (x - mu) / torch.sqrt(var + n.eps) * n.weight + (n.bias if bias else 0)
    torch.testing.assert_close(n(x), want)


def test_cosinenorm_formula_and_initial_scale():
    n = CosineNorm(16)
    x = torch.randn(3, 5, 16) * 4 + 1
    out = n(x)
    # the gain starts at sqrt(dim): every output vector has RMS 1, like RMSNorm's
    torch.testing.assert_close(out.pow(2).mean(-1), torch.ones(3, 5))
    with torch.no_grad():
        n.gain.fill_(2.5)
    torch.testing.assert_close(n(x), x / x.norm(dim=-1, keepdim=True) * 2.5)
    assert n.gain.dim() == 0  # one learned scalar


@pytest.mark.parametrize("kind", ["rms", "layer", "cosine"])
def test_norms_are_scale_invariant_and_safe_at_zero(kind):
    n = randomize(make_norm(kind, 8, bias=True))
    x = torch.randn(4, 8)
    torch.testing.assert_close(n(x * 7.0), n(x), atol=1e-4, rtol=1e-3)  # up to eps
    z = n(torch.zeros(2, 8))
    assert torch.isfinite(z).all()


def test_make_norm_picks_the_class_and_rejects_unknown_names():
    assert type(make_norm("rms", 4)) is RMSNorm
    assert type(make_norm("layer", 4)) is LayerNorm and make_norm("layer", 4).bias is None
    assert make_norm("layer", 4, bias=True).bias is not None
    assert type(make_norm("cosine", 4)) is CosineNorm
    with pytest.raises(ValueError, match="norm"):
        make_norm("batch", 4)


# --- positions --------------------------------------------------------------------------------------
def test_sinusoidal_values_at_known_points():
    s = SinusoidalPositions(4)  # frequencies 1 and 1/100
    got = s(torch.tensor([0, 1, 1000]))
    want = torch.tensor([[0.0, 1.0, 0.0, 1.0],
                         [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
                         [math.sin(1000), math.cos(1000), math.sin(10), math.cos(10)]])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    t = sinusoidal_table(50, 16)
    assert t.shape == (50, 16)
    torch.testing.assert_close(t.norm(dim=-1), torch.full((50,), math.sqrt(8)))  # sin^2 + cos^2 per pair
    torch.testing.assert_close(t[7], SinusoidalPositions(16)(torch.tensor([7]))[0])


def test_learned_positions_read_their_row_and_refuse_positions_outside_the_table():
    lp = LearnedPositions(8, 4)
    torch.testing.assert_close(lp(torch.tensor([0, 5])), lp.table.weight[[0, 5]])
    for bad in ([8], [-1], [3, 9]):
        with pytest.raises(ValueError, match="block_size"):
            lp(torch.tensor(bad))


def test_learned_positions_take_a_range_of_consecutive_positions_checked_on_integers():
    # A model's positions are consecutive: a range reads the same rows as the tensor, as a slice, with the same
    # error past the table; the check reads two integers, so no tensor op (nothing to sync, nothing to break a
    # torch.compile graph).
    lp = LearnedPositions(8, 4)
    assert torch.equal(lp(range(3, 8)), lp(torch.arange(3, 8)))
    for bad in (range(8, 9), range(-1, 2), range(3, 10)):
        with pytest.raises(ValueError, match="block_size"):
            lp(bad)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal", "rope", "relative"])
def test_positions_as_a_range_give_exactly_what_the_tensor_gives(kind):
    p = Positions(kind, 8, 2, 16)
    x = torch.randn(1, 5, 8)
    assert torch.equal(p.embed(x, range(3, 8)), p.embed(x, torch.arange(3, 8)))
    by_range = p.attention_extras(range(3, 8), range(8))
    by_tensor = p.attention_extras(torch.arange(3, 8), torch.arange(8))
    assert by_range.keys() == by_tensor.keys()
    for key in by_range:
        a, b = by_range[key], by_tensor[key]
        for x, y in ([(a, b)] if key == "bias" else [(a.q_cos, b.q_cos), (a.q_sin, b.q_sin), (a.k_cos, b.k_cos),
                                                     (a.k_sin, b.k_sin)]):
            assert torch.equal(x, y)


def test_rope_rotates_pairs_half_a_head_apart():
    rope = RoPE(4, base=10000.0)  # frequencies 1 and 1/100
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    p = 3.0
    r = rope(torch.tensor([3]), torch.tensor([3]))
    q, _ = r.rotate(x, x)
    c1, s1, c2, s2 = math.cos(p), math.sin(p), math.cos(p / 100), math.sin(p / 100)
    want = torch.tensor([1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 3 * c1 + 1 * s1, 4 * c2 + 2 * s2])
    torch.testing.assert_close(q.flatten(), want)
    q0, _ = rope(torch.tensor([0]), torch.tensor([0])).rotate(x, x)
    torch.testing.assert_close(q0, x)  # position 0 is the identity


def test_rope_preserves_norms():
    rope = RoPE(16)
    pos = torch.arange(0, 300, 7)
    x = torch.randn(2, 3, len(pos), 16)
    q, k = rope(pos, pos).rotate(x, x)
    torch.testing.assert_close(q.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(k.norm(dim=-1), x.norm(dim=-1))


def test_rope_scores_depend_only_on_the_position_difference():
    rope = RoPE(16)
    q, k = torch.randn(1, 1, 1, 16, dtype=torch.float64), torch.randn(1, 1, 1, 16, dtype=torch.float64)

    def score(m, n):
        c, s = rope.angles(torch.tensor([m]))
        cq, sq = c.double(), s.double()
        c, s = rope.angles(torch.tensor([n]))
        ck, sk = c.double(), s.double()
        return (rotate(q, cq, sq) * rotate(k, ck, sk)).sum().item()

    for m, n in [(5, 2), (2, 5), (9, 9), (20, 3)]:
        for shift in (1, 13, 100):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    # ...and does depend on it (otherwise the test above would hold trivially)
    assert abs(score(5, 2) - score(5, 3)) > 1e-3
    assert abs(score(5, 2) - score(2, 5)) > 1e-3


def test_rope_with_fewer_keys_rotates_the_newest_key_positions():
    # With a KV cache only the newest keys are projected: Rotary.rotate uses the last S key positions.
    rope = RoPE(8)
    k_pos = torch.arange(6)
    r = rope(k_pos[-2:], k_pos)
    k_all = torch.randn(1, 2, 6, 8)
    _, k_full = rope(k_pos, k_pos).rotate(k_all, k_all)
    _, k_new = r.rotate(k_all[:, :, -2:], k_all[:, :, -2:])
    torch.testing.assert_close(k_new, k_full[:, :, -2:])


def test_relative_bias_indexes_by_clipped_distance():
    rb = RelativeBias(n_head=2, max_distance=3)
    with torch.no_grad():
        rb.table.copy_(torch.arange(14.0).view(2, 7))
    q_pos, k_pos = torch.tensor([10, 11, 12]), torch.arange(0, 13)
    got = rb(q_pos, k_pos)
    assert got.shape == (2, 3, 13)
    for h in range(2):
        for i, qp in enumerate(q_pos.tolist()):
            for j, kp in enumerate(k_pos.tolist()):
                d = max(-3, min(3, qp - kp))
                assert got[h, i, j].item() == 7 * h + d + 3
    # same distance, same bias: a shift of both positions changes nothing
    torch.testing.assert_close(rb(q_pos + 5, k_pos + 5), got)


@pytest.mark.parametrize("kind, keys", [("learned", set()), ("sinusoidal", set()), ("rope", {"rotary"}),
                                       ("relative", {"bias"})])
def test_positions_object_gives_the_right_extras(kind, keys):
    p = Positions(kind, 8, 2, 16)
    pos = torch.arange(5)
    assert set(p.attention_extras(pos, pos)) == keys
    x = torch.randn(1, 5, 8)
    if kind == "learned":
        torch.testing.assert_close(p.embed(x, pos), x + p.absolute.table.weight[:5])
    elif kind == "sinusoidal":
        torch.testing.assert_close(p.embed(x, pos), x * 8 ** 0.5 + sinusoidal_table(5, 8))  # Vaswani scaling
    else:
        assert torch.equal(p.embed(x, pos), x)  # positions live in attention
    with pytest.raises(ValueError, match="pos"):
        Positions("alibi", 8, 2, 16)


# --- attention --------------------------------------------------------------------------------------
def reference_attention(attn, x, kv=None, allowed=None, bias=None):
    """softmax(q k^T / sqrt(d) + bias) v, head by head, from the module's own weights; allowed (B, H, T, S)."""
    kv = x if kv is None else kv
    B, T, C = x.shape
    S = kv.shape[1]
    H, Hkv, d = attn.n_head, attn.n_kv_head, attn.head_dim
    Wq, Wk, Wv = attn.qkv.weight.split([H * d, Hkv * d, Hkv * d])  # the stacked W_q, W_k, W_v
    bq, bk, bv = attn.qkv.bias.split([H * d, Hkv * d, Hkv * d]) if attn.qkv.bias is not None else (0, 0, 0)
    q = (x @ Wq.T + bq).view(B, T, H, d)
    k = (kv @ Wk.T + bk).view(B, S, Hkv, d)
    v = (kv @ Wv.T + bv).view(B, S, Hkv, d)
    heads = []
    for h in range(H):
        g = h // (H // Hkv)  # the key/value head this query head shares
        scores = q[:, :, h] @ k[:, :, g].transpose(1, 2) / math.sqrt(d)  # (B, T, S)
        if bias is not None:
            scores = scores + bias[h]
        if allowed is not None:
            scores = scores.masked_fill(~allowed[:, h], float("-inf"))
        heads.append(scores.softmax(-1) @ v[:, :, g])  # (B, T, d)
    y = torch.cat(heads, dim=-1)
    return y @ attn.proj.weight.T + (attn.proj.bias if attn.proj.bias is not None else 0)


def make_attention(C=16, H=4, Hkv=None, bias=True):
    return randomize(Attention(C, H, Hkv, bias=bias), std=0.5).double().eval()


def random_mask(B, H, T, S):
    m = torch.rand(B, H, T, S) < 0.6
    m[..., 0] = True  # no row fully masked
    return m


@pytest.mark.parametrize("bias", [True, False])
def test_attention_equals_the_formula(bias):
    a = make_attention(bias=bias)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(a(x), reference_attention(a, x))


def test_attention_causal():
    a = make_attention()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril().expand(2, 4, 6, 6)
    torch.testing.assert_close(a(x, causal=True), reference_attention(a, x, allowed=allowed))


def test_cross_attention_with_a_different_kv_length():
    a = make_attention()
    x, kv = torch.randn(2, 3, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    torch.testing.assert_close(a(x, kv), reference_attention(a, x, kv))


@pytest.mark.parametrize("shape", ["TS", "B1TS", "BHTS"])
def test_attention_with_a_boolean_mask(shape):
    a = make_attention()
    B, H, T = 2, 4, 5
    x = torch.randn(B, T, 16, dtype=torch.float64)
    full = random_mask(B, H, T, T)
    mask = {"TS": full[0, 0], "B1TS": full[:, :1], "BHTS": full}[shape]
    allowed = mask.expand(B, H, T, T)
    got = a(x, mask=mask)
    torch.testing.assert_close(got, reference_attention(a, x, allowed=allowed))
    assert not torch.allclose(got, a(x))  # the mask does something


def test_attention_with_an_additive_bias():
    a = make_attention()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    bias = torch.randn(4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(a(x, bias=bias), reference_attention(a, x, bias=bias))
    allowed = torch.ones(5, 5, dtype=torch.bool).tril().expand(2, 4, 5, 5)
    torch.testing.assert_close(a(x, bias=bias, causal=True), reference_attention(a, x, allowed=allowed, bias=bias))
    mask = random_mask(1, 1, 5, 5)[0, 0]
    torch.testing.assert_close(a(x, bias=bias, mask=mask),
                               reference_attention(a, x, allowed=mask.expand(2, 4, 5, 5), bias=bias))


def test_attention_with_a_batch_mask_and_a_bias():
    a = make_attention()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    bias = torch.randn(4, 5, 5, dtype=torch.float64)
    mask = random_mask(2, 1, 5, 5)
    torch.testing.assert_close(a(x, bias=bias, mask=mask),
                               reference_attention(a, x, allowed=mask.expand(2, 4, 5, 5), bias=bias))


@pytest.mark.parametrize("Hkv", [1, 2])
def test_grouped_query_attention_equals_repeated_kv_heads(Hkv):
    C, H, d = 16, 4, 4
    g = make_attention(C, H, Hkv)
    x = torch.randn(2, 6, C, dtype=torch.float64)
    torch.testing.assert_close(g(x, causal=True), reference_attention(g, x, allowed=torch.ones(
        6, 6, dtype=torch.bool).tril().expand(2, H, 6, 6)))
    # the same computation as plain multi-head attention whose k/v heads are copies
    full = Attention(C, H, H, bias=True).double().eval()
    with torch.no_grad():
        full.proj.load_state_dict(g.proj.state_dict())
        Wq, Wk, Wv = g.qkv.weight.split([H * d, Hkv * d, Hkv * d])
        bq, bk, bv = g.qkv.bias.split([H * d, Hkv * d, Hkv * d])
        rep = H // Hkv
        full.qkv.weight.copy_(torch.cat([Wq] + [W.view(Hkv, d, C).repeat_interleave(rep, 0).reshape(H * d, C)
                                                for W in (Wk, Wv)]))
        full.qkv.bias.copy_(torch.cat([bq] + [b.view(Hkv, d).repeat_interleave(rep, 0).flatten() for b in (bk, bv)]))
    torch.testing.assert_close(g(x, causal=True), full(x, causal=True))
    assert g.qkv.weight.shape[0] == C + 2 * Hkv * d  # fewer key/value parameters


@pytest.mark.parametrize("Hkv", [4, 2])
def test_attention_weights_are_a_distribution_that_respects_the_mask(Hkv):
    a = make_attention(16, 4, Hkv)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    q, k, v = a.project(x, x)
    mask = random_mask(2, 1, 5, 5)
    w = a.weights(q, k, mask=mask)
    assert w.shape == (2, 4, 5, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5, dtype=torch.float64))
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()
    # the pattern is the one `attend` uses
    v_rep = v.repeat_interleave(4 // Hkv, dim=1)
    torch.testing.assert_close(w @ v_rep, a.attend(q, k, v, mask=mask))
    wc = a.weights(q, k, causal=True)
    assert (wc.triu(1) == 0).all()
    torch.testing.assert_close(wc @ v_rep, a.attend(q, k, v, causal=True))
    bias = torch.randn(4, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(a.weights(q, k, bias=bias) @ v_rep, a.attend(q, k, v, bias=bias))


def test_causal_mask_for_queries_at_the_end():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())
    assert causal_mask(1, 5).all()


@pytest.mark.parametrize("Hkv", [4, 2])
@pytest.mark.parametrize("use_rope", [False, True])
def test_kv_cache_incremental_equals_full_causal_attention(Hkv, use_rope):
    a = make_attention(16, 4, Hkv)
    rope = RoPE(4)
    T = 9
    x = torch.randn(2, T, 16, dtype=torch.float64)
    pos = torch.arange(T)
    full = a(x, causal=True, rotary=rope(pos, pos) if use_rope else None)
    cache, outs, start = KVCache(), [], 0
    for size in (3, 1, 4, 1):
        q_pos, k_pos = pos[start:start + size], pos[:start + size]
        rot = rope(q_pos, k_pos) if use_rope else None
        outs.append(a(x[:, start:start + size], causal=True, rotary=rot, cache=cache))
        start += size
        assert len(cache) == start
    torch.testing.assert_close(torch.cat(outs, 1), full)
    assert cache.k.shape == (2, Hkv, T, 4)


def test_attention_rejects_bad_head_counts():
    with pytest.raises(ValueError):
        Attention(10, 3)
    with pytest.raises(ValueError):
        Attention(12, 4, 3)


# --- MLP --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_mlp_parameter_count_is_about_8_c_squared(kind):
    C = 96
    n = sum(p.numel() for p in MLP(C, kind).parameters())
    assert abs(n - 8 * C * C) / (8 * C * C) < 0.01
    if kind == "gelu":
        assert n == 8 * C * C


def test_mlp_formulas():
    C = 8
    x = torch.randn(3, C)
    g = randomize(MLP(C, "gelu", bias=True)).eval()
    want = F.gelu(x @ g.up.weight.T + g.up.bias) @ g.down.weight.T + g.down.bias
    torch.testing.assert_close(g(x), want)
    s = randomize(MLP(C, "swiglu")).eval()
    want = (F.silu(x @ s.gate.weight.T) * (x @ s.up.weight.T)) @ s.down.weight.T
    torch.testing.assert_close(s(x), want)
    with pytest.raises(ValueError, match="mlp"):
        MLP(C, "tanh")


# --- the residual block -----------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["rms", "layer", "cosine"])
def test_block_is_pre_norm_residual(norm):
    b = randomize(Block(16, 4, norm=norm, mlp="swiglu", bias=True)).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    h = x + b.attn(b.norm1(x), causal=True)
    torch.testing.assert_close(b(x), h + b.mlp(b.norm2(h)))


def test_block_with_memory_equals_attention_over_the_concatenation():
    b = randomize(Block(16, 4, norm="layer", bias=True)).double().eval()
    M, T = 4, 5
    mem, x = torch.randn(2, M, 16, dtype=torch.float64), torch.randn(2, T, 16, dtype=torch.float64)
    got = b(x, memory=mem, causal=True)
    want = b(torch.cat([mem, x], 1), causal=True)[:, M:]
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, b(x, causal=True))  # the memory is used


def test_block_cross_attention_reads_the_encoder():
    b = randomize(Block(16, 4, cross=True)).double().eval()
    x, enc = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 7, 16, dtype=torch.float64)
    h = x + b.attn(b.norm1(x), causal=True)
    h = h + b.cross(b.norm_cross(h), enc)
    torch.testing.assert_close(b(x, enc=enc), h + b.mlp(b.norm2(h)))


class WeightSharedGPT(DecoderLM):
    """A GPT whose n_layer layers are one Block applied n_layer times (decoder_parts(..., shared=True))."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(
            cfg, cfg.block_size, shared=True)
        self.init_weights(depth=cfg.n_layer)


def test_a_shared_stack_is_one_block_applied_n_times_and_streams_like_any_decoder():
    cfg = model_config("gpt", vocab_size=13, d_model=16, n_head=2, n_layer=3, block_size=16)
    blocks = stack(cfg, 3, shared=True)
    assert len(blocks) == 3 and blocks[0] is blocks[1] is blocks[2]
    torch.manual_seed(0)
    m = WeightSharedGPT(cfg).eval()
    one_layer = build_model(model_config("gpt", vocab_size=13, d_model=16, n_head=2, n_layer=1, block_size=16))
    assert m.num_params() == one_layer.num_params()                # the weights of one layer
    x = torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(0))
    rotary = m.positions.rope(torch.arange(9), torch.arange(9))
    h = m.embed(x)
    for _ in range(3):
        h = m.blocks[0](h, causal=True, rotary=rotary)
    with torch.no_grad():
        torch.testing.assert_close(m(x).logits, m.head(m.norm(h)))      # the block, three times
        state = m.init_state(2)                                          # a cache per application
        streamed = torch.cat([m(x[:, a:b], state).logits for a, b in ((0, 4), (4, 5), (5, 9))], dim=1)
        torch.testing.assert_close(streamed, m(x).logits)
    again = WeightSharedGPT(cfg)
    again.load_state_dict(m.state_dict())                               # every index names the one block
    assert again.blocks[0] is again.blocks[2]
    torch.testing.assert_close(again.eval()(x).logits, m(x).logits)


def test_positions_after_a_cache_are_consecutive_ranges():
    assert positions_after(0, 4) == (range(4), range(4))
    q, k = positions_after(0, 4)
    assert q is k                                                       # one tensor, when they become tensors
    assert positions_after(5, 2) == (range(5, 7), range(7))


# --- the model: parameter groups, tying, initialisation ---------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(pos="learned", norm="layer", bias=True, tie_weights=False),
    dict(pos="relative", norm="cosine", bias=True, tie_weights=True),
    dict(pos="rope", norm="rms", bias=False, tie_weights=True, n_kv_head=1),
    dict(pos="sinusoidal", norm="layer", bias=False, tie_weights=False, mlp="swiglu"),
], ids=["learned", "relative", "rope", "sinusoidal"])
def test_param_groups_decay_exactly_the_matrices_of_linear_maps(kw):
    m = build_model(model_config("gpt", vocab_size=13, d_model=16, n_head=2, n_layer=2, block_size=8, **kw))
    decay, no_decay = m.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    d_ids = [id(p) for p in decay["params"]]
    n_ids = [id(p) for p in no_decay["params"]]
    assert len(set(d_ids)) == len(d_ids) and len(set(n_ids)) == len(n_ids)  # no duplicates
    assert not set(d_ids) & set(n_ids)  # no parameter in both
    everything = {id(p) for p in m.parameters()}
    assert set(d_ids) | set(n_ids) == everything  # none missing
    linear = {id(mod.weight) for mod in m.modules() if isinstance(mod, nn.Linear)}
    if not kw["tie_weights"]:
        linear.add(id(m.head.weight))  # an untied head is a linear map
    names = {id(p): n for n, p in m.named_parameters()}
    wrong = sorted(names[i] for i in set(d_ids) ^ linear)
    assert not wrong, f"decayed but not a linear map's matrix (or the reverse): {wrong}"
    # the rest are norms' gains, biases, embeddings and position tables
    assert id(m.embed.weight) in n_ids
    for pid in n_ids:
        assert any(s in names[pid] for s in ("norm", "bias", "embed", "positions")), names[pid]
    torch.optim.AdamW(m.param_groups(0.1))  # AdamW accepts the groups


def test_tied_head_shares_the_embedding_tensor():
    cfg = dict(vocab_size=13, d_model=16, n_head=2, n_layer=1, block_size=8, pos="rope")
    m = build_model(model_config("gpt", tie_weights=True, **cfg))
    assert m.head.weight is m.embed.weight
    assert m.num_params() == sum(p.numel() for p in m.parameters())  # counted once
    assert m.num_params(embedding=False) == m.num_params() - 13 * 16
    x = torch.tensor([[1, 2, 3]])
    m(x).logits.sum().backward()
    assert m.embed.weight.grad is not None
    opt = torch.optim.AdamW(m.param_groups(0.1), lr=0.1)
    opt.step()
    assert m.head.weight is m.embed.weight
    torch.testing.assert_close(m(x).logits, m.norm(m.blocks[0](m.embed(x), causal=True, rotary=m.positions.rope(
        torch.arange(3), torch.arange(3)))) @ m.embed.weight.T)
    u = build_model(model_config("gpt", tie_weights=False, **cfg))
    assert u.head.weight is not u.embed.weight
    assert u.num_params() == m.num_params() + 13 * 16
    assert isinstance(u.embed, TokenEmbedding) and isinstance(u.head, LMHead)


def test_init_std_of_residual_projections_is_scaled_by_depth():
    torch.manual_seed(1)
    n_layer = 8
    m = build_model(model_config("gpt", vocab_size=64, d_model=64, n_head=4, n_layer=n_layer, block_size=8,
                                 bias=True, tie_weights=False))
    residual = torch.cat([w.flatten() for n, w in m.named_parameters()
                          if n.endswith("attn.proj.weight") or n.endswith("mlp.down.weight")])
    other = torch.cat([w.flatten() for n, w in m.named_parameters()
                       if n.endswith(("attn.qkv.weight", "mlp.up.weight"))])
    biases = torch.cat([w.flatten() for n, w in m.named_parameters() if n.endswith(".bias") and "norm" not in n])
    want = 0.02 / math.sqrt(2 * n_layer)
    assert residual.std().item() == pytest.approx(want, rel=0.05)
    assert abs(residual.mean().item()) < want / 10
    assert other.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.embed.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert m.head.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert (biases == 0).all()
