"""Tests of the Recurrent Memory Transformer (modules/rmt.py): the read/segment/write mask, no leak through
the write memory, causality, BPTT depth, memory carried across segments, and streaming."""
import pytest
import torch

from config import ConfigError, model_config
from modules import build_model
from modules.base import IGNORE, Batch
from modules.rmt import read_write_mask

V, SEG = 13, 4


def make(n_mem=3, **fields):
    torch.manual_seed(0)
    cfg = model_config("rmt", vocab_size=V, block_size=24, seg_len=SEG, n_layer=2, d_model=32, n_head=2,
                       n_mem=n_mem, **fields)
    return build_model(cfg).eval()


def ids(B=2, T=22, seed=1):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the mask ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("m, T", [(3, 4), (1, 5), (4, 1)])
def test_mask_regions(m, T):
    mask = read_write_mask(m, T)
    read, seg, write = slice(0, m), slice(m, m + T), slice(m + T, 2 * m + T)
    assert mask.shape == (2 * m + T, 2 * m + T)
    assert mask[read, read].all() and not mask[read, m:].any()          # read memory: itself only
    assert mask[seg, read].all()                                        # segment reads the memory
    assert torch.equal(mask[seg, seg], torch.ones(T, T, dtype=torch.bool).tril())  # causally
    assert not mask[seg, write].any()                                   # never the write memory
    assert mask[write].all()                                            # write: everything


def test_mask_without_memory_is_causal_and_start_layout_has_no_write_rows():
    assert torch.equal(read_write_mask(0, 5), torch.ones(5, 5, dtype=torch.bool).tril())
    start = read_write_mask(2, 3, "start")
    assert start.shape == (5, 5) and not start[:2, 2:].any() and start[2:, :2].all()


# --- no leak ----------------------------------------------------------------------------------------
def perturb_write_rows(model, monkeypatch):
    """Make the model's write-memory input rows differ from its read-memory rows by random noise."""
    place = model.place_memory

    def noisy(memory, x):
        h = place(memory, x).clone()
        h[:, -memory.shape[1]:] += torch.randn_like(h[:, -memory.shape[1]:])
        return h
    monkeypatch.setattr(model, "place_memory", noisy)


def test_segment_tokens_do_not_depend_on_the_write_memory(monkeypatch):
    model, x = make(), ids(T=SEG)                                       # one segment
    clean = model(x).logits
    perturb_write_rows(model, monkeypatch)
    assert torch.allclose(model(x).logits, clean, atol=1e-6)


def test_a_leaky_mask_is_caught(monkeypatch):
    """Negative control: if segment rows could see the write rows, both checks above would fail."""
    def leaky(n_mem, seg_len, mem_at="both", device=None):
        mask = read_write_mask(n_mem, seg_len, mem_at, device)
        mask[n_mem:n_mem + seg_len, n_mem + seg_len:] = True
        return mask
    monkeypatch.setattr("modules.rmt.read_write_mask", leaky)
    model, x = make(), ids(T=SEG)
    clean = model(x).logits
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % V                                     # the segment's last token
    assert not torch.allclose(model(x2).logits[:, :-1], clean[:, :-1])  # leaks into earlier positions
    perturb_write_rows(model, monkeypatch)
    assert not torch.allclose(model(x).logits, clean)


# --- causality and memory ---------------------------------------------------------------------------
@pytest.mark.parametrize("fields", [{}, {"n_mem": 0}, {"mem_at": "start"}, {"pos": "rope"}, {"pos": "learned"},
                                    {"pos": "sinusoidal"}])
@pytest.mark.parametrize("p", [0, 5, 13, 21])
def test_causal(fields, p):
    model, x = make(**fields), ids()
    x2 = x.clone()
    x2[:, p] = (x2[:, p] + 1) % V
    a, b = model(x).logits, model(x2).logits
    assert torch.equal(a[:, :p], b[:, :p])
    assert not torch.allclose(a[:, p], b[:, p])


@pytest.mark.parametrize("fields, carried", [({}, True), ({"n_mem": 0}, False), ({"mem_at": "start"}, False)])
def test_what_crosses_segments(fields, carried):
    """Only memory written after the segment carries it: without memory, or with memory at the start only
    (whose outputs see nothing but the old memory), later segments cannot depend on earlier tokens."""
    model, x = make(**fields), ids()
    x2 = x.clone()
    x2[:, 1] = (x2[:, 1] + 1) % V                                       # in the first segment
    later = slice(SEG, None)
    assert torch.allclose(model(x).logits[:, later], model(x2).logits[:, later]) != carried


def test_initial_memory_rows_are_distinct():
    w = make(n_mem=4).init_memory
    assert w.shape == (4, 32)
    assert torch.cdist(w, w).add(torch.eye(4)).min() > 0.05


# --- BPTT depth -------------------------------------------------------------------------------------
def loss_on_segment(x, s):
    y = torch.full_like(x, IGNORE)
    y[:, s * SEG:(s + 1) * SEG] = x[:, s * SEG:(s + 1) * SEG]
    return Batch(x, y)


@pytest.mark.parametrize("depth", [-1, 0, 1, 2])
def test_bptt_depth_truncates_gradients_to_the_initial_memory(depth):
    """The initial memory enters segment 0 only, so a loss on segment s reaches it across s hand-overs:
    with bptt_depth = k it must get a gradient exactly when s <= k (always for full BPTT)."""
    model, x = make(bptt_depth=depth).train(), ids(T=20)
    for s in range(5):
        model.zero_grad(set_to_none=True)
        model(loss_on_segment(x, s)).loss.backward()
        grad = model.init_memory.grad
        reached = grad is not None and grad.abs().sum() > 0
        assert reached == (depth == -1 or s <= depth), (depth, s)


def test_bptt_depth_one_cuts_between_blocks_of_two_segments():
    """k = 1 detaches the memory entering segments 2, 4, ...: a loss on segment 3 reaches the tokens of
    segment 2 through one hand-over, not those of segment 1."""
    model, x = make(bptt_depth=1).train(), ids(T=20)
    outs = []
    model.embed.register_forward_hook(lambda mod, inp, out: outs.append(out) or out.retain_grad())
    model(loss_on_segment(x, 3)).loss.backward()
    grads = [o.grad.abs().sum().item() if o.grad is not None else 0.0 for o in outs]
    assert grads[2] > 0 and grads[3] > 0 and grads[0] == grads[1] == 0


# --- streaming --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields", [{}, {"n_mem": 0}, {"mem_at": "start"}, {"pos": "rope"}])
def test_streaming_equals_the_whole_sequence(fields):
    model, x = make(**fields), ids()
    full = model(x).logits
    state = model.init_state(x.shape[0])
    parts = [model(x[:, :6], state).logits] + [model(x[:, t:t + 1], state).logits for t in range(6, 22)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)
    assert state.memory.shape == (2, model.cfg.n_mem, 32) and state.filled == 22 % SEG


def test_streaming_state_does_not_grow():
    """(Generation equal to recomputation, for both segment-recurrent models: test_transformer_xl.py.)"""
    model = make()
    state = model.init_state(1)
    with torch.no_grad():
        for chunk in ids(B=1, T=200).split(7, dim=1):
            model(chunk, state)
    assert state.memory.shape == (1, 3, 32) and state.filled < SEG and state.segments == 200 // SEG


# --- configuration ----------------------------------------------------------------------------------
def test_config_rejects_memory_at_start_without_memory_and_segments_longer_than_the_block():
    with pytest.raises(ConfigError, match="n_mem"):
        model_config("rmt", n_mem=0, mem_at="start")
    with pytest.raises(ConfigError, match="seg_len = 40"):
        model_config("rmt", block_size=32, seg_len=40)
