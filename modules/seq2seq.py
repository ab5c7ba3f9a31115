"""The encoder-decoder shape shared by the sequence-to-sequence models (`transformer`, `hmu`).

    e = Encoder(Embed(src))                     bidirectional self-attention over the real source tokens
    h = Decoder(Embed(<bos> tgt[:-1]), e)       causal self-attention, then cross-attention to e
    logits = Head(h)                            next target token (or: a classifier over pooled e)

Padding: the source is right-padded, and `src_mask` (True at real tokens) becomes a key mask for the
encoder's self-attention and the decoder's cross-attention, so no real position ever reads a pad. The
decoder input is right-padded too; its causal mask already keeps real positions from reading the pads that
follow them, and pads take no loss.

Generation (`init_state` then `next_logits`): the encoder runs once per source, each decoder layer's
cross-attention keys and values are projected from it once (`Attention.fixed_context`), and the decoder's
self-attention keeps a KV cache, so a new target token costs one decoder pass over one position.

A subclass assigns its parts in its own `__init__` — `embed`, `positions`, `drop`, `encoder` (Blocks),
`enc_norm`, `decoder` (Blocks with cross-attention), `norm`, `head` — and may override `encode` or
`decode` to add its own step (the HMU's bottleneck).
"""
from __future__ import annotations

from .attention import KVState
from .base import CLASSIFIES, ENCODER_DECODER, Batch, LanguageModel, Output, as_batch
from .positions import positions_after
from .tracing import log_io


class Seq2SeqState(KVState):
    """What decoding carries: one self-attention KV cache per decoder layer (`KVState`), and besides, the
    encoder output's cross-attention keys/values per decoder layer and the source key mask."""

    def __init__(self, enc_kv: list, enc_mask, n_layer: int):
        super().__init__(n_layer)
        self.enc_kv, self.enc_mask = enc_kv, enc_mask


def key_mask(mask):
    """(B, S) True at real tokens -> (B, 1, 1, S), the shape attention broadcasts over heads and queries."""
    return None if mask is None else mask[:, None, None, :]


class EncoderDecoder(LanguageModel):
    capabilities = frozenset({ENCODER_DECODER, CLASSIFIES})

    @property
    def max_context(self) -> int:
        return self.cfg.block_size

    @log_io
    def forward(self, batch, state: Seq2SeqState | None = None, last_only: bool = False) -> Output:
        batch = as_batch(batch)
        if self.classifies:  # classification reads the source alone: pool the encoder's states
            enc = self.encode(batch.src, batch.src_mask)
            return self.outputs(enc, Batch(mask=batch.src_mask, labels=batch.labels), state)
        if state is None:
            h = self.decode(batch.x, self.encode(batch.src, batch.src_mask), batch.src_mask)
        else:
            h = self.decode_step(batch.x, state)
        return self.outputs(h, batch, state, last_only)

    @log_io
    def encode(self, src, src_mask=None):
        """src (B, S) -> encoder states (B, S, C); pads are masked as keys."""
        pos = range(src.shape[1])
        e = self.drop(self.positions.embed(self.embed(src), pos))
        extras, mask = self.positions.attention_extras(pos, pos), key_mask(src_mask)
        for block in self.encoder:
            e = block(e, mask=mask, causal=False, **extras)
        return self.enc_norm(e)                                  # (B, S, C)

    @log_io
    def decode(self, x, enc, src_mask=None):
        """x (B, T) decoder input, enc (B, S, C) -> hidden states (B, T, C); training and recomputation."""
        pos = range(x.shape[1])
        h = self.drop(self.positions.embed(self.embed(x), pos))
        extras, mask = self.positions.attention_extras(pos, pos), key_mask(src_mask)
        for block in self.decoder:
            h = block(h, causal=True, enc=enc, enc_mask=mask, **extras)
        return self.norm(h)

    @log_io
    def decode_step(self, x, state: Seq2SeqState):
        """x (B, T) the next decoder tokens -> hidden states (B, T, C), with the caches of `state`."""
        q_pos, k_pos = positions_after(len(state), x.shape[1])
        h = self.drop(self.positions.embed(self.embed(x), q_pos))
        extras = self.positions.attention_extras(q_pos, k_pos)
        for block, cache, enc_kv in zip(self.decoder, state.caches, state.enc_kv):
            h = block(h, causal=True, cache=cache, enc_kv=enc_kv, enc_mask=state.enc_mask, **extras)
        return self.norm(h)

    def init_state(self, batch_size: int, source: Batch | None = None) -> Seq2SeqState:
        """Encode the source once and project its cross-attention keys and values for every decoder layer."""
        if source is None or source.src is None:
            raise ValueError(f"{type(self).__name__} is an encoder-decoder: generation needs a source "
                             f"(a Batch with src) to encode")
        enc = self.encode(source.src, source.src_mask)
        return Seq2SeqState([block.cross.fixed_context(enc) for block in self.decoder], key_mask(source.src_mask),
                            len(self.decoder))
