"""Transformer-XL: segment-level recurrence over cached hidden states.

    for each segment X of seg_len tokens (the last one may be shorter):
        h_0 = Embed(X)
        h_l = Block_l(h_{l-1}, memory = SG(m_{l-1}))   keys/values over [memory; segment], causal in the segment
        logits = Head(Norm(h_L))                       (Head: the LM head, or a classifier)
        m_{l-1} = SG([m_{l-1}; h_{l-1}])[-mem_len:]     each layer keeps its last mem_len inputs

SG is stop-gradient: no gradient ever flows into the memory (XL's truncated BPTT is fixed at depth 0, so it
has no `bptt_depth` knob; RMT has one). A layer sees up to mem_len tokens of the past at its input, and the
reach grows by mem_len at the first layer and seg_len * ceil(mem_len / seg_len) at each further one (the
oldest memory vector saw, one layer down, back to its own segment's start): mem_len when it is a multiple of
seg_len. Positions are counted
over [memory; segment] (queries at M..M+T-1, keys at 0..M+T-1), so the relative bias or RoPE measure the true
distance to every memory vector.

Reference: Dai et al. 2019, "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context"
(arXiv 1901.02860), code kimiyoung/transformer-xl. Simplifications, on purpose: the paper's own relative
encoding (sinusoidal R with the u, v biases) is replaced by mnemo's shared positional schemes (a learned
relative bias per head, or RoPE over the concatenated positions), the same for every model it is compared
with; learned or sinusoidal absolute positions are allowed but show the "temporal confusion" of the paper's
section 3.3 (the same absolute positions recur in every segment, so they cannot tell the memory's tokens
from the segment's). `mem_len = 0` is the segmented Transformer without memory.

Streaming: the state holds, per layer, the memory and the inputs of the current unfinished segment, so
feeding a sequence one token at a time gives exactly the logits of one call on the whole sequence (which
cuts it at the same seg_len boundaries). The state never holds more than mem_len + seg_len vectors a layer.
"""
from __future__ import annotations

import torch

from .layer import decoder_parts
from .positions import positions_after
from .segments import SegmentLM
from .tracing import log_io


class XLState:
    """Per layer: `memory` (B, M <= mem_len, C), detached, and `partial` (B, P < seg_len, C), the layer's
    inputs in the current segment so far (empty after every whole segment)."""

    def __init__(self, memory: list[torch.Tensor], partial: list[torch.Tensor]):
        self.memory, self.partial, self.segments = memory, partial, 0

    @property
    def filled(self) -> int:
        """Tokens of the current segment already seen."""
        return self.partial[0].shape[1]

    def context(self, layer: int) -> torch.Tensor:
        """What layer `layer` attends to besides the new tokens: [memory; partial] (B, M+P, C)."""
        return torch.cat([self.memory[layer], self.partial[layer]], dim=1)

    def advance(self, inputs: list[torch.Tensor], seg_len: int, mem_len: int) -> None:
        """Append the new tokens' layer inputs; when the segment is whole, roll it into the memory."""
        self.partial = [torch.cat([p, h], dim=1) for p, h in zip(self.partial, inputs)]
        if self.filled == seg_len:
            rolled = [torch.cat([m, p], dim=1) for m, p in zip(self.memory, self.partial)]
            self.memory = [r[:, r.shape[1] - min(mem_len, r.shape[1]):].detach() for r in rolled]
            self.partial = [p[:, :0] for p in self.partial]
            self.segments += 1


class TransformerXL(SegmentLM):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(
            cfg, max_len=cfg.mem_len + cfg.seg_len)
        self.init_weights(depth=cfg.n_layer)

    def init_state(self, batch_size: int, source=None) -> XLState:
        empty = self.embed.weight.new_zeros(batch_size, 0, self.cfg.d_model)
        return XLState([empty] * self.cfg.n_layer, [empty] * self.cfg.n_layer)

    @log_io
    def step(self, ids, state: XLState):
        """ids (B, T): tokens of one segment (or the next part of it) -> hidden states (B, T, C); rolls the
        state."""
        q_pos, k_pos = positions_after(state.context(0).shape[1], ids.shape[1])  # after M + P
        h = self.drop(self.positions.embed(self.embed(ids), q_pos))  # (B, T, C)
        extras = self.positions.attention_extras(q_pos, k_pos)
        inputs = []
        for i, block in enumerate(self.blocks):
            inputs.append(h)
            h = block(h, causal=True, memory=state.context(i), **extras)  # (B, T, C)
        self.update_memory(state, inputs)
        return self.norm(h)

    @log_io
    def update_memory(self, state: XLState, inputs: list):
        """m_{l-1} = SG([m_{l-1}; h_{l-1}])[-mem_len:] once the segment is whole: each layer's inputs join
        its memory, detached, keeping the last mem_len. Returns the memory (B, M, C) per layer."""
        state.advance(inputs, self.cfg.seg_len, self.cfg.mem_len)
        return state.memory
