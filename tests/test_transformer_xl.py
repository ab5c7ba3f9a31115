"""Tests of Transformer-XL (modules/transformer_xl.py): the cut into segments, the stop-gradient memory and
its reach, causality, and streaming; last, streamed generation of both segment-recurrent models."""
import pytest
import torch

from config import model_config
from inference import generate_ids
from modules import build_model
from modules.base import IGNORE, Batch
from modules.segments import segment_pieces

V, SEG = 13, 4


def make(mem_len=4, n_layer=2, **fields):
    torch.manual_seed(0)
    cfg = model_config("transformer_xl", vocab_size=V, block_size=24, seg_len=SEG, n_layer=n_layer, d_model=32,
                       n_head=2, mem_len=mem_len, **fields)
    return build_model(cfg).eval()


def ids(B=2, T=22, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_segment_pieces_cut_where_segments_end():
    x = torch.arange(11)[None]
    assert [p.tolist()[0] for p in segment_pieces(x, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert [p.shape[1] for p in segment_pieces(x, 4, filled=3)] == [1, 4, 4, 2]
    assert [p.shape[1] for p in segment_pieces(x[:, :1], 4, filled=2)] == [1]


# --- the memory -------------------------------------------------------------------------------------
def test_memory_is_detached_and_bounded():
    model, x = make(mem_len=6).train(), ids()
    state = model.init_state(2)
    model(x, state)
    assert all(not m.requires_grad and m.shape == (2, 6, 32) for m in state.memory)
    assert state.filled == 22 % SEG


def test_no_gradient_crosses_the_memory():
    """A loss on the last segment must not reach the embeddings of earlier segments (stop-gradient),
    although their values do reach it through the memory."""
    model, x = make().train(), ids(T=16)
    outs = []
    model.embed.register_forward_hook(lambda mod, inp, out: outs.append(out) or out.retain_grad())
    y = torch.full_like(x, IGNORE)
    y[:, -SEG:] = x[:, -SEG:]
    model(Batch(x, y)).loss.backward()
    assert outs[-1].grad.abs().sum() > 0
    assert all(o.grad is None or not o.grad.any() for o in outs[:-1])


@pytest.mark.parametrize("n_layer", [1, 2, 3])
def test_reach_grows_by_mem_len_per_layer(n_layer):
    """With mem_len = seg_len, layer l reaches l segments back: a token in segment 0 changes the logits of
    segments 1..n_layer and no later one."""
    model, x = make(mem_len=SEG, n_layer=n_layer), ids(T=24)
    x2 = x.clone()
    x2[:, 0] = (x2[:, 0] + 1) % V
    a, b = model(x).logits, model(x2).logits
    changed = [not torch.allclose(a[:, s * SEG:(s + 1) * SEG], b[:, s * SEG:(s + 1) * SEG]) for s in range(6)]
    assert changed == [s <= n_layer for s in range(6)]


def test_without_memory_segments_are_independent():
    model, x = make(mem_len=0), ids()
    x2 = x.clone()
    x2[:, 1] = (x2[:, 1] + 1) % V
    assert torch.equal(model(x).logits[:, SEG:], model(x2).logits[:, SEG:])


# --- causality and streaming ------------------------------------------------------------------------
@pytest.mark.parametrize("pos", ["relative", "rope", "learned", "sinusoidal"])
@pytest.mark.parametrize("p", [0, 6, 13, 21])
def test_causal(pos, p):
    model, x = make(mem_len=5, pos=pos), ids()
    x2 = x.clone()
    x2[:, p] = (x2[:, p] + 1) % V
    a, b = model(x).logits, model(x2).logits
    assert torch.equal(a[:, :p], b[:, :p])
    assert not torch.allclose(a[:, p], b[:, p])


@pytest.mark.parametrize("mem_len", [0, 3, 4, 9])
@pytest.mark.parametrize("pos", ["relative", "rope"])
def test_streaming_equals_the_whole_sequence(mem_len, pos):
    model, x = make(mem_len=mem_len, pos=pos), ids()
    full = model(x).logits
    state = model.init_state(x.shape[0])
    parts = [model(x[:, :6], state).logits] + [model(x[:, t:t + 1], state).logits for t in range(6, 22)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_streaming_state_does_not_grow():
    model = make(mem_len=6)
    state = model.init_state(1)
    with torch.no_grad():
        for chunk in ids(B=1, T=200).split(7, dim=1):
            model(chunk, state)
    assert all(m.shape == (1, 6, 32) for m in state.memory) and state.filled < SEG


@pytest.mark.parametrize("arch, fields", [("transformer_xl", {"mem_len": 4}), ("rmt", {"n_mem": 3}),
                                          ("rmt", {"n_mem": 2, "mem_at": "start"})])
def test_streaming_generation_equals_greedy_recomputation(arch, fields):
    """Both segment-recurrent models: greedy tokens with the streaming state (one token per call) are those
    of recomputing the whole sequence at every step."""
    torch.manual_seed(0)
    model = build_model(model_config(arch, vocab_size=V, block_size=24, seg_len=SEG, n_layer=2, d_model=32,
                                     n_head=2, **fields)).eval()
    prompt = ids(T=5)
    cached = generate_ids(model, prompt, 30, temperature=0, use_cache=True)
    recomputed = generate_ids(model, prompt, 30, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)
