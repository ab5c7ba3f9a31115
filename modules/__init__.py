"""mnemo's building blocks and architectures, every one a `LoggingModule` whose shapes can be traced.

Shared blocks: `norms`, `positions`, `attention`, `mlp`, `layer` (the pre-norm residual block), `base`
(batch/output types, embedding, head, init, loss). One file per architecture; `build_model(cfg)` picks the
class by `cfg.arch`.
"""
from __future__ import annotations

from .base import IGNORE, Batch, LanguageModel, Output
from .gpt import GPT
from .rmt import RMT
from .tracing import LoggingModule, log_io, trace
from .transformer_xl import TransformerXL

ARCHITECTURES: dict[str, type] = {
    "gpt": GPT,
    "transformer_xl": TransformerXL,
    "rmt": RMT,
}


def build_model(cfg) -> LanguageModel:
    """The model of `cfg.arch`, initialised from the torch RNG (seed it first for reproducible weights)."""
    if cfg.arch not in ARCHITECTURES:
        raise ValueError(f"arch = {cfg.arch!r} has no model; valid: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[cfg.arch](cfg)


__all__ = ["ARCHITECTURES", "Batch", "IGNORE", "LanguageModel", "LoggingModule", "Output", "build_model",
           "log_io", "trace"]
