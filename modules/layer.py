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
from .base import LMHead, TokenEmbedding
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
                memory=None, enc=None, enc_mask=None):
        """x (B, T, C). memory (B, M, C): earlier hidden states at this layer's input, attended to but not
        updated (Transformer-XL). enc (B, S, C): encoder output for cross-attention."""
        h = self.norm1(x)
        kv = None if memory is None else self.norm1(torch.cat([memory, x], dim=1))  # (B, M+T, C)
        x = x + self.drop(self.attn(h, kv, mask=mask, causal=causal, rotary=rotary, bias=bias, cache=cache))
        if enc is not None:
            x = x + self.drop(self.cross(self.norm_cross(x), enc, mask=enc_mask))
        return x + self.mlp(self.norm2(x))  # (B, T, C)


def add_decoder(model: nn.Module, cfg, max_len: int) -> None:
    """Give `model` the parts every decoder-only architecture shares, under the same names in each (so
    traces and state dicts read alike): `embed`, `positions` (covering `max_len` positions), `drop`, `blocks`
    (cfg.n_layer pre-norm Blocks), the final `norm` and the `head` (tied to the embedding if
    cfg.tie_weights). The architecture then adds what is its own and calls `init_weights`."""
    model.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)
    model.positions = Positions(cfg.pos, cfg.d_model, cfg.n_head, max_len)
    model.drop = nn.Dropout(cfg.dropout)
    model.blocks = nn.ModuleList(Block.from_config(cfg) for _ in range(cfg.n_layer))
    model.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
    model.head = LMHead(cfg.d_model, cfg.vocab_size, tied=model.embed if cfg.tie_weights else None)
