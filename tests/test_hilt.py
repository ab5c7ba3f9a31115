"""Tests of HILT (modules/hilt.py): with the modulation scale at 0 it is exactly its GPT, the curriculum
through `on_step` (evaluation at mod_end), causality, streaming through the KV cache, the ILT reading each
token apart, and the config checks."""
import pytest
import torch

from config import ConfigError, model_config
from inference import generate_ids
from modules import build_model, trace

V, B, T = 13, 2, 17
SIZES = dict(vocab_size=V, d_model=16, n_head=2, n_layer=3, block_size=32)


def make(seed=0, **kw):
    torch.manual_seed(seed)
    m = build_model(model_config("hilt", **{**SIZES, "ilt_dim": 8, **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m.eval()


def ids(n=T, seed=1):
    return torch.randint(0, V, (B, n), generator=torch.Generator().manual_seed(seed))


def test_with_scale_zero_the_logits_equal_those_of_the_gpt_with_the_same_weights():
    h = make(mod_start=0.0, mod_end=0.0)
    gpt = build_model(model_config("gpt", **SIZES)).eval()
    missing = gpt.load_state_dict({k: v for k, v in h.state_dict().items() if not k.startswith("ilts.")})
    assert not missing.missing_keys and not missing.unexpected_keys
    x = ids()
    assert torch.equal(h(x).logits, gpt(x).logits)
    h.train(), h.on_step(0.3)
    assert torch.equal(h(x).logits, gpt(x).logits)  # dropout 0 in the main model; the ILT's is scaled by 0
    # ... and the modulation does change the logits when the scale is not 0
    on = make(mod_start=0.0, mod_end=0.5)
    assert (on(x).logits - gpt(x).logits).abs().max() > 1e-3


def test_curriculum_through_on_step_and_mod_end_in_eval():
    m = make(mod_start=0.01, mod_end=0.1)
    m.train()
    for progress, want in [(0.0, 0.01), (0.5, 0.055), (1.0, 0.1)]:
        m.on_step(progress)
        assert m.scale == pytest.approx(want)
        assert m(ids()).aux["mod_scale"].item() == pytest.approx(want)
    m.on_step(0.2)
    m.eval()
    assert m.scale == pytest.approx(0.1) and m(ids()).aux["mod_scale"].item() == pytest.approx(0.1)


def test_eval_and_generation_use_mod_end_whatever_the_training_progress():
    a, b = make(), make()
    a.train(), a.on_step(0.0)
    a.eval()
    x = ids(6)
    assert torch.equal(a(x).logits, b(x).logits)
    assert torch.equal(generate_ids(a, x, 8, temperature=0), generate_ids(b, x, 8, temperature=0))


def test_training_loop_drives_the_curriculum(tmp_path):
    from config import TrainConfig
    from train import Trainer
    mcfg = model_config("hilt", d_model=16, n_head=2, n_layer=2, block_size=16, ilt_dim=8)
    tcfg = TrainConfig(task="copy", task_len=3, batch_size=2, max_iters=4, eval_iters=1, threads=1)
    trainer = Trainer(mcfg, tcfg, out=tmp_path / "run", progress=False, verbose=False)
    seen = []
    trainer.model.on_step = seen.append
    trainer.step = 2
    trainer.train_step(1e-3)
    assert seen == [0.5]


def test_causal():
    m = make()
    x = ids()
    base = m(x).logits
    for p in (0, 3, 9, T - 1):
        x2 = x.clone()
        x2[:, p] = (x2[:, p] + 1) % V
        out = m(x2).logits
        assert torch.equal(out[:, :p], base[:, :p]), f"a change at {p} leaked"
        assert (out[:, p] - base[:, p]).abs().max() > 1e-6


def test_kv_cache_in_chunks_equals_the_full_forward_and_generation_matches():
    m = make()
    x = ids()
    full = m(x).logits
    for sizes in [(1,) * T, (5, 1, 3, 8)]:
        state, outs, start = m.init_state(B), [], 0
        for n in sizes:
            outs.append(m(x[:, start:start + n], state).logits)
            start += n
        torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-5, rtol=0)
    g = torch.Generator
    a = generate_ids(m, x[:, :4], 12, temperature=1.0, use_cache=True, generator=g().manual_seed(0))
    b = generate_ids(m, x[:, :4], 12, temperature=1.0, use_cache=False, generator=g().manual_seed(0))
    assert torch.equal(a, b)


def test_ilt_reads_each_token_apart_over_the_depth_axis():
    m = make()
    ilt = m.ilts[0]
    prev, cur = torch.randn(B, 5, 16), torch.randn(B, 5, 16)
    out = ilt(prev, cur)
    cur2 = cur.clone()
    cur2[:, 3] += 1.0
    out2 = ilt(prev, cur2)
    changed = (out2 - out).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False, False, False, True, False]
    with trace(m) as t:
        m(ids(4))
    names = {e.name for e in t.events}
    assert {"modulate", "ilts.0.stack_depth", "ilts.0.per_token", "ilts.0.pool"} <= names, names
    assert len(m.ilts) == SIZES["n_layer"] - 1


def test_config_rejects_heads_that_do_not_divide_the_ilt_width():
    with pytest.raises(ConfigError, match="ilt_dim = 10 must be divisible by ilt_heads = 4"):
        model_config("hilt", ilt_dim=10, ilt_heads=4)
    with pytest.raises(ConfigError, match="mod_end"):
        model_config("hilt", mod_end=-0.1)
