"""What every architecture shares: the batch and output types, the capabilities a model declares, the token
embedding, the heads, initialisation, the loss, and the `LanguageModel` base class with the one call shape

    model(batch, state=None, last_only=False) -> Output(logits, loss, state, aux)

`batch` is a `Batch` — the decoder-only form (`x`, `y`), the encoder-decoder form (`src` and its padding
mask, decoder input `x` = target shifted right behind `<bos>`, targets `y`) or a classification batch
(`labels`) — or a bare (B, T) tensor of ids for inference. A model is a *body* that turns ids into hidden
states and a separate *head*: the LM head (next-token logits, tied to the embedding or not) or a
classification head that pools the hidden states. `state` is what the model carries between calls when
streaming (a KV cache, a memory, an encoded source); `init_state(batch_size, source)` makes a fresh one.
`aux` holds named extra scalars: loss terms already added into `loss` (a KL term) and metrics that are not;
the model declares their names in `aux_terms`, and the training loop logs each as its own column.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from data.batch import DECODER, ENCODER_DECODER as ENCODER_DECODER_LAYOUT, IGNORE, Batch

from .tracing import LoggingModule, log_io

# --- capabilities: what a model is, declared by its class, read by the generic tests and by inference ----
CAUSAL = "causal"                    # the output at position t depends on the inputs up to t only
STREAMS = "streams"                  # carries a state: a sequence fed in pieces gives the logits of one call
ENCODER_DECODER = "encoder_decoder"  # reads `batch.src`, writes the target `batch.x` -> `batch.y`
CLASSIFIES = "classifies"            # takes n_classes >= 2: a classification head over pooled hidden states
CAPABILITIES = (CAUSAL, STREAMS, ENCODER_DECODER, CLASSIFIES)

NO_AUX: Mapping[str, torch.Tensor] = MappingProxyType({})


def as_batch(batch) -> Batch:
    """A bare (B, T) id tensor is the decoder-only form without targets."""
    return Batch(batch) if isinstance(batch, torch.Tensor) else batch


class Output(NamedTuple):
    logits: torch.Tensor            # (B, T, V) next-token logits, or (B, n_classes) for a classifier
    loss: torch.Tensor | None       # scalar: mean cross-entropy over the non-ignored targets + aux losses
    state: Any = None               # carried state for streaming, None when not streaming
    aux: Mapping[str, torch.Tensor] = NO_AUX  # named extra scalars (see LanguageModel.aux_terms)


# --- embedding and heads ------------------------------------------------------------------------------
class TokenEmbedding(LoggingModule):
    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.weight = no_decay(nn.Parameter(torch.empty(vocab_size, d_model)))

    @log_io
    def forward(self, ids):
        return F.embedding(ids, self.weight)  # (B, T, C)


class LMHead(LoggingModule):
    """Final projection to vocabulary logits; shares the embedding matrix when tied."""

    def __init__(self, d_model: int, vocab_size: int, tied: TokenEmbedding | None = None):
        super().__init__()
        self.weight = tied.weight if tied is not None else nn.Parameter(torch.empty(vocab_size, d_model))

    @log_io
    def forward(self, h):
        return F.linear(h, self.weight)  # (B, T, V)


class ClassifierHead(LoggingModule):
    """Pool the hidden states of each sequence into one vector, then a linear layer to class logits.

    mean: over the real (non-padding) positions; first: the first token (an encoder's summary position);
    last: the last real token — for a causal decoder the only position that has read the whole input."""

    def __init__(self, d_model: int, n_classes: int, pooling: str = "last"):
        super().__init__()
        if pooling not in ("mean", "first", "last"):
            raise ValueError(f"pooling = {pooling!r} is not valid; choose mean, first or last")
        self.pooling = pooling
        self.proj = nn.Linear(d_model, n_classes)

    @log_io
    def pool(self, h, mask=None):
        """h (B, T, C), mask (B, T) True at real tokens -> (B, C)."""
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
        if self.pooling == "first":
            return h[:, 0]
        if self.pooling == "last":
            last = mask.long().cumsum(1).argmax(1)                 # index of the last real token
            return h[torch.arange(h.shape[0], device=h.device), last]
        m = mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1)

    @log_io
    def forward(self, h, mask=None):
        return self.proj(self.pool(h, mask))  # (B, n_classes)


def make_head(cfg, embed: TokenEmbedding) -> LMHead | ClassifierHead:
    """The head cfg asks for: a classification head when cfg.n_classes >= 2, else the LM head (tied to
    `embed` when cfg.tie_weights)."""
    if getattr(cfg, "n_classes", 0):
        return ClassifierHead(cfg.d_model, cfg.n_classes, cfg.pooling)
    return LMHead(cfg.d_model, cfg.vocab_size, tied=embed if cfg.tie_weights else None)


# --- the base class -------------------------------------------------------------------------------
class LanguageModel(LoggingModule):
    """Base class of every architecture.

    A subclass assigns its parts in its own `__init__`, declares its `capabilities`, and writes `forward`
    as body then `self.outputs(h, batch, state, last_only)`, which applies the head and computes the loss.
    """
    capabilities: frozenset = frozenset({CAUSAL, CLASSIFIES})
    aux_terms: Mapping[str, str] = NO_AUX  # name -> "loss" (already in Output.loss) or "metric"
    # Does the model carry a bounded memory from one window of a text to the next (segment-level recurrence:
    # Transformer-XL, RMT)? A stream (`--stream true`, `evaluation.stream_scores`) hands it on from window to
    # window; a model whose state grows with its context (a KV cache) reads each window alone.
    carries_memory: bool = False
    # Evaluation-time ablations the model can be scored under, by name, through its `ablated(name)` context
    # manager (the HMU: its latent replaced); evaluation.evaluate_run scores a task run under each.
    ablations: tuple[str, ...] = ()

    def __init__(self, cfg):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError(f"vocab_size = {cfg.vocab_size}: set it from the tokenizer before building")
        if getattr(cfg, "n_classes", 0) and CLASSIFIES not in self.capabilities:
            raise ValueError(f"arch = {cfg.arch!r} has no classification head; n_classes must be 0")
        self.cfg = cfg

    @property
    def max_context(self) -> int | None:
        """Longest input the model takes in one call (None: unbounded, for segment-recurrent models)."""
        return self.cfg.block_size

    @property
    def classifies(self) -> bool:
        return isinstance(self.head, ClassifierHead)

    @classmethod
    def batch_layout(cls) -> str:
        """The layout of the batches this model reads, from its capabilities: an encoder-decoder reads a task's
        prompt as its source (data.batch.ENCODER_DECODER), every other model `prompt <sep> answer` (DECODER).
        The training loop asks the task for this layout."""
        return ENCODER_DECODER_LAYOUT if ENCODER_DECODER in cls.capabilities else DECODER

    def init_state(self, batch_size: int, source: Batch | None = None):
        """A fresh streaming state (None for models that carry nothing). Encoder-decoders encode `source`
        (its `src`, `src_mask`) here, once per generation."""
        return None

    def on_step(self, progress: float) -> None:
        """Training callback, called before each optimizer step with progress = step / max_iters.
        Architectures with a curriculum override it; the loop never branches on the architecture."""

    def outputs(self, h, batch: Batch, state=None, last_only: bool = False, aux=NO_AUX) -> Output:
        """The head on the body's hidden states h (B, T, C) and the loss against the batch's targets (or
        labels). last_only: next-token logits of the last position only (B, 1, V), which is all that
        generation needs (the head is the largest matrix multiply of a small model)."""
        if self.classifies:
            logits = self.head(h, batch.mask)                          # (B, n_classes)
            loss = None if batch.labels is None else F.cross_entropy(logits.float(), batch.labels)
        else:
            logits = self.head(h[:, -1:] if last_only else h)          # (B, T or 1, V)
            loss = None if last_only else self.loss(logits, batch.y)
        if loss is not None:
            loss = loss + sum((v for k, v in aux.items() if self.aux_terms.get(k) == "loss"), loss.new_zeros(()))
        return Output(logits, loss, state, MappingProxyType(dict(aux)) if aux else NO_AUX)

    def next_logits(self, ids, state=None):
        """Logits (B, V) of the token after `ids` (B, T). With a state, `ids` are the newest tokens and the
        state holds the rest (it is updated); without one, `ids` is the whole context, recomputed."""
        return self(ids, state, last_only=True).logits[:, -1]

    @staticmethod
    def loss(logits, y):
        if y is None:
            return None
        return F.cross_entropy(logits.flatten(0, -2).float(), y.flatten(), ignore_index=IGNORE)

    def num_params(self, embedding: bool = True) -> int:
        """Parameters, counting a tied matrix once; without the token embedding if embedding=False."""
        n = sum(p.numel() for p in self.parameters())
        if not embedding:
            n -= sum(p.numel() for m in self.modules() if isinstance(m, TokenEmbedding) for p in m.parameters())
        return n

    def init_weights(self, depth: int) -> None:
        """N(0, 0.02) for matrices and embeddings, zeros for biases; residual output projections
        N(0, 0.02 / sqrt(2 depth)) so the residual stream does not grow with depth (GPT-2). `depth` is the
        number of residual layers the stream passes through (a hierarchical model counts every level)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                std = 0.02 / math.sqrt(2 * depth) if getattr(m, "residual", False) else 0.02
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Embedding, TokenEmbedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, LMHead) and isinstance(m.weight, nn.Parameter) and m.weight.dim() == 2:
                nn.init.normal_(m.weight, 0.0, 0.02)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: matrices decay; norms, biases and per-head scalars (dim < 2) don't, nor do tables
        of embeddings/biases marked `no_decay` (a rare token's row should not shrink while unused)."""
        decay, no_decay, seen = [], [], set()
        for p in self.parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (decay if p.dim() >= 2 and not getattr(p, "no_decay", False) else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def carried(state, to=None):
    """A copy of a streaming state (its attributes: tensors, lists of them, counts) with every tensor detached
    from the graph that made it, and moved `to` a device if given: what one window hands the next, so that no
    gradient flows back into the window before (truncated backpropagation at window boundaries, as
    Transformer-XL trains) and the old graph is freed. `vars(carried(s))` is also what a checkpoint stores."""
    def cut(v):
        if isinstance(v, torch.Tensor):
            return v.detach() if to is None else v.detach().to(to)
        return type(v)(map(cut, v)) if isinstance(v, (list, tuple)) else v
    out = object.__new__(type(state))
    vars(out).update({k: cut(v) for k, v in vars(state).items()})
    return out


def no_decay(p: nn.Parameter) -> nn.Parameter:
    """Mark a parameter table (embedding, position or bias table) as exempt from weight decay."""
    p.no_decay = True
    return p
