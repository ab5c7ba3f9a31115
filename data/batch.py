"""The batch: what data makes and every model reads (the contract between `data/` and `modules/`).

Three forms share one dataclass: decoder-only (`x`, `y`), encoder-decoder (`src` and its padding mask, decoder
input `x` = target shifted right behind `<bos>`, targets `y`) and classification (`labels`). A task can make
its examples in either of two layouts, DECODER (`prompt <sep> answer` in one sequence) or ENCODER_DECODER (the
prompt as the source); a model reads one of them (`LanguageModel.batch_layout()`, from its capabilities), and
the training loop asks the task for that one. See docs/design.md#models.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

IGNORE = -100  # target id that takes no loss (prompt positions of a task, padding)
DECODER, ENCODER_DECODER = "decoder", "encoder_decoder"  # the two layouts of a (prompt, answer) example


@dataclass
class Batch:
    """One batch in any of the three forms; fields a form does not use stay None.

    Examples of different lengths are right-padded; a mask is True at real tokens. Padded positions never
    take loss (their target is IGNORE), are never attended to by an encoder or a cross-attention, and, since
    they come after every real token, a causal decoder's outputs at real positions never see them."""
    x: torch.Tensor | None = None         # (B, T) input ids: the sequence (decoder-only), or <bos> + target[:-1]
    y: torch.Tensor | None = None         # (B, T) target ids, IGNORE where no loss is taken
    mask: torch.Tensor | None = None      # (B, T) bool, True at real tokens of x; None = no padding
    src: torch.Tensor | None = None       # (B, S) source ids (encoder-decoder)
    src_mask: torch.Tensor | None = None  # (B, S) bool, True at real source tokens; None = no padding
    labels: torch.Tensor | None = None    # (B,) class ids (classification)

    @property
    def size(self) -> int:
        return (self.x if self.x is not None else self.src).shape[0]

    @property
    def n_tokens(self) -> int:
        """Real (non-padding) tokens the model reads: what throughput counts."""
        def count(ids, mask):
            return 0 if ids is None else ids.numel() if mask is None else int(mask.sum())
        return count(self.x, self.mask) + count(self.src, self.src_mask)

    def rows(self, start: int, stop: int) -> "Batch":
        """Examples start..stop-1 (one process's share of a global batch)."""
        return type(self)(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[start:stop]
                             for f in fields(self)})

    def to(self, device) -> "Batch":
        return type(self)(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                             for f in fields(self)})



def pad_rows(rows: list, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists of different lengths: (ids (B, T), mask (B, T) True at real tokens)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask
