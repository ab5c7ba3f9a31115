"""Training throughput of mnemo's GPT against a plain, straightforward GPT of the same shape.

    python benchmarks/train_speed.py        # from anywhere; about a minute; one thread

Contenders, measured in this one run, one thread (`torch.set_num_threads(1)`):
- mnemo: the real training step, `train.Trainer(...).train_step(lr)` (draw a batch from the built-in
  corpus, forward with the loss, backward, clip the gradient norm, AdamW step on the model's own
  parameter groups, zero the gradients) of `modules.gpt.GPT` with config.py's defaults: n_layer 4,
  n_head 4, d_model 128, block_size 128, batch 32, RMSNorm, RoPE, GELU MLP, no bias, tied head.
- plain: the same model written here in one nanoGPT-style class (fused qkv Linear,
  `F.scaled_dot_product_attention(is_causal=True)`, the same norm, positions, MLP, init and tied head),
  trained by a loop written here with the same AdamW groups, the same clipping and the *same data
  batches* (a second sampler with the same seed draws the same windows from the same corpus).

Honesty checks printed before the timing: the two parameter counts (must match), and, with mnemo's
weights copied into the plain model, the largest difference of their logits and losses (the two
compute the same function; only the kernels' summation order may differ).

Timing: the two steps alternate (A B, B A, ...) so machine noise hits both alike; the first WARMUP
rounds are not timed; tokens/s is batch * block_size / the median step time. The ratio is the median,
over the rounds, of the two steps' speed ratio within a round (on a shared machine the load drifts
between rounds; a ratio within a round cancels most of it); the ratio of the two medians and the same
ratio on CPU time (`time.process_time`, which stops while the process waits for a core) are printed as
cross-checks.
Target (the project's issue 2): mnemo / plain >= 1.0x. Exits 0 either way: a measurement, not a test.
"""
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TrainConfig, model_config  # noqa: E402
from train import Trainer  # noqa: E402

WARMUP, REPEATS = 3, 40
LR = 1e-3
# config.py's defaults today, pinned so a change of default never changes what is compared
DEFAULTS = dict(tokenizer="char", norm="rms", pos="rope", mlp="gelu", bias=False, tie_weights=True)
TARGET = 1.0


# --- the plain GPT --------------------------------------------------------------------------------
class PlainAttention(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d, 3 * d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # (B, nh, T, hs)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


def rope(x, cos, sin):
    """Rotate-half RoPE (GPT-NeoX form), as mnemo's modules/positions.py."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class PlainBlock(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.ln_1 = nn.RMSNorm(d, eps=1e-6)
        self.attn = PlainAttention(d, n_head)
        self.ln_2 = nn.RMSNorm(d, eps=1e-6)
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln_1(x), cos, sin)
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab_size, n_layer, n_head, d, block_size):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d)
        self.h = nn.ModuleList(PlainBlock(d, n_head) for _ in range(n_layer))
        self.ln_f = nn.RMSNorm(d, eps=1e-6)
        self.lm_head = nn.Linear(d, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        hs = d // n_head
        inv_freq = 10000.0 ** (-torch.arange(0, hs, 2).float() / hs)
        angles = torch.arange(block_size).float()[:, None] * inv_freq  # (T, hs/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)
        for name, p in self.named_parameters():  # GPT-2 init, as mnemo's
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.wte(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for block in self.h:
            x = block(x, cos, sin)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def param_groups(self, weight_decay):
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2 and not n.startswith("wte")]
        no_decay = [p for n, p in self.named_parameters() if p.dim() < 2 or n.startswith("wte")]
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def copy_weights(mnemo, plain):
    """mnemo's weights into the plain model (q and kv Linears -> one fused qkv Linear)."""
    with torch.no_grad():
        plain.wte.weight.copy_(mnemo.embed.weight)
        for b, p in zip(mnemo.blocks, plain.h):
            p.ln_1.weight.copy_(b.norm1.weight)
            p.ln_2.weight.copy_(b.norm2.weight)
            p.attn.c_attn.weight.copy_(b.attn.qkv.weight)
            p.attn.c_proj.weight.copy_(b.attn.proj.weight)
            p.c_fc.weight.copy_(b.mlp.up.weight)
            p.c_proj.weight.copy_(b.mlp.down.weight)
        plain.ln_f.weight.copy_(mnemo.norm.weight)


def count(model):
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def main() -> int:
    torch.set_num_threads(1)
    mcfg = model_config("gpt", n_layer=4, n_head=4, d_model=128, block_size=128, **DEFAULTS)
    tcfg = TrainConfig(data="builtin", batch_size=32, grad_accum=1, grad_clip=1.0, weight_decay=0.1, threads=1,
                       seed=1337)
    with tempfile.TemporaryDirectory() as tmp:  # train_step never writes; the folder is just never created
        trainer = Trainer(mcfg, tcfg, out=Path(tmp) / "run", progress=False, verbose=False)
    m = trainer.model.train()
    c = trainer.mcfg
    print(f"shape: n_layer {c.n_layer}, n_head {c.n_head}, d_model {c.d_model}, block_size {c.block_size}, "
          f"batch {tcfg.batch_size}, vocab {c.vocab_size} (char, builtin corpus), norm {c.norm}, pos {c.pos}, "
          f"mlp {c.mlp}, bias {c.bias}, tie_weights {c.tie_weights}; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}")

    torch.manual_seed(0)
    plain = PlainGPT(c.vocab_size, c.n_layer, c.n_head, c.d_model, c.block_size).train()
    n_m, n_p = m.num_params(), count(plain)
    print(f"parameters: mnemo {n_m:,}  plain {n_p:,}  ({'match' if n_m == n_p else 'MISMATCH'})")

    # Same function: with mnemo's weights, the plain model gives the same logits and loss.
    copy_weights(m, plain)
    check = trainer.src.train_batch(np.random.default_rng(0), 0)
    with torch.no_grad():
        out = m(check)
        logits, loss = plain(check.x, check.y)
    print(f"same weights -> max |logits diff| {(out.logits - logits).abs().max().item():.2e}, "
          f"loss mnemo {out.loss.item():.6f} plain {loss.item():.6f}")

    # The plain loop: the same steps as Trainer.train_step, on batches drawn by a same-seeded sampler.
    opt = torch.optim.AdamW(plain.param_groups(tcfg.weight_decay), lr=tcfg.lr, betas=(tcfg.beta1, tcfg.beta2))
    rng = np.random.default_rng(tcfg.seed)
    assert trainer.data_rng.bit_generator.state == rng.bit_generator.state

    def plain_step(lr):
        for g in opt.param_groups:
            g["lr"] = lr
        batch = trainer.src.train_batch(rng, 0)
        _, loss = plain(batch.x, batch.y)
        loss.backward()
        total = loss.item()
        norm = torch.nn.utils.clip_grad_norm_(plain.parameters(), tcfg.grad_clip).item()
        if math.isfinite(total) and math.isfinite(norm):
            opt.step()
        opt.zero_grad(set_to_none=True)
        return total, norm, batch.x.numel()

    contenders = {"mnemo": trainer.train_step, "plain": plain_step}
    wall, cpu, losses = ({k: [] for k in contenders} for _ in range(3))
    for i in range(WARMUP + REPEATS):
        for name in (("mnemo", "plain") if i % 2 == 0 else ("plain", "mnemo")):  # A B, B A, ...
            t0, c0 = time.perf_counter(), time.process_time()
            loss, _, tokens, *_ = contenders[name](LR)
            w, c = time.perf_counter() - t0, time.process_time() - c0
            losses[name].append(loss)
            if i >= WARMUP:
                wall[name].append(w)
                cpu[name].append(c)
    tps = {k: tokens / statistics.median(v) for k, v in wall.items()}
    print(f"same batches, same start weights -> loss after {WARMUP + REPEATS} steps: "
          f"mnemo {losses['mnemo'][-1]:.4f}  plain {losses['plain'][-1]:.4f}")
    for k, v in wall.items():
        q = statistics.quantiles(v, n=4)
        print(f"{k:>5}: median step {statistics.median(v) * 1e3:7.1f} ms (quartiles {q[0] * 1e3:.1f}.."
              f"{q[2] * 1e3:.1f}, {len(v)} steps)  ->  {tps[k]:8.0f} tokens/s")
    # Throughput ratio = plain step time / mnemo step time, taken within each round (the two steps ran
    # back to back, under the same load), then the median over the rounds.
    ratio = statistics.median(p / m for m, p in zip(wall["mnemo"], wall["plain"]))
    cpu_ratio = statistics.median(p / m for m, p in zip(cpu["mnemo"], cpu["plain"]))
    print(f"mnemo / plain tokens/s = {ratio:.3f} (median of the ratios within a round; ratio of the medians "
          f"{tps['mnemo'] / tps['plain']:.3f}; on CPU time {cpu_ratio:.3f})")
    print(f"RESULT train_speed ratio={ratio:.2f} (target >= {TARGET}) params mnemo={n_m} plain={n_p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
