"""Multi-head attention with grouped-query heads, arbitrary boolean masks, additive biases and a KV cache.

    q = x W_q,  k = c W_k,  v = c W_v          (context c = x for self-attention)
    q, k, v = split_heads(q, k, v)             (B, H, T, d)
    q, k = rotate(q, k)                        (RoPE only)
    y = softmax(q k^T / sqrt(d) + bias, masked) v
    out = merge_heads(y) W_o

The work is split into small traced steps (`project`, `split_heads`, `rotate`, `attend`, `merge_heads`) so a
trace reads like the equation; traced with `keep=True`, `attend` also keeps the attention pattern itself.
Masks are boolean, True where a query may look. Scores go through `F.scaled_dot_product_attention`,
which picks a fused kernel when it can. Grouped-query attention (Ainslie et al. 2023): `n_kv_head` key/value
heads, each shared by n_head / n_kv_head query heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .tracing import LoggingModule, log_io


def causal_mask(t_q: int, t_k: int, device=None) -> torch.Tensor:
    """(t_q, t_k) bool: the queries are the last t_q of the t_k keys, each sees itself and the past."""
    q = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    return torch.arange(t_k, device=device)[None, :] <= q


class KVCache:
    """Keys and values of the positions seen so far, per layer, for incremental decoding.

    The tensors live in buffers that double when full, so a step writes only its own keys and values
    (growing by concatenation would copy the whole cache at every step). Meant for inference: the buffers
    are written in place, which autograd cannot differentiate through."""

    def __init__(self):
        self.k_buf = self.v_buf = None
        self.length = 0

    def __len__(self) -> int:
        return self.length

    @property
    def k(self):
        """The cached keys (B, H_kv, S, d), or None before the first step."""
        return None if self.k_buf is None else self.k_buf.narrow(2, 0, self.length)

    @property
    def v(self):
        return None if self.v_buf is None else self.v_buf.narrow(2, 0, self.length)

    def extend(self, k, v):
        """Append this step's k, v (B, H_kv, T, d) and return the whole cache (B, H_kv, S, d)."""
        n = self.length + k.shape[2]
        if self.k_buf is None or n > self.k_buf.shape[2]:
            self.k_buf, self.v_buf = self._grown(self.k_buf, k, n), self._grown(self.v_buf, v, n)
        self.k_buf.narrow(2, self.length, k.shape[2]).copy_(k)
        self.v_buf.narrow(2, self.length, v.shape[2]).copy_(v)
        self.length = n
        return self.k, self.v

    def _grown(self, old, new, n: int):
        capacity = max(n, 2 * (0 if old is None else old.shape[2]), 64)
        buf = new.new_empty(*new.shape[:2], capacity, new.shape[3])
        if old is not None:
            buf[:, :, :self.length] = old[:, :, :self.length]
        return buf


class KVState:
    """The streaming state of a decoder made of Blocks: one KV cache per layer (a GPT's, a HILT's; the
    encoder-decoder's decoder carries the encoder output besides, `modules.seq2seq.Seq2SeqState`)."""

    def __init__(self, n_layer: int):
        self.caches = [KVCache() for _ in range(n_layer)]

    def __len__(self) -> int:
        """Positions seen so far."""
        return len(self.caches[0])


class Attention(LoggingModule):
    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, bias: bool = False,
                 dropout: float = 0.0):
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if d_model % n_head or n_head % n_kv_head:
            raise ValueError(f"d_model = {d_model}, n_head = {n_head}, n_kv_head = {n_kv_head}: need "
                             f"d_model divisible by n_head and n_head by n_kv_head")
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, d_model // n_head
        self.dropout = dropout
        # W_q, W_k, W_v stacked in one matrix: self-attention projects with one multiply (fewer, larger
        # operations: what bounds cached decoding on a CPU); cross-attention uses its row blocks apart
        self.qkv = nn.Linear(d_model, d_model + 2 * n_kv_head * self.head_dim, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.proj.residual = True  # scaled at init (modules.base.init_weights)

    @log_io
    def forward(self, x, context=None, mask=None, causal: bool = False, rotary=None, bias=None,
                cache: KVCache | None = None, fixed_kv=None):
        """x (B, T, C) queries; context (B, S, C) the keys/values source (default x: self-attention); mask
        (T, S') or (B, 1|H, T, S') bool; causal: the queries are the last T keys; rotary: a
        positions.Rotary; bias (H, T, S') added to the scores; cache: keys/values of earlier steps, extended
        in place; fixed_kv: keys and values projected once from a context that does not change (the encoder
        output while decoding), used instead of projecting one."""
        if fixed_kv is not None:
            q, (k, v) = self.split_heads(self.project_query(x), self.n_head), fixed_kv
        else:
            q, k, v = self.project(x, context)
        if rotary is not None:
            q, k = self.rotate(q, k, rotary)
        if cache is not None:
            k, v = cache.extend(k, v)
        y = self.attend(q, k, v, mask, causal, bias)  # (B, H, T, d)
        return self.proj(self.merge_heads(y))          # (B, T, C)

    @log_io
    def project(self, x, context=None):
        """q (B, H, T, d); k, v (B, H_kv, S, d), from x alone (self-attention) or from the context."""
        C, C_kv = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        if context is None:
            q, k, v = self.qkv(x).split([C, C_kv, C_kv], dim=-1)
        else:
            q, (k, v) = self.project_query(x), self.project_context(context).chunk(2, dim=-1)
        return self.split_heads(q, self.n_head), self.split_heads(k, self.n_kv_head), self.split_heads(v, self.n_kv_head)

    def project_query(self, x):
        """x (B, T, C) -> q (B, T, C), with the query rows of the stacked matrix."""
        C = self.n_head * self.head_dim
        return F.linear(x, self.qkv.weight[:C], None if self.qkv.bias is None else self.qkv.bias[:C])

    def project_context(self, context):
        """context (B, S, C) -> [k; v] (B, S, 2 H_kv d), with the key and value rows of the stacked matrix."""
        C = self.n_head * self.head_dim
        return F.linear(context, self.qkv.weight[C:], None if self.qkv.bias is None else self.qkv.bias[C:])

    def fixed_context(self, context):
        """Keys and values (B, H_kv, S, d) of a context that stays the same over many calls (cross-attention
        to an encoder output), projected once; pass them back as `fixed_kv`."""
        k, v = self.project_context(context).chunk(2, dim=-1)
        return self.split_heads(k, self.n_kv_head), self.split_heads(v, self.n_kv_head)

    @log_io
    def split_heads(self, t, n_heads: int):
        """(B, T, n_heads d) -> (B, n_heads, T, d)."""
        return t.view(*t.shape[:2], n_heads, self.head_dim).transpose(1, 2)

    @log_io
    def merge_heads(self, y):
        """(B, H, T, d) -> (B, T, H d): the heads side by side again."""
        return y.transpose(1, 2).flatten(2)

    @log_io
    def rotate(self, q, k, rotary):
        """RoPE: rotate each (x_i, x_{i+d/2}) pair of q and k by its position's angle."""
        return rotary.rotate(q, k)

    @log_io
    def attend(self, q, k, v, mask=None, causal: bool = False, bias=None):
        """softmax(q k^T / sqrt(d) + bias) v over the allowed keys."""
        T, S = q.shape[2], k.shape[2]
        if self._tracer is not None and self._tracer.keep:  # only while traced with keep=True
            self._tracer.keep_tensor("pattern", self.weights(q, k, mask, causal, bias))
        if causal and mask is None and bias is None and T in (1, S):
            attn_mask, is_causal = None, T > 1  # the fused causal kernel; one newest query sees every key
        else:
            if causal:
                mask = causal_mask(T, S, q.device) if mask is None else mask & causal_mask(T, S, q.device)
            attn_mask, is_causal = mask, False
            if bias is not None:
                attn_mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=self.n_kv_head != self.n_head)

    def weights(self, q, k, mask=None, causal: bool = False, bias=None):
        """The attention pattern (B, H, T, S) itself, for notebooks (the fused kernel never forms it)."""
        if self.n_kv_head != self.n_head:
            k = k.repeat_interleave(self.n_head // self.n_kv_head, dim=1)
        scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5
        if bias is not None:
            scores = scores + bias
        T, S = scores.shape[-2:]
        if causal:
            mask = causal_mask(T, S, q.device) if mask is None else mask & causal_mask(T, S, q.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1)
