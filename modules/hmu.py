"""The HMU Transformer (`hmu`): the encoder-decoder `transformer` with a Hyper-Memory Unit, a VAE bottleneck
whose reconstruction is fused with the representation it read.

    v (B, L, D)                                   encoder output (hmu_at=encoder) or decoder output (decoder)
    mu, logvar = Linear(D->d_z) v, Linear(D->d_z) v
    z  = mu + eps * exp(logvar / 2)               training; z = mu at evaluation (deterministic)
    v^ = Linear(d_z->D) z                         the reconstruction, "the memory"
    gated:   a, b = LN(v), LN(v^);  g = sigmoid(Linear(2D->D) [a; b]);  f = g a + (1 - g) b
             out = LN(GELU(Linear(D->D) f))
    ungated: out = LN(v + Linear(2D->D) GELU(Linear(2D->2D) LN([v; v^])))
    KL_d = 0.5 (mu_d^2 + exp(logvar_d) - 1 - logvar_d), averaged over real positions, per latent dimension d
    R    = 0.5 |v^ - sg(v)|^2, averaged over real positions  -log p(v | z), a unit Gaussian, up to a constant
    loss term = kl_weight * ramp * sum over d of max(KL_d, kl_free_bits) + recon_weight * R

The loss term decides whether the latent holds anything. With a KL alone the VAE learns that the fusion can
read v itself, so the cheapest latent is none: every posterior sigma goes to 1 and mu to 0 (KL ~ 0), and v^
is noise the gate shuts out (posterior collapse). The remedies, all options here:
- free bits (Kingma et al. 2016, "Improved Variational Inference with Inverse Autoregressive Flow",
  arXiv 1606.04934, appendix C.8): a dimension whose batch-averaged KL is below `kl_free_bits` nats costs
  a constant, so the first nats of every dimension are free;
- KL annealing (Bowman et al. 2016, "Generating Sentences from a Continuous Space", arXiv 1511.06349,
  section 3.1): `ramp` grows linearly from 0 to 1 over the first `kl_anneal` of training;
- the VAE's own objective, a reconstruction term beside the KL (the negative ELBO at recon_weight =
  kl_weight; a beta-VAE, Higgins et al. 2017, at beta = kl_weight / recon_weight), and `vae_apart`: the KL and
  R come from a second pass over sg(v), so the VAE's loss trains the VAE and never shapes what it reads.
The default, recon_weight 0.1 and kl_weight 0.01 (beta 0.1) apart, was chosen among seven by a rule fixed
before the runs (`python experiments/hmu.py --remedies`, notebook 11): no other gave a latent of at least
1 nat on every pattern with sigma well below 1 where the encoder holds something, and a model that reads it.
What a run's latent holds is logged every evaluation: `kl_nats` (sum of KL_d), `recon_nats` (R), `active`
(latent dimensions whose mu varies across positions by more than 0.01, Burda et al. 2016's "active units")
and `sigma` (the mean posterior sigma on the active ones; 1 when none is). `ablated("z0")` and
`ablated("zother")` replace z by the prior's mean or by another example's latent at evaluation: the causal
test of whether the model reads what its latent holds.
With hmu_at=encoder every cross-attention of the decoder reads `out` instead of the encoder's states; with
hmu_at=decoder the head reads it. The HMU works position by position, so cached decoding is unchanged.
At D = 256, d_z = 128 it adds 297,472 parameters gated and 494,336 ungated (its VAE alone 98,816), every
Linear and LayerNorm with a bias; the transformer's own weights are built first, from the same RNG draws,
so `transformer` and `hmu` with one seed start from the same encoder and decoder.

Reference: the HMU framework README (Hyper-Memory Unit, gated and ungated fusion, placement after the
encoder or after the decoder). Flaws of the original that mnemo fixes, and says so:
- the VAE had no loss of its own, so it was an unregularised bottleneck with noise; here the KL and the
  reconstruction enter the loss (`kl_weight 0 --recon_weight 0` reproduces the original), logged as `kl`
  (the loss term), `kl_nats` and `recon_nats`;
- it sampled z at evaluation too, so evaluation was random; here evaluation uses the posterior mean;
- its decoder saw the unshifted target without a causal mask (a label leak); the shared encoder-decoder
  here shifts the target behind `<bos>` and masks causally (see modules/transformer.py).
"""
from __future__ import annotations

import contextlib

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
    ACTIVE = 0.01  # a latent dimension is active when the variance of its mu across positions exceeds this

    def __init__(self, d_model: int, latent_dim: int):
        super().__init__()
        self.mu = nn.Linear(d_model, latent_dim)
        self.logvar = nn.Linear(d_model, latent_dim)
        self.up = nn.Linear(latent_dim, d_model)
        self.replace = None  # evaluation ablation: "z0" (the prior's mean) or "zother" (another example's latent)

    @log_io
    def posterior(self, v):
        return self.mu(v), self.logvar(v)  # (B, L, d_z) each

    @log_io
    def sample(self, mu, logvar):
        """The reparameterised sample while training; the posterior mean at evaluation (deterministic), or
        what `replace` puts in its place: zeros, or the mean of the next example in the batch."""
        if self.training:
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (B, L, d_z)
        if self.replace == "z0":
            return torch.zeros_like(mu)
        return mu.roll(1, 0) if self.replace == "zother" else mu

    @log_io
    def kl_per_dim(self, mu, logvar, mask=None):
        """KL(q(z|v) || N(0, I)) in nats of each latent dimension, averaged over real positions: (d_z,)."""
        per = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)  # (B, L, d_z)
        return (per.flatten(0, 1) if mask is None else per[mask]).mean(0)

    def usage(self, mu, logvar, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(active dimensions, mean posterior sigma on them: 1 when none is), as float scalars."""
        mu, sigma = (t.flatten(0, 1) if mask is None else t[mask] for t in (mu, torch.exp(0.5 * logvar)))
        active = mu.var(0, correction=0) > self.ACTIVE  # (d_z,)
        mean_sigma = sigma[:, active].mean() if active.any() else sigma.new_ones(())
        return active.sum().float(), mean_sigma.detach()

    @log_io
    def reconstruction(self, v_hat, v, mask=None):
        """-log p(v | z) in nats under a unit-variance Gaussian, up to a constant: 0.5 |v^ - v|^2 summed over D,
        averaged over real positions; v is a fixed target (the VAE models it, it does not shape it)."""
        per = 0.5 * (v_hat - v.detach()).pow(2).sum(-1)  # (B, L)
        return per.mean() if mask is None else per[mask].mean()

    @log_io
    def forward(self, v, mask=None, apart: bool = False):
        """v^ and the latent's figures: KL per dimension, reconstruction, active dimensions, sigma. `apart`: the
        KL and the reconstruction come from a second pass over sg(v), so the VAE's loss trains the VAE alone
        and never shapes the representation it reads (the values are the same; only the gradients differ)."""
        mu, logvar = self.posterior(v)
        v_hat = self.up(self.sample(mu, logvar))  # (B, L, D)
        if apart and self.training:
            mu, logvar = self.posterior(v.detach())
            fit = self.up(self.sample(mu, logvar))
        else:
            fit = v_hat
        return (v_hat, self.kl_per_dim(mu, logvar, mask), self.reconstruction(fit, v, mask),
                *self.usage(mu.detach(), logvar.detach(), mask))


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
    """The Hyper-Memory Unit: v (B, L, D) -> (out (B, L, D), the latent's figures: KL per dimension (d_z,),
    reconstruction, active dimensions, mean sigma on them)."""

    def __init__(self, d_model: int, latent_dim: int, gated: bool = True, apart: bool = False):
        super().__init__()
        self.vae = VAE(d_model, latent_dim)
        self.fuse = GatedFusion(d_model) if gated else UngatedFusion(d_model)
        self.apart = apart  # the VAE's loss trains the VAE alone (VAE.forward)

    @log_io
    def forward(self, v, mask=None):
        v_hat, *latent = self.vae(v, mask, self.apart)
        return self.fuse(v, v_hat), latent

    def reset_parameters(self) -> None:
        """N(0, 0.02) matrices and zero biases, like the rest of the model (modules.base.init_weights)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)


class HMUTransformer(Transformer):
    # the loss term enters the loss; the raw KL and the latent's usage are reported
    aux_terms = {"kl": "loss", "kl_nats": "metric", "recon_nats": "metric", "active": "metric", "sigma": "metric"}
    ablations = ("z0", "zother")  # evaluation.evaluate_run scores the model under each (see `ablated`)

    def __init__(self, cfg):
        super().__init__(cfg)  # the transformer's parts, from the same RNG draws as a plain `transformer`
        self.hmu = HMU(cfg.d_model, cfg.latent_dim, cfg.hmu_gate, cfg.vae_apart)
        self.hmu.reset_parameters()
        self.progress = 1.0  # of training, set by on_step; the KL ramp (kl_anneal) reads it

    @log_io
    def forward(self, batch, state: Seq2SeqState | None = None, last_only: bool = False):
        batch = as_batch(batch)
        if self.classifies:  # the classifier pools the encoder's states, after the HMU
            enc, latent = self.encode(batch.src, batch.src_mask, with_latent=True)
            return self.outputs(enc, Batch(mask=batch.src_mask, labels=batch.labels), state, aux=self.aux(latent))
        if state is not None:  # generation: the HMU (if at the encoder) already ran in init_state
            return self.outputs(self.decode_step(batch.x, state), batch, state, last_only)
        enc, latent = self.encode(batch.src, batch.src_mask, with_latent=True)
        h = self.decode(batch.x, enc, batch.src_mask)
        if self.cfg.hmu_at == "decoder":
            h, latent = self.hmu(h, batch.mask)
        return self.outputs(h, batch, state, last_only, self.aux(latent))

    @log_io
    def encode(self, src, src_mask=None, with_latent: bool = False):
        """The transformer's encoder, then (hmu_at=encoder) the HMU: (B, S, C), and the latent's figures if
        `with_latent` (None when the HMU sits after the decoder)."""
        e = super().encode(src, src_mask)
        latent = None
        if self.cfg.hmu_at == "encoder":
            e, latent = self.hmu(e, src_mask)  # (B, S, C)
        return (e, latent) if with_latent else e

    @log_io
    def decode_step(self, x, state: Seq2SeqState):
        """Cached decoding, then (hmu_at=decoder) the HMU on the new positions (it is position-wise)."""
        h = super().decode_step(x, state)
        return self.hmu(h)[0] if self.cfg.hmu_at == "decoder" else h  # (B, T, C)

    def on_step(self, progress: float) -> None:
        self.progress = progress

    def vae_loss(self, kl_per_dim, reconstruction):
        """kl_weight x ramp x the free-bits KL (each dimension's KL counts at least kl_free_bits nats), plus
        recon_weight x the reconstruction's negative log-likelihood."""
        c = self.cfg
        ramp = min(1.0, self.progress / c.kl_anneal) if self.training and c.kl_anneal > 0 else 1.0
        return c.kl_weight * ramp * kl_per_dim.clamp(min=c.kl_free_bits).sum() + c.recon_weight * reconstruction

    def aux(self, latent) -> dict:
        kl_per_dim, reconstruction, active, sigma = latent
        return {"kl": self.vae_loss(kl_per_dim, reconstruction), "kl_nats": kl_per_dim.sum().detach(),
                "recon_nats": reconstruction.detach(), "active": active, "sigma": sigma}

    @contextlib.contextmanager
    def ablated(self, how: str):
        """Within the block (evaluation), z is replaced: "z0" by the prior's mean, "zother" by the latent of the
        next example in the batch. The model as trained against these tells whether it reads its latent."""
        if how not in self.ablations:
            raise ValueError(f"ablation {how!r} is not valid; choose one of {list(self.ablations)}")
        self.hmu.vae.replace = how
        try:
            yield self
        finally:
            self.hmu.vae.replace = None
