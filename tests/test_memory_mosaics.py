"""Memory Mosaics (modules/memory_mosaics.py): causality with a look-ahead negative control, the two forms of
the leaky average, incremental generation against recomputation, parameter parity with the GPT, the per-head
scalars out of weight decay, and a few training steps that lower the loss."""
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from config import ConfigError, TrainConfig, model_config
from inference import generate_ids
from modules import build_model
from modules.memory_mosaics import ContextMem, leaky_chunked, leaky_matrix

VOCAB, T, B = 13, 16, 2


def make(seed=0, noise=0.2, **kw):
    """A small model; every parameter perturbed so that no init symmetry hides a bug."""
    torch.manual_seed(seed)
    m = build_model(model_config("memory_mosaics", **{**dict(vocab_size=VOCAB, n_layer=2, d_model=16, n_head=2,
                                                             block_size=T), **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * noise)
    return m.eval()


def tokens(seed=0, n=T, b=B):
    return torch.randint(0, VOCAB, (b, n), generator=torch.Generator().manual_seed(seed))


def check_causal(model, x, positions=(0, 1, 4, 7, T - 2, T - 1)):
    base = model(x).logits
    for p in positions:
        x2 = x.clone()
        x2[:, p] = (x2[:, p] + 1) % VOCAB
        out = model(x2).logits
        assert torch.equal(out[:, :p], base[:, :p]), f"a change at {p} leaked into earlier logits"
        assert ((out[:, p] - base[:, p]).abs().amax(-1) > 1e-6).all(), f"a change at {p} did not change logits at {p}"


# --- causality ------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["matrix", "chunked"])
@pytest.mark.parametrize("persistent", ["pmem", "mlp"])
def test_causal(form, persistent):
    check_causal(make(leaky_form=form, persistent=persistent), tokens())


def test_reading_a_value_too_early_is_caught(monkeypatch):
    """Negative control: query t allowed to read v_t, which mixes in x_{t+1}, must fail the causality check."""
    def leaky_forward(self, x, memory=None):
        k, _ = self.keys(x)
        v = self.project_values(x)
        v = self.look_ahead(F.pad(v, (0, 0, 0, 1)))              # all T values, v_{T-1} with a zero future
        y = F.scaled_dot_product_attention(k, k, v, is_causal=True, scale=1.0)  # j <= t: one step too far
        return self.proj(self.merge_heads(y))

    m = make()
    check_causal(m, tokens())
    monkeypatch.setattr(ContextMem, "forward", leaky_forward)
    with pytest.raises(AssertionError, match="leaked"):
        check_causal(m, tokens())


# --- the two forms of the leaky average -----------------------------------------------------------
def recurrence(k, beta, carry=None):
    """k_t = k~_t + exp(-beta) k_{t-1}, one step at a time (the definition)."""
    run = torch.zeros_like(k[:, :, 0]) if carry is None else carry[:, :, 0]
    out = []
    for t in range(k.shape[2]):
        run = k[:, :, t] + torch.exp(-beta[..., 0]) * run
        out.append(run)
    return torch.stack(out, 2)


@pytest.mark.parametrize("n", [1, 2, 7, 16, 50])
@pytest.mark.parametrize("with_carry", [False, True])
def test_both_leaky_forms_equal_the_recurrence(n, with_carry):
    g = torch.Generator().manual_seed(n)
    k, beta = torch.randn(2, 3, n, 4, generator=g), torch.rand(3, 1, 1, generator=g) * 3
    carry = torch.randn(2, 3, 1, 4, generator=g) if with_carry else None
    ref = recurrence(k, beta, carry)
    torch.testing.assert_close(leaky_matrix(k, beta, carry), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaky_chunked(k, beta, carry), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(leaky_chunked(k, beta, carry, chunk=3), ref, atol=1e-5, rtol=1e-5)


def test_both_leaky_forms_give_the_same_model():
    m = make(noise=0.0, leaky_form="matrix")
    c = make(noise=0.0, leaky_form="chunked")
    c.load_state_dict(m.state_dict())
    x = tokens(n=T)
    torch.testing.assert_close(c(x).logits, m(x).logits, atol=1e-5, rtol=1e-5)
    xb, y = tokens(n=T, b=4), tokens(seed=3, n=T, b=4)  # gradients too
    out_m, out_c = m(xb), c(xb)
    lm, lc = (F.cross_entropy(o.logits.flatten(0, 1), y.flatten()) for o in (out_m, out_c))
    lm.backward(), lc.backward()
    for (name, p), q in zip(m.named_parameters(), c.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=lambda s: f"{name}: {s}")


# --- incremental generation -----------------------------------------------------------------------
@pytest.mark.parametrize("persistent", ["pmem", "mlp"])
def test_incremental_generation_equals_recomputation(persistent):
    m = make(noise=0.0, block_size=64, persistent=persistent)
    prompt = tokens(seed=1, n=5)
    g = [generate_ids(m, prompt, 40, temperature=1.0, use_cache=c, generator=torch.Generator().manual_seed(0))
         for c in (True, False)]
    assert torch.equal(g[0], g[1])
    seq = g[0]
    with torch.no_grad():  # token by token: every step's logits equal those of one full forward
        state = m.init_state(B)
        stepped = [m.next_logits(seq[:, :5], state)]
        stepped += [m.next_logits(seq[:, t:t + 1], state) for t in range(5, seq.shape[1] - 1)]
        assert len(state) == seq.shape[1] - 1
        full = m(seq[:, :-1]).logits[:, 4:]
    torch.testing.assert_close(torch.stack(stepped, 1), full, atol=1e-5, rtol=1e-5)


def test_the_state_grows_by_one_key_and_value_per_token():
    m = make(block_size=64)
    state = m.init_state(1)
    with torch.no_grad():
        m(tokens(n=10, b=1), state)
        for _ in range(3):
            m(tokens(n=1, b=1), state)
    layer = state.layers[0]
    assert len(state) == 13 and len(layer.cache) == 12  # the 13th value waits for token 14
    assert layer.pending_k.shape[2] == 1 and layer.context_carry.shape[2] == 1


# --- sizes and optimiser groups -------------------------------------------------------------------
@pytest.mark.parametrize("d_model, n_layer, n_head", [(128, 4, 4), (384, 6, 6)])
@pytest.mark.parametrize("persistent", ["pmem", "mlp"])
def test_parameter_parity_with_the_gpt(d_model, n_layer, n_head, persistent):
    kw = dict(vocab_size=65, d_model=d_model, n_layer=n_layer, n_head=n_head)
    gpt = build_model(model_config("gpt", **kw)).num_params()
    mm = build_model(model_config("memory_mosaics", persistent=persistent, **kw)).num_params()
    assert abs(mm / gpt - 1) < 0.05, (mm, gpt)


def test_pmem_size_default_and_validation():
    assert model_config("memory_mosaics", d_model=384, n_head=6).pmem_size == 1344
    assert model_config("memory_mosaics", pmem_size=10).pmem_size == 10
    with pytest.raises(ConfigError, match="persistent"):
        model_config("memory_mosaics", persistent="attention")
    with pytest.raises(ConfigError, match="n_kv_head"):
        model_config("memory_mosaics", n_kv_head=1)
    with pytest.raises(ConfigError, match="pos"):
        model_config("memory_mosaics", pos="rope")


def test_per_head_scalars_are_not_decayed():
    m = make()
    decay, no_decay = (set(map(id, g["params"])) for g in m.param_groups(0.1))
    names = {id(p): n for n, p in m.named_parameters()}
    scalars = [n for n, p in m.named_parameters() if p.shape[-2:] == (1, 1)]
    assert {n.rsplit(".", 1)[-1] for n in scalars} == {"leak", "key_scale", "lam", "value_scale", "out_scale"}
    assert all(id(p) in no_decay for n, p in m.named_parameters() if n in scalars)
    assert {names[i].rsplit(".", 1)[-1] for i in decay} == {"weight", "P_k", "P_v"}
    assert all("norm" not in names[i] for i in decay)


# --- training -------------------------------------------------------------------------------------
def test_a_few_training_steps_lower_the_loss():
    from train import Trainer
    mcfg = model_config("memory_mosaics", n_layer=2, d_model=32, n_head=2, block_size=32)
    tcfg = TrainConfig(data="builtin", batch_size=8, max_iters=30, lr=3e-3, warmup_iters=3, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(mcfg, tcfg, out=Path(tmp) / "run", progress=False, verbose=False)
    losses = [trainer.train_step(3e-3)[0] for _ in range(30)]
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5, losses
