"""GPT: the decoder-only baseline every other architecture is compared with.

    h = Embed(x) (+ absolute positions)
    h = Block_i(h) for i in 1..n_layer     (pre-norm, causal self-attention + MLP)
    h = Norm(h)                            (the body ends here: hidden states)
    logits = Head(h)                       (LM head tied to the embedding by default, or a classifier)

References: Radford et al. 2019 (GPT-2); Karpathy's nanoGPT (structure, init); templateGPT (options:
RMS/Layer/Cosine norm, learned/sinusoidal/RoPE positions, GELU/SwiGLU). The forward is the shared
decoder's (`modules.decoder.DecoderLM`): a GPT adds nothing to it. The streaming state is a KV cache per
layer (`modules.attention.KVState`): feed a prompt, then one token at a time, and each call attends to
everything cached.
"""
from __future__ import annotations

from .decoder import DecoderLM
from .layer import decoder_parts


class GPT(DecoderLM):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.positions, self.drop, self.blocks, self.norm, self.head = decoder_parts(cfg, cfg.block_size)
        self.init_weights(depth=cfg.n_layer)
