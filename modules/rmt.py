"""RMT, the Recurrent Memory Transformer: memory tokens read and written by an unchanged Transformer.

    M_0 = a learned (n_mem, C) memory
    for each segment X_s of seg_len tokens (the last one may be shorter):
        H = Blocks([M_s; Embed(X_s); M_s], mask = read_write_mask)     read memory, segment, write memory
        logits_s = Head(Norm(H[segment rows]))                          (Head: LM head, or a classifier)
        M_{s+1} = H[write rows]                                         the last layer's output, carried on

The mask lets read-memory rows see each other only; segment tokens see the read memory and their causal
prefix, never the write memory; write-memory rows see the read memory, the whole segment and each other.
So the memory is written after the segment and read before the next one: information crosses any number
of segments through n_mem vectors, and gradients flow back through the hand-overs (full BPTT by default;
`bptt_depth = k` detaches the memory entering segments k+1, 2(k+1), ..., so a gradient crosses at most k
hand-overs). Positions are counted within each [M; X; M] input; an absolute scheme (learned, sinusoidal)
is added to the segment tokens only, since the memory is a hidden state that would otherwise accumulate a
position embedding at every hand-over.

`n_mem = 0` is the segmented Transformer without memory (each segment alone), the paper's baseline.
`mem_at = "start"` is the ablation with memory before the segment only, [M; X]: the new memory is read
from the memory rows' outputs, which under a causal decoder can see nothing but the memory, so nothing of
the segment is carried on and copy falls to chance.

Reference: Bulatov, Kuratov, Burtsev 2022, "Recurrent Memory Transformer" (arXiv 2207.06881), decoder-only
as in their code (booydar/LM-RMT), which built on Transformer-XL (Dai et al. 2019, arXiv 1901.02860).
Fixed here on purpose: the initial memory has distinct rows (randn times the embedding's std; the original
repeated one row n_mem times, so the rows could only differ through positions), and the mask is tested so
that no segment token sees the write memory (a published port leaked the future through it).

Streaming: the state is the memory plus the current unfinished segment's tokens. Each call recomputes that
segment so far (O(seg_len) per new token, the segment tokens never see the write rows, so their logits do
not depend on the segment being whole) and, when a segment completes, carries its write memory on. The
state never grows with the length of the stream.
"""
from __future__ import annotations

import torch

from torch import nn

from .base import no_decay
from .layer import decoder_parts
from .segments import SegmentLM
from .tracing import log_io


def read_write_mask(n_mem: int, seg_len: int, mem_at: str = "both", device=None) -> torch.Tensor:
    """(S, S) bool, True where a row may look, for the input [M; X; M] (S = 2 n_mem + seg_len), or [M; X]
    (S = n_mem + seg_len) when mem_at = 'start'."""
    m, T = n_mem, seg_len
    S = 2 * m + T if mem_at == "both" else m + T
    mask = torch.zeros(S, S, dtype=torch.bool, device=device)
    mask[:, :m] = True                                 # everyone reads the read memory, which sees only itself
    mask[m:m + T, m:m + T] = torch.ones(T, T, dtype=torch.bool, device=device).tril()  # causal segment
    mask[m + T:, m:] = True                                             # write rows: segment and each other
    return mask


class RMTState:
    """`memory` (B, n_mem, C): what the next segment reads; `tokens` (B, P < seg_len): the current
    segment so far; `segments`: how many segments have completed (for the bptt_depth rule)."""

    def __init__(self, memory: torch.Tensor, tokens: torch.Tensor):
        self.memory, self.tokens, self.segments = memory, tokens, 0

    @property
    def filled(self) -> int:
        return self.tokens.shape[1]


class RMT(SegmentLM):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(
            cfg, max_len=2 * cfg.n_mem + cfg.seg_len)
        # M_0: n_mem learned vectors, each row drawn on its own like a token embedding's (N(0, 0.02)), and
        # like one kept out of weight decay
        self.init_memory = no_decay(nn.Parameter(torch.empty(cfg.n_mem, cfg.d_model)))
        self.init_weights(depth=cfg.n_layer)
        nn.init.normal_(self.init_memory, 0.0, 0.02)

    def init_state(self, batch_size: int, source=None) -> RMTState:
        memory = self.init_memory[None].expand(batch_size, -1, -1)               # (B, m, C)
        return RMTState(memory, torch.zeros(batch_size, 0, dtype=torch.long, device=memory.device))

    @log_io
    def step(self, ids, state: RMTState):
        """ids (B, T): the next tokens of the current segment -> their hidden states (B, T, C). Runs the
        segment so far; if it is now whole, hands its write memory to the next one."""
        tokens = torch.cat([state.tokens, ids], dim=1)          # (B, P+T)
        h, memory = self.segment(state.memory, tokens)
        if tokens.shape[1] == self.cfg.seg_len:
            state.segments += 1
            state.memory, state.tokens = self.hand_over(memory, state.segments), tokens[:, :0]
        else:
            state.tokens = tokens
        return self.norm(h[:, -ids.shape[1]:])                  # (B, T, C)

    @log_io
    def segment(self, memory, ids):
        """memory (B, m, C), ids (B, T) -> the segment's outputs (B, T, C) and the new memory (B, m, C)."""
        m, T = memory.shape[1], ids.shape[1]
        x = self.positions.embed(self.embed(ids), range(m, m + T))
        h = self.place_memory(memory, self.drop(x))             # (B, S, C)
        pos = range(h.shape[1])
        mask = read_write_mask(m, T, self.cfg.mem_at, h.device)
        extras = self.positions.attention_extras(pos, pos)
        for block in self.blocks:
            h = block(h, mask=mask, causal=False, **extras)     # (B, S, C)
        return self.take_memory(h, m)

    @log_io
    def place_memory(self, memory, x):
        """[M; X; M] (B, 2m+T, C), or [M; X] (B, m+T, C) for mem_at = 'start'."""
        parts = [memory, x, memory] if self.cfg.mem_at == "both" else [memory, x]
        return torch.cat(parts, dim=1)

    @log_io
    def take_memory(self, h, n_mem: int):
        """Last layer's output (B, S, C) -> segment rows (B, T, C), new memory (B, m, C): the write rows,
        or for mem_at = 'start' the read rows (which saw nothing but the old memory)."""
        if self.cfg.mem_at == "both":
            return h[:, n_mem:h.shape[1] - n_mem], h[:, h.shape[1] - n_mem:]
        return h[:, n_mem:], h[:, :n_mem]

    @log_io
    def hand_over(self, memory, segment: int):
        """The memory entering segment number `segment` (1-based count of completed segments), detached
        every bptt_depth + 1 segments so that gradients cross at most bptt_depth hand-overs."""
        k = self.cfg.bptt_depth
        return memory.detach() if k >= 0 and segment % (k + 1) == 0 else memory
