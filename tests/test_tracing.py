"""Tests of modules/tracing.py: the trace text, its filters, statistics, the tensor cache, and scoping
(docs/design.md#tracing)."""
from collections import namedtuple

import pytest
import torch
from torch import nn

from config import model_config
from modules import LoggingModule, build_model, log_io, trace
from modules.base import Batch

EXPECTED_DEPTH_2 = """\
GPT.forward
  < batch: (1, 4) int64
  GPT.body
    < x: (1, 4) int64
    embed: TokenEmbedding.forward
      < ids: (1, 4) int64
      > out: (1, 4, 8) float32
    positions.rope: RoPE.forward
      < q_pos: (4,) int64
      < k_pos: (4,) int64
      > out: Rotary
    blocks.0: Block.forward
      < x: (1, 4, 8) float32
      < causal: True
      < rotary: Rotary
      > out: (1, 4, 8) float32
    norm: RMSNorm.forward
      < x: (1, 4, 8) float32
      > out: (1, 4, 8) float32
    > out: (1, 4, 8) float32
  head: LMHead.forward
    < h: (1, 4, 8) float32
    > out: (1, 4, 11) float32
  > out.logits: (1, 4, 11) float32
  > out.loss: None
  > out.state: None"""


def tiny(n_layer=1, **kw):
    torch.manual_seed(0)
    cfg = model_config("gpt", vocab_size=11, d_model=8, n_head=2, block_size=8, n_layer=n_layer,
                       norm="rms", pos="rope", **kw)
    return build_model(cfg).eval()


X = torch.tensor([[1, 2, 3, 4]])


def traced_paths(t):
    return [e.path for e in t.events]


def tracers(model):
    return [name for name, m in model.named_modules() if m.__dict__.get("_tracer") is not None
            or getattr(m, "_tracer", None) is not None]


# --- the text --------------------------------------------------------------------------------------
def test_trace_text_of_a_one_layer_gpt_is_exactly_as_expected():
    m = tiny()
    with trace(m, depth=2) as t:
        m(X)
    assert t.text() == EXPECTED_DEPTH_2
    assert str(t) == EXPECTED_DEPTH_2
    assert repr(t).startswith("<Trace of 7 calls")


def test_trace_text_is_stable_across_runs_and_weights():
    m1, m2 = tiny(), tiny()
    nn.init.normal_(m2.embed.weight)  # values differ, shapes do not: the text (no stats) is the same
    texts = []
    for m in (m1, m2, m1):
        with trace(m) as t:
            m(X)
        texts.append(t.text())
    assert texts[0] == texts[1] == texts[2]


def test_nested_calls_are_indented_under_their_caller():
    m = tiny()
    with trace(m, only=("attn",)) as t:
        m(X)
    lines = t.text().splitlines()
    assert lines[0] == "blocks.0.attn: Attention.forward"
    assert "  blocks.0.attn: Attention.project" in lines
    assert "  blocks.0.attn: Attention.attend" in lines
    assert "    < q: (1, 2, 4, 4) float32" in lines  # the children's own arguments, one level deeper
    assert lines[-1] == "  > out: (1, 4, 8) float32"  # the caller's output comes after its children
    root = t.roots[0]
    assert [c.fn for c in root.children] == ["project", "rotate", "attend", "merge_heads"]
    assert [c.fn for c in root.children[0].children] == ["split_heads"] * 3  # q, k, v split into heads
    assert len(t.roots) == 1


# --- filters ----------------------------------------------------------------------------------------
def test_depth_limits_the_recorded_paths():
    m = tiny(n_layer=2)
    for depth in (0, 1, 2, 3, None):
        with trace(m, depth=depth) as t:
            m(X)
        paths = traced_paths(t)
        assert paths, depth
        deepest = max(len(p.split(".")) if p else 0 for p in paths)
        if depth is None:
            assert "blocks.1.attn" in paths and deepest == 3
        else:
            assert deepest == depth
    with trace(m, depth=0) as t:
        m(X)
    assert traced_paths(t) == ["", ""]  # the model's own steps: forward and body


def test_only_by_name_records_the_module_and_what_it_contains():
    m = tiny(n_layer=2)
    with trace(m, only=("attn",)) as t:
        m(X)
    assert sorted(set(traced_paths(t))) == ["blocks.0.attn", "blocks.1.attn"]
    with trace(m, only="mlp") as t:  # a bare string is one name, not a sequence of letters
        m(X)
    assert sorted(set(traced_paths(t))) == ["blocks.0.mlp", "blocks.1.mlp"]
    with trace(m, only=("blocks",)) as t:  # a container selects everything inside it
        m(X)
    paths = set(traced_paths(t))
    assert {"blocks.0", "blocks.1", "blocks.0.attn", "blocks.1.mlp", "blocks.0.norm1"} <= paths
    assert "" not in paths and "head" not in paths and "norm" not in paths


def test_only_with_glob_patterns_on_the_path():
    m = tiny(n_layer=2)
    with trace(m, only=("blocks.1.*",)) as t:
        m(X)
    paths = set(traced_paths(t))
    assert paths == {"blocks.1.norm1", "blocks.1.attn", "blocks.1.norm2", "blocks.1.mlp"}
    with trace(m, only=("norm*",)) as t:
        m(X)
    assert set(traced_paths(t)) == {"norm", "blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1",
                                    "blocks.1.norm2"}
    with trace(m, only=("blocks.?.attn", "head")) as t:
        m(X)
    assert set(traced_paths(t)) == {"blocks.0.attn", "blocks.1.attn", "head"}
    with pytest.raises(ValueError, match="nothing_here.*selects no module.*'attn'"):
        with trace(m, only=("nothing_here",)):
            m(X)
    with pytest.raises(ValueError, match="not method names"):  # a method name is a common slip
        with trace(m, only=("attend",)):
            m(X)


def test_depth_and_only_combine():
    m = tiny(n_layer=2)
    with trace(m, depth=2, only=("blocks",)) as t:
        m(X)
    assert set(traced_paths(t)) == {"blocks.0", "blocks.1"}


# --- what an event says -----------------------------------------------------------------------------
Pair = namedtuple("Pair", "first second")


class Toy(LoggingModule):
    """Arguments and outputs of every kind the tracer flattens."""

    def __init__(self):
        super().__init__()
        self.inner = Inner()

    @log_io
    def forward(self, x, y=None, *, scale: float = 1.0, flag: bool = False, name: str = "toy"):
        z = self.inner(x) * scale
        return {"tuple": (z, [z[:1], z[1:]]), "pair": Pair(z.sum(), None), "n": 3, "obj": object()}


class Inner(LoggingModule):
    @log_io
    def forward(self, x):
        return x + 1


def test_keyword_arguments_are_labelled_by_name_and_outputs_recurse():
    toy = Toy()
    x = torch.zeros(2, 3)
    with trace(toy) as t:
        toy(x, flag=True, scale=2.0, name="t")
    root = t.roots[0]
    assert root.inputs == [("x", "(2, 3) float32"), ("scale", "2.0"), ("flag", "True"), ("name", "'t'")]
    # y was left at None: it is not listed (it says nothing about shapes); arguments come in signature
    # order whatever order the call wrote them in; defaults that were not passed are not listed
    assert root.outputs == [
        ("out.tuple[0]", "(2, 3) float32"),
        ("out.tuple[1][0]", "(1, 3) float32"),
        ("out.tuple[1][1]", "(1, 3) float32"),
        ("out.pair.first", "() float32"),
        ("out.pair.second", "None"),
        ("out.n", "3"),
        ("out.obj", "object"),
    ]
    assert [c.path for c in root.children] == ["inner"]


def test_positional_arguments_get_their_parameter_names():
    toy = Toy()
    with trace(toy) as t:
        toy(torch.zeros(2, 3), torch.ones(4))  # y passed by position
    assert t.roots[0].inputs == [("x", "(2, 3) float32"), ("y", "(4,) float32")]


def test_dataclass_batch_is_described_field_by_field():
    m = tiny()
    b = Batch(X, torch.tensor([[2, 3, 4, 5]]))
    with trace(m, depth=0) as t:
        m(b)
    assert t.roots[0].inputs == [("batch.x", "(1, 4) int64"), ("batch.y", "(1, 4) int64")]
    assert t.roots[0].outputs[1] == ("out.loss", "() float32")


def test_stats_add_min_max_mean():
    inner = Inner()
    x = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    with trace(inner, stats=True) as t:
        inner(x)
    (e,) = t.events
    assert e.inputs == [("x", "(2, 3) float32 min 0 max 5 mean 2.5")]
    assert e.outputs == [("out", "(2, 3) float32 min 1 max 6 mean 3.5")]
    with trace(inner) as t:  # off by default
        inner(x)
    assert "min" not in t.text()


def test_stats_on_a_model_use_three_significant_digits():
    m = tiny()
    with trace(m, only=("head",), stats=True, keep=True) as t:
        m(X)
    out = t.cache["head.forward.out"]
    want = f"min {out.min().item():.3g} max {out.max().item():.3g} mean {out.mean().item():.3g}"
    assert t.roots[0].outputs == [("out", f"(1, 4, 11) float32 {want}")]


# --- the cache --------------------------------------------------------------------------------------
def test_keep_fills_the_cache_with_the_real_activations():
    m = tiny(n_layer=2)
    seen = {}
    hooks = [m.norm.register_forward_hook(lambda mod, inp, out: seen.__setitem__("norm", out.clone())),
             m.blocks[1].attn.register_forward_hook(lambda mod, inp, out: seen.__setitem__("attn", out.clone())),
             m.blocks[0].register_forward_pre_hook(lambda mod, inp: seen.__setitem__("block_in", inp[0].clone()))]
    try:
        with trace(m, keep=True) as t:
            out = m(X)
    finally:
        for h in hooks:
            h.remove()
    assert torch.equal(t.cache["norm.forward.out"], seen["norm"])
    assert torch.equal(t.cache["blocks.1.attn.forward.out"], seen["attn"])
    assert torch.equal(t.cache["blocks.0.forward.x"], seen["block_in"])
    assert torch.equal(t.cache["forward.out.logits"], out.logits)
    assert torch.equal(t.cache["forward.batch"], X)
    assert "blocks.0.attn.attend.q" in t.cache and t.cache["blocks.0.attn.attend.q"].shape == (1, 2, 4, 4)
    assert all(not v.requires_grad for v in t.cache.values())  # detached: the cache holds no graph


def test_cache_is_empty_without_keep():
    m = tiny()
    with trace(m) as t:
        m(X)
    assert t.cache == {}


# --- scoping and neutrality -------------------------------------------------------------------------
def test_tracing_is_scoped_to_the_with_block():
    m = tiny(n_layer=2)
    with trace(m) as t:
        m(X)
    n = len(t.events)
    assert n > 0
    assert tracers(m) == []
    # no instance keeps a wrapper or a tracer: every method is the class's own again
    assert all(not any(k in mod.__dict__ for k in ("_tracer", "forward", "attend", "body"))
               for mod in m.modules())
    m(X)
    assert len(t.events) == n  # nothing recorded after the block


def test_tracer_is_removed_even_when_the_block_raises():
    m = tiny()
    with pytest.raises(RuntimeError, match="boom"):
        with trace(m):
            raise RuntimeError("boom")
    assert tracers(m) == []
    with pytest.raises(IndexError):
        with trace(m) as t:
            m(torch.tensor([[1, 2, 99]]))  # id out of the vocabulary: the embedding raises inside a call
    assert tracers(m) == []
    assert t._stack == []  # the call stack unwound
    with trace(m, depth=0) as t2:
        m(X)
    assert len(t2.roots) == 1 and [c.fn for c in t2.roots[0].children] == ["body"]


def test_nested_traces_restore_the_outer_one():
    m = tiny()
    with trace(m) as outer:
        with trace(m.blocks[0], only=("attn",)) as inner:
            m(X)
        inner_n = len(inner.events)
        before = len(outer.events)
        m(X)
        assert len(outer.events) > before
        assert m.blocks[0].attn._tracer is outer
    assert inner_n > 0 and len(inner.events) == inner_n
    assert tracers(m) == []


def test_outputs_are_identical_with_tracing_on_and_off():
    m = tiny(n_layer=2)
    b = Batch(X, torch.tensor([[2, 3, 4, 5]]))
    plain = m(b)
    with trace(m, stats=True, keep=True):
        traced = m(b)
    again = m(b)
    for o in (traced, again):
        assert torch.equal(o.logits, plain.logits) and torch.equal(o.loss, plain.loss)


def test_gradients_flow_through_a_traced_call():
    m = tiny().train()
    with trace(m, keep=True):
        loss = m(Batch(X, torch.tensor([[2, 3, 4, 5]]))).loss
    loss.backward()
    assert m.embed.weight.grad is not None and m.embed.weight.grad.abs().sum() > 0


# --- HTML -------------------------------------------------------------------------------------------
def test_html_is_collapsible_and_escaped():
    m = tiny()
    with trace(m, depth=1) as t:
        m(X)
    h = t.html()
    assert h.count("<details>") == len(t.events) == h.count("</details>")
    assert "<summary>" in h and "GPT.forward" in h and "head: LMHead.forward" in h
    assert "&lt; batch: (1, 4) int64" in h and "&gt; out.logits" in h
    assert "< batch" not in h  # the markers are escaped
