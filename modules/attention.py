"""Multi-head attention with grouped-query heads, arbitrary boolean masks, additive biases and a KV cache.

    q = x W_q,  k = kv W_k,  v = kv W_v          (kv = x for self-attention)
    y = softmax(q k^T / sqrt(d) + bias, masked) v
    out = merge_heads(y) W_o

The work is split into small traced steps (`project`, `attend`) so a trace reads like the equation.
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
        return None if self.k_buf is None else self.k_buf[:, :, :self.length]

    @property
    def v(self):
        return None if self.v_buf is None else self.v_buf[:, :, :self.length]

    def extend(self, k, v):
        """Append this step's k, v (B, H_kv, T, d) and return the whole cache (B, H_kv, S, d)."""
        n = self.length + k.shape[2]
        if self.k_buf is None or n > self.k_buf.shape[2]:
            self.k_buf, self.v_buf = self._grown(self.k_buf, k, n), self._grown(self.v_buf, v, n)
        self.k_buf[:, :, self.length:n] = k
        self.v_buf[:, :, self.length:n] = v
        self.length = n
        return self.k, self.v

    def _grown(self, old, new, n: int):
        capacity = max(n, 2 * (0 if old is None else old.shape[2]), 64)
        buf = new.new_empty(*new.shape[:2], capacity, new.shape[3])
        if old is not None:
            buf[:, :, :self.length] = old[:, :, :self.length]
        return buf


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
        self.q = nn.Linear(d_model, d_model, bias=bias)
        self.kv = nn.Linear(d_model, 2 * n_kv_head * self.head_dim, bias=bias)
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.proj.residual = True  # scaled at init (modules.base.init_weights)

    @log_io
    def forward(self, x, kv=None, mask=None, causal: bool = False, rotary=None, bias=None,
                cache: KVCache | None = None):
        """x (B, T, C) queries; kv (B, S, C) keys/values source (default x); mask (T, S') or
        (B, 1|H, T, S') bool; causal: the queries are the last T keys; rotary: a positions.Rotary;
        bias (H, T, S') added to the scores; cache: keys/values of earlier steps, extended in place."""
        q, k, v = self.project(x, x if kv is None else kv)
        if rotary is not None:
            q, k = rotary.rotate(q, k)
        if cache is not None:
            k, v = cache.extend(k, v)
        y = self.attend(q, k, v, mask, causal, bias)  # (B, H, T, d)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, T, C)

    @log_io
    def project(self, x, kv):
        """q (B, H, T, d); k, v (B, H_kv, S, d)."""
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = self.kv(kv).view(B, kv.shape[1], 2, self.n_kv_head, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    @log_io
    def attend(self, q, k, v, mask=None, causal: bool = False, bias=None):
        """softmax(q k^T / sqrt(d) + bias) v over the allowed keys."""
        T, S = q.shape[2], k.shape[2]
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
