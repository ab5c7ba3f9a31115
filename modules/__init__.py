"""mnemo's building blocks and architectures, every one a `LoggingModule` whose shapes can be traced.

Shared blocks: `norms`, `positions`, `attention`, `mlp`, `layer` (the pre-norm residual block), `base`
(batch/output types, capabilities, embedding, heads, init, loss), `decoder` (the forward of the decoder-only
models that read their context in one pass), `segments` (the segment loop of the segment-recurrent models).
One file per architecture. The registry is `config.register`: each config class
names its model class there, and `build_model(cfg)` builds the one of `cfg.arch`.
"""
from __future__ import annotations

import torch

import tools
from config import MODEL_CONFIGS, model_class

from .base import (CAPABILITIES, CAUSAL, CLASSIFIES, ENCODER_DECODER, IGNORE, STREAMS, Batch, LanguageModel,
                   Output, carried)
from .tracing import LoggingModule, log_io, patch, scope, trace


def build_model(cfg) -> LanguageModel:
    """The model of `cfg.arch`, initialised from the torch RNG (seed it first for reproducible weights)."""
    return model_class(cfg.arch)(cfg)


def training_bytes(cfg) -> tuple[int, int]:
    """(parameters, bytes) that training the model of `cfg` holds before any activation: weights, gradients and AdamW's
    moments in float32, and the model's buffers. Counted on the model built on the meta device, which has
    every shape and no memory (and draws nothing from the RNGs)."""
    with torch.device("meta"):
        model = build_model(cfg)
    params = sum(p.numel() for p in model.parameters())
    return params, tools.STATE_BYTES * params + sum(b.numel() * b.element_size() for b in model.buffers())


def architectures(*capabilities: str) -> dict[str, type]:
    """arch name -> model class, for every registered architecture that declares all of `capabilities` (the
    generic tests, experiments and benchmarks iterate over it: `architectures(CAUSAL)` are the language models
    that read a text left to right), in the order they were registered."""
    return {arch: cls for arch in MODEL_CONFIGS if set(capabilities) <= (cls := model_class(arch)).capabilities}


__all__ = ["Batch", "CAPABILITIES", "CAUSAL", "CLASSIFIES", "ENCODER_DECODER", "IGNORE", "LanguageModel",
           "LoggingModule", "Output", "carried", "STREAMS", "architectures", "build_model", "log_io", "patch", "scope",
           "trace", "training_bytes"]
