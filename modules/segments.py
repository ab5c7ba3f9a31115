"""The segment loop shared by the segment-recurrent models (`transformer_xl`, `rmt`).

A sequence of any length is cut where segments of `seg_len` tokens end, and the pieces go through the
model's `step` one after the other, each reading and updating a streaming state. With no state given, a
fresh one is made, so a training call on a whole sequence and a stream fed one token at a time run the
very same code: that is what makes streamed logits equal to the full-sequence ones.
"""
from __future__ import annotations

import torch

from .base import LanguageModel, Output, unpack
from .tracing import log_io


def segment_pieces(x, seg_len: int, filled: int = 0) -> list[torch.Tensor]:
    """Cut x (B, L) where segments end, given that the current segment already holds `filled` tokens:
    the first piece completes it, every further piece is a whole segment (the last one maybe shorter)."""
    first = seg_len - filled
    cuts = [0, *range(first, x.shape[1], seg_len), x.shape[1]]
    return [x[:, a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


class SegmentLM(LanguageModel):
    """Base of the segment-recurrent models: subclasses define `init_state(batch_size)` (with a `filled`
    property, the tokens of the current segment already seen) and `step(ids, state) -> logits`."""

    @property
    def max_context(self) -> None:
        return None  # any length: the state is bounded, not the input

    @log_io
    def forward(self, batch, state=None) -> Output:
        """batch (B, L) ids of any length, cut into segments; `state` (streaming) is updated in place."""
        x, y = unpack(batch)
        s = self.init_state(x.shape[0]) if state is None else state
        logits = torch.cat([self.step(piece, s) for piece in segment_pieces(x, self.cfg.seg_len, s.filled)],
                           dim=1)                               # (B, L, V)
        return Output(logits, self.loss(logits, y), state)

    def step(self, ids, state):
        """ids (B, T), the next tokens, none past the end of the current segment -> logits (B, T, V)."""
        raise NotImplementedError
