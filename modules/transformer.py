"""The encoder-decoder Transformer (`transformer`): the baseline of the HMU framework's comparison.

    e = Encoder(Embed(src) + Pos)               bidirectional self-attention over the real source tokens
    h = Decoder(Embed(<bos> tgt[:-1]) + Pos, e) causal self-attention, then cross-attention to e
    logits = Head(h)                            tied to the shared embedding; or a classifier over pooled e

References: Vaswani et al. 2017, "Attention Is All You Need" (arXiv 1706.03762); the HMU framework README
(4+4 layers, D = 256, 8 heads, ReLU feed-forward 4D, sinusoidal positions, one embedding shared by source
and target). What mnemo does differently from that code, and why:
- the decoder reads the target shifted right behind `<bos>` under a causal mask (the original fed the
  unshifted target with no mask: every position could read the token it had to predict);
- the blocks are pre-norm (`modules.layer.Block`), which trains without warm-up tricks; the original used
  PyTorch's post-norm `nn.Transformer`.
The forward pass, the caches and the padding masks are the shared encoder-decoder's (`modules.seq2seq`).
"""
from __future__ import annotations

from torch import nn

from .base import TokenEmbedding, make_head
from .layer import stack
from .norms import make_norm
from .positions import Positions
from .seq2seq import EncoderDecoder


class Transformer(EncoderDecoder):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)  # shared by source, target and head
        self.positions = Positions(cfg.pos, cfg.d_model, cfg.n_head, cfg.block_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = stack(cfg, cfg.n_enc_layer)
        self.enc_norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.decoder = stack(cfg, cfg.n_dec_layer, cross=True)
        self.norm = make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.head = make_head(cfg, self.embed)
        self.init_weights(depth=cfg.n_enc_layer + cfg.n_dec_layer)
