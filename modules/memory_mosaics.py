"""Memory Mosaics: a decoder made of associative memories instead of attention and MLPs.

    h = Embed(x)                                   (no positional embedding: the leaky keys carry order)
    h = h + ContextMem(Norm(h))                    (keys/values of this context, retrieved by a Gaussian kernel)
    h = h + PersistentMem(Norm(h))                 (learned key/value pairs; or, with --persistent mlp, the GPT's MLP)
    h = Norm(h); logits = Head(h)                  (head tied to the embedding)

ContextMem, per head h, reading x (B, T, C):
1. key features: k~ = W_k x, then the leaky average  k_t = sum_{j<=t} exp(-beta_h (t - j)) k~_j,
   beta_h = 10 |b_h|, either as a (T, T) decay matrix (`leaky_matrix`, clear) or as a chunked scan whose memory
   is O(T) (`leaky_chunked`); then k = k / ||k|| * s_h, s_h = exp(min(10 a_h, ln 65535)).
2. value features look one step ahead: v~ = W_v x, v_t = (1 - c_h) v~_{t+1} + c_h v~_t,
   then v = v / ||v|| * exp(10 g_h).
3. retrieval: y_t = sum_{j <= t-1} softmax_j(k_t . k_j) v_j, and y_0 = 0. Since ||k|| = s_h for every key,
   k_t . k_j = s_h^2 - ||k_t - k_j||^2 / 2: the softmax is a Gaussian kernel smoother (Nadaraya-Watson)
   of bandwidth s_h^-1, which is why there is no 1/sqrt(d). Query t may not read v_t: it needs x_{t+1}.
4. heads merged, output projection, dropout.
PersistentMem: its own leaky key extractor (norm s_h^2, as P_k carries no scale), learned P_k, P_v (H, P, d);
y = softmax(k P_k^T) P_v scaled by exp(10 o_h), output projection, dropout.

Sizes: a GPT block holds 12 C^2 weights (attention 4, MLP 8). A mosaic block holds W_k, W_v, out (3 C^2) +
W_k, out of the persistent memory (2 C^2) + P_k, P_v (2 P C): equal at P = 3.5 C, the default `pmem_size`.
With `--persistent mlp` the MLP is widened to 4.5 C hidden (9 C^2 in two matrices) for the same parity.

References: Zhang, Bottou et al. 2024, "Memory Mosaics" (arXiv 2405.06394); the authors' code
facebookresearch/MemoryMosaics, `nanoMosaics/mosaic_model.py` (read to check every formula; not copied).
Where mnemo differs, and why:
- the (T, T) leaky matrix is built on the fly rather than kept as a block_size buffer, and a chunked form with
  O(T) memory is the default for training (equal to the matrix form up to rounding; tested);
- the value of the last position, which needs the token after the sequence, is never formed: nanoMosaics pads
  it with a zero future but masks it out of every query, so nothing changes;
- retrieval for queries 1..T-1 over keys 0..T-2 is the square causal case of the fused kernel (the diagonal
  mask of nanoMosaics, shifted by one) and streams: a state holds the running leaky keys, the cached keys and
  completed values, and the one value still waiting for its next token; a new token costs O(T);
- norms come from `--norm` (RMSNorm by default; nanoMosaics uses LayerNorm with bias), as in mnemo's GPT;
- the per-head scalars are (H, 1, 1) tensors marked no-decay (nanoMosaics exempts tensors whose last two
  dimensions are (1, 1)); P_k and P_v decay, as there;
- nanoMosaics also sums `pmem_count` persistent memories and divides by their count; mnemo has one.
The `Library/` version of the same repository (a (1 - e^-beta) factor, key scale clamped at 5, other
inits) is not followed: nanoMosaics is the code the spec was built from.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, causal_mask
from .base import TokenEmbedding, make_head, no_decay
from .decoder import DecoderLM
from .mlp import MLP
from .norms import make_norm
from .tracing import LoggingModule, log_io

EXP_SCALING = 10                 # nanoMosaics learns a/10 rather than a, for every per-head scalar
KEY_SCALE_MAX = math.log(2 ** 16 - 1)  # keeps s^2 within float16
EPS = 1e-10


# --- the leaky average, two forms ---------------------------------------------------------------------
def leaky_matrix(k, beta, carry=None):
    """k (B, H, T, d), beta (H, 1, 1) -> sum_{j<=t} exp(-beta (t - j)) k_j, as a (H, T, T) decay matrix
    times k. carry (B, H, 1, d): the leaky sum just before position 0 (streaming), decayed into every t."""
    T = k.shape[2]
    t = torch.arange(T, device=k.device, dtype=k.dtype)
    dist = t[:, None] - t[None, :]                                                # (T, T) = t - j
    decay = torch.where(dist >= 0, torch.exp(-beta * dist.clamp(min=0)), 0.0)      # (H, T, T)
    out = decay @ k                                                               # (B, H, T, d)
    if carry is not None:
        out = out + torch.exp(-beta * (t[:, None] + 1)) * carry                   # (H, T, 1) * (B, H, 1, d)
    return out


def leaky_chunked(k, beta, carry=None, chunk: int | None = None):
    """The same sum with memory O(T): chunks of L ~ sqrt(T) positions, each summed by an (L, L) decay matrix;
    the sums entering the chunks are themselves a leaky average over the n = T / L chunk ends (rate beta L),
    an (n, n) matrix; each position then adds the sum entering its chunk, decayed."""
    B, H, T, d = k.shape
    L = chunk or max(1, math.isqrt(T - 1) + 1)                                    # ceil(sqrt(T))
    n = -(-T // L)
    kc = F.pad(k, (0, 0, 0, n * L - T)).view(B, H, n, L, d)                        # (B, H, n, L, d)
    i = torch.arange(L, device=k.device, dtype=k.dtype)
    dist = i[:, None] - i[None, :]
    decay = torch.where(dist >= 0, torch.exp(-beta * dist.clamp(min=0)), 0.0)      # (H, L, L)
    local = decay.unsqueeze(1) @ kc                                               # (B, H, n, L, d)
    ends = leaky_matrix(local[:, :, :, -1], beta * L, carry)                      # (B, H, n, d) sums at chunk ends
    start = torch.zeros_like(ends[:, :, :1]) if carry is None else carry          # (B, H, 1, d)
    entering = torch.cat([start, ends[:, :, :-1]], dim=2)                         # (B, H, n, d)
    out = local + torch.exp(-beta * (i[:, None] + 1)).unsqueeze(1) * entering.unsqueeze(3)
    return out.view(B, H, n * L, d)[:, :, :T]


LEAKY_FORMS = {"matrix": leaky_matrix, "chunked": leaky_chunked}


# --- the streaming state --------------------------------------------------------------------------
class LayerMemory:
    """One layer's streaming state: the running (unnormalised) leaky keys of both memories, the context
    memory's cached keys and completed values, and the newest key and raw value, whose value still waits for
    the next token."""

    def __init__(self):
        self.context_carry = self.persistent_carry = None   # (B, H, 1, d)
        self.cache = KVCache()                               # keys and values of positions 0..N-2
        self.pending_k = self.pending_v = None               # (B, H, 1, d): position N-1's key, raw value
        self.seen = 0                                        # N


class MosaicState:
    """The streaming state of a Memory Mosaic: one LayerMemory per layer."""

    def __init__(self, n_layer: int):
        self.layers = [LayerMemory() for _ in range(n_layer)]

    def __len__(self) -> int:
        return self.layers[0].seen


# --- the memories ---------------------------------------------------------------------------------
class LeakyKeys(LoggingModule):
    """Key features: project, leaky-average over time, normalise to the per-head norm s_h^power."""

    def __init__(self, d_model: int, n_head: int, bias: bool, form: str, power: int = 1):
        super().__init__()
        self.n_head, self.power, self.form = n_head, power, form
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.leak = no_decay(nn.Parameter(torch.empty(n_head, 1, 1)))       # b_h: beta_h = 10 |b_h|
        self.key_scale = no_decay(nn.Parameter(torch.empty(n_head, 1, 1)))  # a_h: s_h = exp(10 a_h)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.leak.copy_(torch.linspace(0.5, 5, self.n_head).view(-1, 1, 1) / EXP_SCALING)
            self.key_scale.fill_(1 / EXP_SCALING)

    @property
    def beta(self):
        """Per-head leak rate (H, 1, 1): a key remembers about 1 / beta earlier tokens."""
        return self.leak.abs() * EXP_SCALING

    @property
    def scale(self):
        """Per-head key norm (H, 1, 1), s_h^power, capped so that s^2 fits float16."""
        return (self.power * EXP_SCALING * self.key_scale).clamp(max=KEY_SCALE_MAX).exp()

    @log_io
    def forward(self, x, carry=None):
        """x (B, T, C) -> (normalised keys (B, H, T, d), unnormalised leaky key of the last position)."""
        k = self.leaky_average(self.project(x), carry)
        return self.normalise(k), k[:, :, -1:]

    @log_io
    def project(self, x):
        """k~ = W_k x: (B, T, C) -> (B, H, T, d)."""
        return self.W_k(x).view(*x.shape[:2], self.n_head, -1).transpose(1, 2)

    @log_io
    def leaky_average(self, k, carry=None):
        """k_t = k~_t + exp(-beta) k_{t-1}, for every t at once (carry: k_{-1} when streaming)."""
        if k.shape[2] == 1:  # one new token (generation): the recurrence itself, without building a matrix
            return k if carry is None else k + torch.exp(-self.beta) * carry
        return LEAKY_FORMS[self.form](k, self.beta, carry)

    @log_io
    def normalise(self, k):
        """k / ||k|| * s_h: every key on the sphere of radius s_h (s_h^2 for the persistent memory)."""
        return k / (k.norm(dim=-1, keepdim=True) + EPS) * self.scale


class ContextMem(LoggingModule):
    """The contextual associative memory: stores (leaky key, look-ahead value) pairs of this context and
    retrieves, for each position, a kernel-weighted average of the earlier values."""

    def __init__(self, d_model: int, n_head: int, bias: bool, dropout: float, form: str):
        super().__init__()
        self.n_head = n_head
        self.keys = LeakyKeys(d_model, n_head, bias, form)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.lam = no_decay(nn.Parameter(torch.empty(n_head, 1, 1)))          # c_h: look-ahead mix
        self.value_scale = no_decay(nn.Parameter(torch.empty(n_head, 1, 1)))  # g_h: ||v|| = exp(10 g_h)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.proj.residual = True  # scaled at init (modules.base.init_weights)
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.lam.uniform_(0, 1)
            self.value_scale.fill_(-0.5 / EXP_SCALING)
        self.keys.reset_parameters()

    @log_io
    def forward(self, x, memory: LayerMemory | None = None):
        """x (B, T, C) -> (B, T, C). With a memory, x continues what it holds."""
        k, last = self.keys(x, None if memory is None else memory.context_carry)   # (B, H, T, d)
        v = self.project_values(x)                                                 # (B, H, T, d), raw
        if memory is None:
            queries, keys, values = k[:, :, 1:], k[:, :, :-1], self.look_ahead(v)
            y = self.retrieve(queries, keys, values)                               # (B, H, T-1, d)
            y = F.pad(y, (0, 0, 1, 0))                                             # y_0 = 0: nothing stored yet
        else:
            y = self.streamed(k, v, last, memory)
        return self.drop(self.proj(self.merge_heads(y)))                           # (B, T, C)

    @log_io
    def project_values(self, x):
        """v~ = W_v x: (B, T, C) -> (B, H, T, d)."""
        return self.W_v(x).view(*x.shape[:2], self.n_head, -1).transpose(1, 2)

    @log_io
    def look_ahead(self, v):
        """v~ (B, H, T, d) -> v_t = (1 - c_h) v~_{t+1} + c_h v~_t for t < T-1, normalised: (B, H, T-1, d). The
        value of a position needs the next token, so the last one is not formed (no query may read it)."""
        v = (1 - self.lam) * v[:, :, 1:] + self.lam * v[:, :, :-1]
        return v / (v.norm(dim=-1, keepdim=True) + EPS) * (EXP_SCALING * self.value_scale).exp()

    @log_io
    def retrieve(self, q, k, v):
        """q (B, H, Tq, d) at positions P..P+Tq-1; k, v (B, H, S, d) at positions 0..S-1, S = P+Tq-1. Query t
        reads keys j <= t-1: a softmax of k_t . k_j (Gaussian kernel, no 1/sqrt(d)) weighting v_j."""
        Tq, S = q.shape[2], k.shape[2]
        if Tq == 0 or S == 0:
            return q.new_zeros(*q.shape[:3], v.shape[-1])
        if self._tracer is not None and self._tracer.keep:  # only while traced with keep=True
            self._tracer.keep_tensor("pattern", self.weights(q, k))
        mask = None if Tq == 1 or Tq == S else causal_mask(Tq, S, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=Tq == S and Tq > 1, scale=1.0,
                                              dropout_p=self.dropout if self.training else 0.0)

    def weights(self, q, k):
        """The retrieval weights (B, H, Tq, S) themselves, for notebooks (the fused kernel never forms them)."""
        scores = (q @ k.transpose(-2, -1)).masked_fill(~causal_mask(q.shape[2], k.shape[2], q.device), float("-inf"))
        return scores.softmax(-1)

    @log_io
    def streamed(self, k, v, last, memory: LayerMemory):
        """Retrieval for T new positions N..N+T-1 with the memory of positions 0..N-1: complete the value
        waiting for its next token and those of the new positions but the last, store them, and let each new
        query read everything before it."""
        first = memory.seen == 0
        if not first:
            k_all, v_all = torch.cat([memory.pending_k, k], dim=2), torch.cat([memory.pending_v, v], dim=2)
        else:
            k_all, v_all = k, v
        keys, values = memory.cache.extend(k_all[:, :, :-1], self.look_ahead(v_all))  # positions 0..N+T-2
        memory.pending_k, memory.pending_v = k_all[:, :, -1:], v_all[:, :, -1:]
        memory.context_carry, memory.seen = last, memory.seen + k.shape[2]
        y = self.retrieve(k[:, :, 1:] if first else k, keys, values)
        return F.pad(y, (0, 0, 1, 0)) if first else y

    @log_io
    def merge_heads(self, y):
        """(B, H, T, d) -> (B, T, H d)."""
        return y.transpose(1, 2).flatten(2)


class PersistentMem(LoggingModule):
    """The persistent associative memory: P learned (key, value) pairs per head, read by a kernel over the
    leaky keys of the input; the role the MLP plays in a GPT."""

    def __init__(self, d_model: int, n_head: int, pmem_size: int, bias: bool, dropout: float, form: str):
        super().__init__()
        self.n_head, self.head_dim = n_head, d_model // n_head
        self.keys = LeakyKeys(d_model, n_head, bias, form, power=2)  # s^2: P_k carries no scale of its own
        self.P_k = nn.Parameter(torch.empty(n_head, pmem_size, self.head_dim))
        self.P_v = nn.Parameter(torch.empty(n_head, pmem_size, self.head_dim))
        self.out_scale = no_decay(nn.Parameter(torch.empty(n_head, 1, 1)))  # o_h: output times exp(10 o_h)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.proj.residual = True
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            nn.init.normal_(self.P_k, 0.0, self.head_dim ** -0.5)
            nn.init.normal_(self.P_v, 0.0, self.head_dim ** -0.5)
            self.out_scale.fill_(-0.5 / EXP_SCALING)
        self.keys.reset_parameters()

    @log_io
    def forward(self, x, memory: LayerMemory | None = None):
        k, last = self.keys(x, None if memory is None else memory.persistent_carry)  # (B, H, T, d)
        if memory is not None:
            memory.persistent_carry = last
        y = self.recall(k) * (EXP_SCALING * self.out_scale).exp()                  # (B, H, T, d)
        return self.drop(self.proj(y.transpose(1, 2).flatten(2)))                  # (B, T, C)

    @log_io
    def recall(self, k):
        """softmax(k P_k^T) P_v, no mask (the pairs are not from the context): (B, H, T, d)."""
        B = k.shape[0]
        return F.scaled_dot_product_attention(k, self.P_k.expand(B, -1, -1, -1), self.P_v.expand(B, -1, -1, -1),
                                              scale=1.0, dropout_p=self.dropout if self.training else 0.0)


class MosaicBlock(LoggingModule):
    """h = h + ContextMem(Norm(h)); h = h + PersistentMem(Norm(h)) (or the GPT's MLP)."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg.d_model
        self.norm1 = make_norm(cfg.norm, C, cfg.bias)
        self.context = ContextMem(C, cfg.n_head, cfg.bias, cfg.dropout, cfg.leaky_form)
        self.norm2 = make_norm(cfg.norm, C, cfg.bias)
        if cfg.persistent == "mlp":  # hidden width for 9 C^2 weights: the block stays at 12 C^2
            self.persistent = MLP(C, cfg.mlp, cfg.bias, cfg.dropout, hidden=9 * C // (3 if cfg.mlp == "swiglu" else 2))
        else:
            self.persistent = PersistentMem(C, cfg.n_head, cfg.pmem_size, cfg.bias, cfg.dropout, cfg.leaky_form)

    @log_io
    def forward(self, h, memory: LayerMemory | None = None):
        h = h + self.context(self.norm1(h), memory)
        x = self.norm2(h)
        return h + (self.persistent(x) if isinstance(self.persistent, MLP) else self.persistent(x, memory))


class MemoryMosaics(DecoderLM):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(MosaicBlock(cfg) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.head = make_head(cfg, self.embed)
        self.init_weights(depth=cfg.n_layer)
        for m in self.modules():  # the memories' own inits (P ~ N(0, 1/d), per-head scalars)
            if isinstance(m, (ContextMem, PersistentMem)):
                m.reset_parameters()

    @property
    def max_context(self) -> int:
        """The block size. No positional table limits the model, but it was trained at block_size, the
        retrieval cost grows with the context, and longer contexts are untested; generation keeps to it."""
        return self.cfg.block_size

    def init_state(self, batch_size: int, source=None) -> MosaicState:
        return MosaicState(self.cfg.n_layer)

    @log_io
    def body(self, x, state: MosaicState | None = None):
        """x (B, T) ids -> hidden states (B, T, C) after the final norm. In place of the shared decoder's body
        (`modules.decoder.DecoderLM`): no positions are added, and each block reads and writes its own layer's
        memory."""
        h = self.drop(self.embed(x))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            h = block(h, None if state is None else state.layers[i])
        return self.norm(h)
