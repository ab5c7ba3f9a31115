"""The segment loop shared by the segment-recurrent models (`transformer_xl`, `rmt`).

A sequence of any length is cut where segments of `seg_len` tokens end, and the pieces go through the
model's `step` one after the other, each reading and updating a streaming state. With no state given, a
fresh one is made, so a training call on a whole sequence and a stream fed one token at a time run the
very same code: that is what makes streamed logits equal to the full-sequence ones.
"""
from __future__ import annotations

import torch

from .base import CAUSAL, CLASSIFIES, STREAMS, LanguageModel, Output, as_batch
from .tracing import log_io, scope


def segment_pieces(x, seg_len: int, filled: int = 0) -> list[torch.Tensor]:
    """Cut x (B, L) where segments end, given that the current segment already holds `filled` tokens:
    the first piece completes it, every further piece is a whole segment (the last one maybe shorter)."""
    first = seg_len - filled
    cuts = [0, *range(first, x.shape[1], seg_len), x.shape[1]]
    return [x[:, a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


class SegmentLM(LanguageModel):
    """Base of the segment-recurrent models: subclasses define `init_state(batch_size)` (with `filled`, the
    tokens of the current segment already seen, and `segments`, how many segments have completed) and
    `step(ids, state) -> hidden states`."""
    capabilities = frozenset({CAUSAL, STREAMS, CLASSIFIES})
    carries_memory = True  # the state is bounded: a stream carries it from window to window

    @property
    def max_context(self) -> None:
        return None  # any length: the state is bounded, not the input

    @log_io
    def forward(self, batch, state=None, last_only: bool = False) -> Output:
        """batch (B, L) ids of any length, cut into segments; `state` (streaming) is updated in place."""
        batch = as_batch(batch)
        s = self.init_state(batch.size) if state is None else state
        hidden = []
        for piece in segment_pieces(batch.x, self.cfg.seg_len, s.filled):
            with scope(f"segment.{s.segments}"):               # traces name each segment's calls
                hidden.append(self.step(piece, s))
        return self.outputs(torch.cat(hidden, dim=1), batch, state, last_only)  # hidden (B, L, C)

    def step(self, ids, state):
        """ids (B, T), the next tokens, none past the end of the current segment -> hidden states (B, T, C)."""
        raise NotImplementedError
