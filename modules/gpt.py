"""GPT: the decoder-only baseline every other architecture is compared with.

    h = Embed(x) (+ absolute positions)
    h = Block_i(h) for i in 1..n_layer     (pre-norm, causal self-attention + MLP)
    h = Norm(h)                            (the body ends here: hidden states)
    logits = Head(h)                       (LM head tied to the embedding by default, or a classifier)

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT (structure, init); templateGPT (options:
RMS/Layer/Cosine norm, learned/sinusoidal/RoPE positions, GELU/SwiGLU). The streaming state is a KV
cache per layer: feed a prompt, then one token at a time, and each call attends to everything cached.
"""
from __future__ import annotations

from .attention import KVCache
from .base import CAUSAL, CLASSIFIES, STREAMS, LanguageModel, Output, as_batch
from .layer import decoder_parts
from .tracing import log_io


class KVState:
    """The streaming state of a GPT: one KV cache per layer."""

    def __init__(self, n_layer: int):
        self.caches = [KVCache() for _ in range(n_layer)]

    def __len__(self) -> int:
        return len(self.caches[0])


class GPT(LanguageModel):
    capabilities = frozenset({CAUSAL, STREAMS, CLASSIFIES})

    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(cfg, cfg.block_size)
        self.init_weights(depth=cfg.n_layer)

    def init_state(self, batch_size: int, source=None) -> KVState:
        return KVState(self.cfg.n_layer)

    @log_io
    def forward(self, batch, state: KVState | None = None, last_only: bool = False) -> Output:
        batch = as_batch(batch)
        return self.outputs(self.body(batch.x, state), batch, state, last_only)

    @log_io
    def body(self, x, state: KVState | None = None):
        """x (B, T) ids -> hidden states (B, T, C), after the final norm; with a state, x continues what the
        caches hold."""
        past = 0 if state is None else len(state)
        q_pos = range(past, past + x.shape[1])                   # consecutive: a tensor only where needed
        k_pos = range(past + x.shape[1]) if past else q_pos      # the cached keys come first
        h = self.drop(self.positions.embed(self.embed(x), q_pos))  # (B, T, C)
        extras = self.positions.attention_extras(q_pos, k_pos)
        for i, block in enumerate(self.blocks):
            h = block(h, causal=True, cache=None if state is None else state.caches[i], **extras)
        return self.norm(h)
