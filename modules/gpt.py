"""GPT: the decoder-only baseline every other architecture is compared with.

    h = Embed(x) (+ absolute positions)
    h = Block_i(h) for i in 1..n_layer     (pre-norm, causal self-attention + MLP)
    logits = Head(Norm(h))                 (head tied to the embedding by default)

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT (structure, init); templateGPT (options:
RMS/Layer/Cosine norm, learned/sinusoidal/RoPE positions, GELU/SwiGLU). The streaming state is a KV
cache per layer: feed a prompt, then one token at a time, and each call attends to everything cached.
"""
from __future__ import annotations

import torch

from .attention import KVCache
from .base import LanguageModel, Output, unpack
from .layer import add_decoder
from .tracing import log_io


class KVState:
    """The streaming state of a GPT: one KV cache per layer."""

    def __init__(self, n_layer: int):
        self.caches = [KVCache() for _ in range(n_layer)]

    def __len__(self) -> int:
        return len(self.caches[0])


class GPT(LanguageModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        add_decoder(self, cfg, max_len=cfg.block_size)
        self.init_weights(cfg.n_layer)

    def init_state(self, batch_size: int) -> KVState:
        return KVState(self.cfg.n_layer)

    @log_io
    def forward(self, batch, state: KVState | None = None) -> Output:
        x, y = unpack(batch)                                   # (B, T)
        past = 0 if state is None else len(state)
        pos = torch.arange(past, past + x.shape[1], device=x.device)
        h = self.drop(self.positions.embed(self.embed(x), pos))  # (B, T, C)
        extras = self.positions.attention_extras(pos, torch.arange(past + x.shape[1], device=x.device)
                                                 if past else pos)
        for i, block in enumerate(self.blocks):
            h = block(h, causal=True, cache=None if state is None else state.caches[i], **extras)
        logits = self.head(self.norm(h))                       # (B, T, V)
        return Output(logits, self.loss(logits, y), state)
