"""The decoder-only language model that reads its context in one pass: the forward that GPT, HILT, Hourglass
and Memory Mosaics share, so that each architecture's file holds only what its paper adds.

    h = Embed(x) (+ absolute positions)      x continues what the state holds: positions past .. past+T-1
    h = Layers(h)                            the Blocks in turn, each with its layer's KV cache when streaming
    h = Norm(h)                              (the body ends here: hidden states)
    logits = Head(h)                         (LM head or classifier, `LanguageModel.outputs`)

Positions are consecutive, so they travel as Python ranges and become tensors only where a scheme needs
them (`modules.positions`). A subclass assigns its parts by name in its own `__init__` (`embed`,
`positions`, `drop`, `blocks`, `norm`, `head`: `modules.layer.decoder_parts` builds them) and overrides
what its paper changes: `layers` (HILT modulates between the blocks, Hourglass runs its levels), `body`
(Memory Mosaics: no positions, blocks that carry their own memories), `init_state` (a state that is not
one KV cache per layer).

References: Radford et al. 2019 (GPT-2) and Karpathy's nanoGPT, the shape every one of them starts from.
"""
from __future__ import annotations

from .attention import KVState
from .base import CAUSAL, CLASSIFIES, STREAMS, LanguageModel, Output, as_batch
from .layer import run_blocks
from .positions import positions_after
from .tracing import log_io


class DecoderLM(LanguageModel):
    capabilities = frozenset({CAUSAL, STREAMS, CLASSIFIES})

    def init_state(self, batch_size: int, source=None) -> KVState:
        return KVState(self.cfg.n_layer)

    @log_io
    def forward(self, batch, state=None, last_only: bool = False) -> Output:
        batch = as_batch(batch)
        return self.outputs(self.body(batch.x, state), batch, state, last_only)

    @log_io
    def body(self, x, state=None):
        """x (B, T) ids -> hidden states (B, T, C), after the final norm; with a state, x continues what it
        holds."""
        q_pos, k_pos = positions_after(0 if state is None else len(state), x.shape[1])
        h = self.drop(self.positions.embed(self.embed(x), q_pos))  # (B, T, C)
        return self.norm(self.layers(h, state, q_pos, k_pos))      # (B, T, C)

    def layers(self, h, state, q_pos, k_pos):
        """h (B, T, C) at positions q_pos, attending to keys at k_pos (the cached ones first) -> (B, T, C)."""
        return run_blocks(self.blocks, h, None if state is None else state.caches,
                          self.positions.attention_extras(q_pos, k_pos))
