"""HILT: a GPT whose consecutive layer outputs are read, per token, by small inter-layer transformers (ILTs)
that modulate the input of the next layer.

    h_0 = Block_0(Embed(x))
    for i in 1 .. N-1:
        h_i = Block_i(h_{i-1})
        d = stack_depth(h_{i-1}, h_i)          (B, 2, T, C): the two layers' outputs at each token
        m = ILT_i(d)                           proj_in (C -> D), LayerNorm, ilt_layers pre-norm Blocks over
                                               the 2-long depth axis (causal), mean over depth, proj_out (D -> C)
        h_i = h_i + scale * m                  (modulate)
    logits = Head(Norm(h_{N-1}))

The ILT never mixes positions: it runs on (B T, 2, D), one 2-long "sequence" per token. So HILT is causal
exactly when its GPT is, and its streaming state is the GPT's KV cache per layer (`KVState`) unchanged. The
forward is the shared decoder's (`modules.decoder.DecoderLM`); HILT overrides its `layers`.

Curriculum: `scale = mod_start + progress (mod_end - mod_start)`, progress = step / max_iters, set through
`on_step`, the training loop's one callback; in eval mode (evaluation, generation) the scale is `mod_end`.
The scale in use is reported as the aux metric `mod_scale` (columns train_mod_scale, val_mod_scale).

mnemo's reading of the HILT README (the original code was never published, so these are our choices):
- "consecutive layer outputs" = the output of main layer i-1 (as modulated, i.e. what layer i read) and
  of layer i; N-1 ILTs for N layers, the last one modulating the stream before the final norm.
- Each ILT is the README's recipe: D_ilt = `ilt_dim` (128), `ilt_heads` (2), `ilt_layers` (2), feed-forward
  4 D_ilt, dropout `ilt_dropout` (0.1); its layers are mnemo's shared pre-norm Block (with the model's
  norm and MLP kinds), causal over the depth axis, with no positional scheme (the causal mask alone tells
  the two depth positions apart).
- The modulation is additive, scaled, and applied to the residual stream.
- With scale 0 the model is exactly its GPT (same parameter names: a GPT state dict loads with
  `strict=False`, the ILTs left over); tests/test_hilt.py checks equal logits.

Reference: the HILT README (see docs/architectures/hilt.md); the GPT it builds on is modules/gpt.py.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Output, as_batch
from .decoder import DecoderLM
from .layer import Block, decoder_parts
from .norms import make_norm
from .tracing import LoggingModule, log_io


class ILT(LoggingModule):
    """One inter-layer transformer: reads [h_{i-1}, h_i] at every token, returns a modulation (B, T, C)."""

    def __init__(self, cfg):
        super().__init__()
        D = cfg.ilt_dim
        self.proj_in = nn.Linear(cfg.d_model, D, bias=cfg.bias)
        self.norm = make_norm("layer", D, True)
        self.layers = nn.ModuleList(Block(D, cfg.ilt_heads, None, cfg.norm, cfg.mlp, cfg.bias, cfg.ilt_dropout)
                                    for _ in range(cfg.ilt_layers))
        self.proj_out = nn.Linear(D, cfg.d_model, bias=cfg.bias)

    @log_io
    def forward(self, prev, cur):
        """prev, cur (B, T, C): the outputs of two consecutive main layers."""
        B, T, _ = cur.shape
        d = self.proj_in(self.stack_depth(prev, cur))    # (B, 2, T, D)
        d = self.norm(self.per_token(d))                  # (B T, 2, D)
        for layer in self.layers:
            d = layer(d, causal=True)                     # causal over depth; tokens never mix
        return self.proj_out(self.pool(d).view(B, T, -1))  # (B, T, C)

    @log_io
    def stack_depth(self, prev, cur):
        return torch.stack([prev, cur], dim=1)  # (B, 2, T, C)

    @log_io
    def per_token(self, d):
        return d.transpose(1, 2).flatten(0, 1)  # (B, 2, T, D) -> (B T, 2, D)

    @log_io
    def pool(self, d):
        return d.mean(1)  # mean over the depth axis: (B T, D)


class HILT(DecoderLM):
    aux_terms = {"mod_scale": "metric"}

    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(cfg, cfg.block_size)
        self.ilts = nn.ModuleList(ILT(cfg) for _ in range(cfg.n_layer - 1))
        self.progress = 1.0  # set by on_step while training; eval mode always uses mod_end
        self.init_weights(depth=cfg.n_layer)

    def on_step(self, progress: float) -> None:
        self.progress = min(max(progress, 0.0), 1.0)

    @property
    def scale(self) -> float:
        """The modulation scale now: along the curriculum while training, mod_end in eval mode."""
        p = self.progress if self.training else 1.0
        return self.cfg.mod_start + p * (self.cfg.mod_end - self.cfg.mod_start)

    @log_io
    def forward(self, batch, state=None, last_only: bool = False) -> Output:
        """The GPT's forward (`DecoderLM.forward`, its layers as below), with the scale in use as `mod_scale`."""
        batch = as_batch(batch)
        h = self.body(batch.x, state)
        return self.outputs(h, batch, state, last_only, aux={"mod_scale": torch.tensor(self.scale)})

    def layers(self, h, state, q_pos, k_pos):
        """The GPT's blocks, each output after the first modulated by the ILT that reads it with its input."""
        extras = self.positions.attention_extras(q_pos, k_pos)
        for i, block in enumerate(self.blocks):
            out = block(h, causal=True, cache=None if state is None else state.caches[i], **extras)
            h = out if i == 0 else self.modulate(h, out, self.ilts[i - 1])
        return h  # (B, T, C)

    @log_io
    def modulate(self, prev, cur, ilt: ILT):
        """h_i + scale * ILT([h_{i-1}, h_i])."""
        return cur + self.scale * ilt(prev, cur)
