"""The pre-norm residual Transformer layer every architecture is built from.

    x = x + Attn(Norm(x))            (self-attention; XL-style `memory` joins the keys and values)
    x = x + CrossAttn(Norm(x), enc)  (decoders of encoder-decoder models only)
    x = x + MLP(Norm(x))

Pre-norm (Xiong et al. 2020) keeps the residual stream un-normalised, which trains stably without warm-up
tricks; the model applies one final norm after the last layer.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention, KVCache
from .base import TokenEmbedding, make_head
from .mlp import MLP
from .norms import make_norm
from .positions import Positions
from .tracing import LoggingModule, log_io


class Block(LoggingModule):
    def __init__(self, d_model: int, n_head: int, n_kv_head: int | None = None, norm: str = "rms",
                 mlp: str = "gelu", bias: bool = False, dropout: float = 0.0, cross: bool = False):
        super().__init__()
        self.norm1 = make_norm(norm, d_model, bias)
        self.attn = Attention(d_model, n_head, n_kv_head, bias, dropout)
        if cross:
            self.norm_cross = make_norm(norm, d_model, bias)
            self.cross = Attention(d_model, n_head, n_kv_head, bias, dropout)
        self.norm2 = make_norm(norm, d_model, bias)
        self.mlp = MLP(d_model, mlp, bias, dropout)
        self.drop = nn.Dropout(dropout)

    @classmethod
    def from_config(cls, cfg, cross: bool = False) -> "Block":
        return cls(cfg.d_model, cfg.n_head, cfg.n_kv_head, cfg.norm, cfg.mlp, cfg.bias, cfg.dropout, cross)

    @log_io
    def forward(self, x, mask=None, causal: bool = True, rotary=None, bias=None, cache: KVCache | None = None,
                memory=None, enc=None, enc_mask=None, enc_kv=None):
        """x (B, T, C). memory (B, M, C): earlier hidden states at this layer's input, attended to but not
        updated (Transformer-XL). enc (B, S, C): encoder output for cross-attention, enc_mask its key mask
        (B, 1, 1, S); enc_kv: its keys and values already projected (`self.cross.fixed_context(enc)`), which
        decoding computes once instead of at every token."""
        h = self.norm1(x)
        context = None if memory is None else self.norm1(torch.cat([memory, x], dim=1))  # (B, M+T, C)
        x = x + self.drop(self.attn(h, context, mask=mask, causal=causal, rotary=rotary, bias=bias, cache=cache))
        if enc is not None or enc_kv is not None:
            x = x + self.drop(self.cross(self.norm_cross(x), enc, mask=enc_mask, fixed_kv=enc_kv))
        return x + self.mlp(self.norm2(x))  # (B, T, C)


def stack(cfg, n_layer: int, cross: bool = False, shared: bool = False) -> nn.ModuleList:
    """n_layer pre-norm Blocks of cfg's width, heads, norm and MLP (with cross-attention if `cross`); with
    `shared`, one Block that the list holds n_layer times: n_layer layers of computation, one layer of
    weights (the weight sharing across depth of the Universal Transformer, Dehghani et al. 2019). A state
    dict names the shared weights under every index, so it loads like any other."""
    if shared:
        return nn.ModuleList([Block.from_config(cfg, cross)] * n_layer)
    return nn.ModuleList(Block.from_config(cfg, cross) for _ in range(n_layer))


def run_blocks(blocks, x, caches: list[KVCache] | None, extras: dict):
    """x (B, T, C) through causal Blocks in turn, block i extending caches[i] when streaming; `extras` are the
    positional scheme's keyword arguments for attention (`Positions.attention_extras`)."""
    for i, block in enumerate(blocks):
        x = block(x, causal=True, cache=None if caches is None else caches[i], **extras)
    return x  # (B, T, C)


def decoder_parts(cfg, max_len: int, shared: bool = False) -> tuple:
    """The parts every decoder-only architecture shares, for it to assign by name in its own `__init__`
    (so traces and state dicts read alike): the token embedding, the positional scheme (covering `max_len`
    positions), the embedding dropout, cfg.n_layer pre-norm Blocks (or one Block shared by all n_layer
    layers, see `stack`), the final norm, and the head (the LM head, tied to the embedding if
    cfg.tie_weights, or a classification head when cfg.n_classes >= 2)."""
    embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)
    return (embed, Positions(cfg.pos, cfg.d_model, cfg.n_head, max_len), nn.Dropout(cfg.dropout),
            stack(cfg, cfg.n_layer, shared=shared), make_norm(cfg.norm, cfg.d_model, cfg.bias),
            make_head(cfg, embed))
