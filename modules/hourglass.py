"""Hourglass: a Transformer that shortens its sequence in the middle, so most layers run on fewer positions.

    h = Embed(x) (+ absolute positions)
    h = Level_1(h), where a level with relative factor k (to the next level) is, for x (B, L, C):
        x = Pre(x)                       causal layers at this level's length
        r = x                            the residual, taken before the shift
        xs = shift_right(x)              k-1 zero vectors in front: group g now ends at position gk
        z = shorten(xs)                  (B, ceil(L/k), C): avg | linear | attention, one vector per group
        z = Level_next(z)                the inner level (or, in the middle, causal layers only)
        u = upsample(z)                  (B, L, C): repeat | linear | attention
        x = Post(r + u)                  causal layers at this level's length again
    h = Norm(h); logits = Head(h)

The embedding, the final norm and the head are the shared decoder's (`modules.decoder.DecoderLM`); the
outermost `Level` takes the place of its blocks.

The hierarchy is the paper's string, `--hierarchy "2@1 4@3 2@1"` (2 layers at full length, 4 at a third
of it, 2 at full length): factors are cumulative and nest (`"1@1 1@2 2@6 1@2 1@1"`: relative factors 2
then 3); `config.parse_hierarchy` rejects every malformed string with the reason. The depth used by the
initialisation is the sum of all layer counts.

Why the shift keeps it causal (index arithmetic): with k-1 zeros in front, group g holds original positions
gk-k+1 ... gk, and its output is used at positions gk ... gk+k-1, each of which may see all of them.
Without the shift, group g would hold gk ... gk+k-1 and position gk would see gk+k-1 (the negative
control in tests/test_hourglass.py removes the shift and watches the causality test fail).

Resampling (paper section 3): `avg` is the mean of each group of k; `linear` concatenates the group and
applies Linear(kC -> C); `attention` lets the group's mean (the query) attend to the group's k shifted
vectors, plus the mean as a residual. Upsampling: `repeat` copies z_g to the k positions it feeds;
`linear` is Linear(C -> kC), one vector per position of the group; `attention` takes the repeated
vectors as queries that attend to the short sequence (position t may see z_0 ... z_{t//k}), plus the
repeated vectors as a residual. Attention resampling uses no positional scheme: the group members are
already position-aware, and the mask orders the short sequence.

Positions: absolute schemes (learned, sinusoidal) are added once to the embedding and reach the short
levels through the shortening. RoPE and the relative bias are applied at every level, each with its own
index: short token g of a level sits at position g of that level (distances are counted in groups), and
the relative bias gets its own table per level.

Differences from the originals, on purpose (docs/architectures/hourglass.md):
- Any length. The shift puts k-1 zeros *in front* and the groups are cut from the shifted sequence, whose
  length L+k-1 always covers ceil(L/k) whole groups: no `L % k` assumption (trax) and no padding helper
  that fails for L % k != 0 (lucidrains). It also makes every group the same at every length: a shift
  that keeps the length L and then pads the end with zeros (the usual recipe) gives the last group
  zeros where later calls see tokens, so position t's logits would depend on how long the input is,
  and cached generation could not equal recomputation.
- The shift is by k-1, not k (one published implementation wastes a position).
- Pre-norm throughout: the upsampled vectors are added to the un-normalised residual stream, without
  trax's LayerNorm after upsampling; the layers after it normalise their own inputs.

Cached generation (no public Hourglass implementation we know of does this). The state holds, per
level, the KV caches of its pre and post layers; for a shortened level also the last k-1 vectors
entering the shortening (the shift, zeros at first), the newest short output, and the upsampling
attention's cache. Fed T new tokens at position n, a level runs its pre layers on them (attending to
the cache), forms the groups that *complete* in them (group g completes at position gk), shortens
those, runs the inner level on them only (it keeps its own caches, 1/k as long), and upsamples the
newest group for the positions it feeds. So one new token costs, per layer, at cumulative factor f:
every f-th token one short step attending to ~L/f cached keys, ~(C^2 + (L/f) C) each time, ~1/f of that
per token on average; the outer levels pay (C^2 + L C) per token, as a GPT would. Chunks of any size give
the logits of one full pass (tests/test_causality.py streams in uneven chunks).

Reference: Nawrot, Tworkowski, Tyrolski, Kaiser, Wu, Szegedy, Michalewski 2021, "Hierarchical Transformers
Are More Efficient Language Models" (arXiv 2110.13711); google/trax (the original code) and
lucidrains/hourglass-transformer-pytorch, read to check the formulas.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from config import parse_hierarchy
from .attention import Attention, KVCache
from .base import TokenEmbedding, make_head
from .decoder import DecoderLM
from .layer import run_blocks, stack
from .norms import make_norm
from .positions import Positions, positions_after
from .tracing import LoggingModule, log_io


# --- shortening: (B, G, k, C) groups -> (B, G, C) ------------------------------------------------------
class AvgShorten(LoggingModule):
    @log_io
    def forward(self, groups):
        return groups.mean(2)  # (B, G, C)


class LinearShorten(LoggingModule):
    """Concatenate the k vectors of a group, Linear(k C -> C)."""

    def __init__(self, d_model: int, k: int, bias: bool):
        super().__init__()
        self.proj = nn.Linear(k * d_model, d_model, bias=bias)

    @log_io
    def forward(self, groups):
        return self.proj(groups.flatten(2))  # (B, G, k C) -> (B, G, C)


class AttentionShorten(LoggingModule):
    """The group's mean attends to the group's k vectors; plus the mean (paper section 3)."""

    def __init__(self, cfg):
        super().__init__()
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.dropout)

    @log_io
    def forward(self, groups):
        B, G, k, C = groups.shape
        q = self.pool(groups).reshape(B * G, 1, C)                  # one query per group
        ctx = groups.reshape(B * G, k, C)                           # ... sees its own group only
        return (q + self.attn(self.norm(q), self.norm(ctx))).view(B, G, C)

    @log_io
    def pool(self, groups):
        return groups.mean(2, keepdim=True)  # (B, G, 1, C)


def make_shortening(cfg, k: int) -> LoggingModule:
    if cfg.shorten == "avg":
        return AvgShorten()
    if cfg.shorten == "linear":
        return LinearShorten(cfg.d_model, k, cfg.bias)
    return AttentionShorten(cfg)


# --- upsampling: (B, G, C) -> (B, G k, C) -------------------------------------------------------------
class RepeatUpsample(LoggingModule):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    @log_io
    def forward(self, z):
        return z.repeat_interleave(self.k, dim=1)  # (B, G k, C): position t reads z[t // k]


class LinearUpsample(LoggingModule):
    """Linear(C -> k C): one vector per position of the group."""

    def __init__(self, d_model: int, k: int, bias: bool):
        super().__init__()
        self.k = k
        self.proj = nn.Linear(d_model, k * d_model, bias=bias)

    @log_io
    def forward(self, z):
        B, G, C = z.shape
        return self.proj(z).view(B, G * self.k, C)  # (B, G k, C)


class AttentionUpsample(LoggingModule):
    """Repeated vectors as queries attend causally to the short sequence; plus the repeated vectors."""

    def __init__(self, cfg, k: int):
        super().__init__()
        self.k = k
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.attn = Attention(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.bias, cfg.dropout)

    @log_io
    def forward(self, z, offset=0, length=None, z_new=None, start=0, cache=None):
        """z (B, G, C): the groups feeding positions start ... start+length-1 (the first from position
        offset within its group); z_new: the groups not seen before (the attention's new keys)."""
        length = z.shape[1] * self.k - offset if length is None else length
        u = z.repeat_interleave(self.k, dim=1)[:, offset:offset + length]  # (B, T, C) queries
        z_new = z if z_new is None else z_new
        seen = 0 if cache is None else len(cache)
        mask = self.visible(start, length, seen + z_new.shape[1], z.device)
        return u + self.attn(self.norm(u), self.norm(z_new), mask=mask, cache=cache)

    @log_io
    def visible(self, start: int, length: int, n_short: int, device=None):
        """(T, G) bool: position t may see short position j <= t // k."""
        t = torch.arange(start, start + length, device=device)
        return torch.arange(n_short, device=device)[None, :] <= (t // self.k)[:, None]


def make_upsampling(cfg, k: int) -> LoggingModule:
    if cfg.upsample == "repeat":
        return RepeatUpsample(k)
    if cfg.upsample == "linear":
        return LinearUpsample(cfg.d_model, k, cfg.bias)
    return AttentionUpsample(cfg, k)


def level_positions(cfg, max_len: int) -> Positions | None:
    """A shortened level's own RoPE / relative bias; None for absolute schemes (added once, at the input)."""
    return Positions(cfg.pos, cfg.d_model, cfg.n_head, max_len) if cfg.pos in ("rope", "relative") else None


# --- one level, and the state it keeps when streaming -------------------------------------------------
class LevelState:
    """What one level keeps between calls (see the module docstring)."""

    def __init__(self, level: "Level"):
        self.length = 0                                  # positions seen at this level
        self.pre = [KVCache() for _ in level.pre]
        self.post = [KVCache() for _ in level.post]
        self.tail = None   # (B, k-1, C): the last k-1 vectors entering the shortening; None = the shift's zeros
        self.last = None   # (B, 1, C): the inner output of the newest group
        self.up = KVCache() if isinstance(level.upsampling, AttentionUpsample) else None
        self.inner = None if level.inner is None else LevelState(level.inner)

    def __len__(self) -> int:
        return self.length


class Level(LoggingModule):
    """Pre layers, then (unless this is the middle) shift, shorten, the inner level, upsample, Post layers.

    `levels` is the part of the parsed hierarchy from this level inwards and back out, e.g.
    [(1, 1), (2, 4), (1, 1)] for the outermost level of "1@1 2@4 1@1"."""

    def __init__(self, cfg, levels: list[tuple[int, int]]):
        super().__init__()
        (n_pre, factor), (n_post, _) = levels[0], levels[-1]
        self.factor = factor                 # cumulative: this level runs at 1/factor of the input length
        self.pre = stack(cfg, n_pre)
        self.k, self.shortening, self.inner_positions, self.inner, self.upsampling = 1, None, None, None, None
        if len(levels) > 1:
            inner_factor = levels[1][1]
            self.k = inner_factor // factor  # relative factor to the next level
            self.shortening = make_shortening(cfg, self.k)
            self.inner_positions = level_positions(cfg, math.ceil(cfg.block_size / inner_factor))
            self.inner = Level(cfg, levels[1:-1])
            self.upsampling = make_upsampling(cfg, self.k)
        self.post = stack(cfg, n_post if len(levels) > 1 else 0)

    @log_io
    def forward(self, x, state: LevelState | None = None, positions: Positions | None = None):
        """x (B, T, C): this level's positions n ... n+T-1, n = what the state has seen (0 without one)."""
        n, T = (0 if state is None else state.length), x.shape[1]
        extras = {} if positions is None else positions.attention_extras(*positions_after(n, T))
        x = run_blocks(self.pre, x, None if state is None else state.pre, extras)
        if self.inner is not None:
            r = x                                                           # residual, before the shift
            xs = self.shift_right(x, None if state is None else state.tail)  # (B, k-1+T, C)
            k, first = self.k, -(-n // self.k)                              # first group completing here
            n_new = -(-(n + T) // k) - first                                # groups completing here
            groups = xs[:, first * k - n:first * k - n + n_new * k]         # (B, n_new k, C)
            z = x.new_zeros(x.shape[0], 0, x.shape[2])
            if n_new:
                z = self.shorten(groups.unflatten(1, (n_new, k)))           # (B, n_new, C)
                z = self.inner(z, None if state is None else state.inner, self.inner_positions)
            zs = z if n % k == 0 else torch.cat([state.last, z], dim=1)     # groups feeding n ... n+T-1
            u = self.upsample(zs, offset=n % k, length=T, z_new=z, start=n,
                              cache=None if state is None else state.up)    # (B, T, C)
            x = r + u
            if state is not None:
                state.tail, state.last = xs[:, -(k - 1):], zs[:, -1:]
        x = run_blocks(self.post, x, None if state is None else state.post, extras)
        if state is not None:
            state.length += T
        return x

    @log_io
    def shift_right(self, x, tail=None):
        """(B, T, C) -> (B, k-1+T, C): the k-1 vectors before x in front (zeros at the start of a sequence),
        so that group g holds positions gk-k+1 ... gk and feeds positions gk ... gk+k-1."""
        if tail is None:
            tail = x.new_zeros(x.shape[0], self.k - 1, x.shape[2])
        return torch.cat([tail, x], dim=1)

    @log_io
    def shorten(self, groups):
        """(B, G, k, C) -> (B, G, C)."""
        return self.shortening(groups)

    @log_io
    def upsample(self, z, offset: int = 0, length: int | None = None, z_new=None, start: int = 0, cache=None):
        """z (B, G, C) -> (B, length, C): positions start ... start+length-1, the first at `offset` within
        the group z[:, 0] feeds."""
        if isinstance(self.upsampling, AttentionUpsample):
            return self.upsampling(z, offset=offset, length=length, z_new=z_new, start=start, cache=cache)
        return self.upsampling(z)[:, offset:offset + length]


# --- the model ------------------------------------------------------------------------------------
class HourglassState:
    """The streaming state of an Hourglass: the outermost level's state, which nests the inner ones."""

    def __init__(self, model: "Hourglass"):
        self.top = LevelState(model.hourglass)

    def __len__(self) -> int:
        return len(self.top)


class Hourglass(DecoderLM):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.levels = parse_hierarchy(cfg.hierarchy)
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)
        self.positions = Positions(cfg.pos, cfg.d_model, cfg.n_head, cfg.block_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.hourglass = Level(cfg, self.levels)
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.head = make_head(cfg, self.embed)
        self.init_weights(depth=sum(n for n, _ in self.levels))

    def init_state(self, batch_size: int, source=None) -> HourglassState:
        return HourglassState(self)

    def layers(self, h, state: HourglassState | None, q_pos, k_pos):
        """The outermost level, which nests the others (`DecoderLM.body` runs it between the embedding and
        the final norm). Each level counts its own positions, so q_pos and k_pos are left to it."""
        return self.hourglass(h, None if state is None else state.top, self.positions)  # (B, T, C)
