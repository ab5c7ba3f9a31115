"""The HMU Transformer (`hmu`): the encoder-decoder `transformer` with a Hyper-Memory Unit, a VAE bottleneck
whose reconstruction is fused with the representation it read.

    v (B, L, D)                                   encoder output (hmu_at=encoder) or decoder output (decoder)
    mu, logvar = Linear(D->d_z) v, Linear(D->d_z) v
    z  = mu + eps * exp(logvar / 2)               training; z = mu at evaluation (deterministic)
    v^ = Linear(d_z->D) z                         the reconstruction, "the memory"
    gated:   a, b = LN(v), LN(v^);  g = sigmoid(Linear(2D->D) [a; b]);  f = g a + (1 - g) b
             out = LN(GELU(Linear(D->D) f))
    ungated: out = LN(v + Linear(2D->D) GELU(Linear(2D->2D) LN([v; v^])))
    KL = sum over d_z of 0.5 (mu^2 + exp(logvar) - 1 - logvar), averaged over real positions

With hmu_at=encoder every cross-attention of the decoder reads `out` instead of the encoder's states; with
hmu_at=decoder the head reads it. The HMU works position by position, so cached decoding is unchanged.
At D = 256, d_z = 128 it adds 297,472 parameters gated and 494,336 ungated (its VAE alone 98,816), every
Linear and LayerNorm with a bias; the transformer's own weights are built first, from the same RNG draws,
so `transformer` and `hmu` with one seed start from the same encoder and decoder.

Reference: the HMU framework README (Hyper-Memory Unit, gated and ungated fusion, placement after the
encoder or after the decoder). Flaws of the original that mnemo fixes, and says so:
- the VAE had no KL term, so it was an unregularised autoencoder with noise; here the KL is added to the
  loss with weight `kl_weight` (0 reproduces the original) and logged as `kl` (weighted) and `kl_nats`;
- it sampled z at evaluation too, so evaluation was random; here evaluation uses the posterior mean;
- its decoder saw the unshifted target without a causal mask (a label leak); the shared encoder-decoder
  here shifts the target behind `<bos>` and masks causally (see modules/transformer.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, as_batch
from .norms import LayerNorm
from .seq2seq import Seq2SeqState
from .tracing import LoggingModule, log_io
from .transformer import Transformer


class VAE(LoggingModule):
    """Position-wise VAE: D -> (mu, logvar) in d_z -> a sample z -> D."""

    def __init__(self, d_model: int, latent_dim: int):
        super().__init__()
        self.mu = nn.Linear(d_model, latent_dim)
        self.logvar = nn.Linear(d_model, latent_dim)
        self.up = nn.Linear(latent_dim, d_model)

    @log_io
    def posterior(self, v):
        return self.mu(v), self.logvar(v)  # (B, L, d_z) each

    @log_io
    def sample(self, mu, logvar):
        """The reparameterised sample while training; the posterior mean at evaluation (deterministic)."""
        if not self.training:
            return mu
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (B, L, d_z)

    @log_io
    def kl(self, mu, logvar, mask=None):
        """KL(q(z|v) || N(0, I)) in nats, summed over the latent, averaged over real positions: a scalar."""
        per_position = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)  # (B, L)
        if mask is None:
            return per_position.mean()
        return per_position[mask].mean()

    @log_io
    def forward(self, v, mask=None):
        mu, logvar = self.posterior(v)
        v_hat = self.up(self.sample(mu, logvar))  # (B, L, D)
        return v_hat, self.kl(mu, logvar, mask)


class GatedFusion(LoggingModule):
    """f = g a + (1 - g) b with a gate g read from both; then LN(GELU(Linear f))."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm_v, self.norm_r = LayerNorm(d_model), LayerNorm(d_model)
        self.gate = nn.Linear(2 * d_model, d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm_out = LayerNorm(d_model)

    @log_io
    def mix(self, a, b):
        g = torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))  # (B, L, D)
        return g * a + (1 - g) * b

    @log_io
    def forward(self, v, v_hat):
        f = self.mix(self.norm_v(v), self.norm_r(v_hat))  # (B, L, D)
        return self.norm_out(F.gelu(self.proj(f)))


class UngatedFusion(LoggingModule):
    """A residual MLP over the concatenation: LN(v + Linear(GELU(Linear(LN([v; v^])))))."""

    def __init__(self, d_model: int):
        super().__init__()
        self.norm_in = LayerNorm(2 * d_model)
        self.up = nn.Linear(2 * d_model, 2 * d_model)
        self.down = nn.Linear(2 * d_model, d_model)
        self.norm_out = LayerNorm(d_model)

    @log_io
    def forward(self, v, v_hat):
        both = self.norm_in(torch.cat([v, v_hat], dim=-1))  # (B, L, 2D)
        return self.norm_out(v + self.down(F.gelu(self.up(both))))  # (B, L, D)


class HMU(LoggingModule):
    """The Hyper-Memory Unit: v (B, L, D) -> (out (B, L, D), KL scalar)."""

    def __init__(self, d_model: int, latent_dim: int, gated: bool = True):
        super().__init__()
        self.vae = VAE(d_model, latent_dim)
        self.fuse = GatedFusion(d_model) if gated else UngatedFusion(d_model)

    @log_io
    def forward(self, v, mask=None):
        v_hat, kl = self.vae(v, mask)
        return self.fuse(v, v_hat), kl

    def reset_parameters(self) -> None:
        """N(0, 0.02) matrices and zero biases, like the rest of the model (modules.base.init_weights)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)


class HMUTransformer(Transformer):
    aux_terms = {"kl": "loss", "kl_nats": "metric"}  # kl_weight * KL enters the loss; the raw KL is reported

    def __init__(self, cfg):
        super().__init__(cfg)  # the transformer's parts, from the same RNG draws as a plain `transformer`
        self.hmu = HMU(cfg.d_model, cfg.latent_dim, cfg.hmu_gate)
        self.hmu.reset_parameters()

    @log_io
    def forward(self, batch, state: Seq2SeqState | None = None, last_only: bool = False):
        batch = as_batch(batch)
        if self.classifies:  # the classifier pools the encoder's states, after the HMU
            enc, kl = self.encode(batch.src, batch.src_mask, with_kl=True)
            return self.outputs(enc, Batch(mask=batch.src_mask, labels=batch.labels), state, aux=self.aux(kl))
        if state is not None:  # generation: the HMU (if at the encoder) already ran in init_state
            return self.outputs(self.decode_step(batch.x, state), batch, state, last_only)
        enc, kl = self.encode(batch.src, batch.src_mask, with_kl=True)
        h = self.decode(batch.x, enc, batch.src_mask)
        if self.cfg.hmu_at == "decoder":
            h, kl = self.hmu(h, batch.mask)
        return self.outputs(h, batch, state, last_only, self.aux(kl))

    @log_io
    def encode(self, src, src_mask=None, with_kl: bool = False):
        """The transformer's encoder, then (hmu_at=encoder) the HMU: (B, S, C), and the KL if `with_kl`."""
        e = super().encode(src, src_mask)
        kl = e.new_zeros(())
        if self.cfg.hmu_at == "encoder":
            e, kl = self.hmu(e, src_mask)  # (B, S, C)
        return (e, kl) if with_kl else e

    @log_io
    def decode_step(self, x, state: Seq2SeqState):
        """Cached decoding, then (hmu_at=decoder) the HMU on the new positions (it is position-wise)."""
        h = super().decode_step(x, state)
        return self.hmu(h)[0] if self.cfg.hmu_at == "decoder" else h  # (B, T, C)

    def aux(self, kl) -> dict:
        return {"kl": self.cfg.kl_weight * kl, "kl_nats": kl.detach()}
