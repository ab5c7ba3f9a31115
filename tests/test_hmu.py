"""The encoder-decoder `transformer` and the `hmu` (Hyper-Memory Unit): parameter counts as the HMU framework
states them (its preset), deterministic evaluation (posterior mean), the VAE's loss (KL weight, free bits,
annealing, reconstruction), the latent's figures and its ablations, decoder causality, padding invariance, cached
decoding equal to recomputation, the log columns, and the experiment."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from config import PRESETS, ConfigError, TrainConfig, model_config
from data import (ENCODER_DECODER, IGNORE, DataFileError, bleu, distinct_n, make_task, pad_rows, rouge_n, sequence_metrics,
                  without_source)
from evaluation import task_scores
from inference import generate_ids
from modules import Batch, build_model
from modules.hmu import HMU, VAE
from train import Trainer
from train import main as train_main

SMALL = dict(n_layer=1, d_model=32, n_head=2)
VARIANTS = [("transformer", {}), ("hmu", {}), ("hmu", {"hmu_at": "decoder"}), ("hmu", {"hmu_gate": False}),
            ("hmu", {"hmu_gate": False, "hmu_at": "decoder"})]
IDS = ["transformer", "hmu", "hmu-decoder", "hmu-ungated", "hmu-ungated-decoder"]


def make(arch, seed=0, noise=0.3, **kw):
    """A small model with every parameter random (so zero biases and unit norms matter), in eval mode."""
    torch.manual_seed(seed)
    m = build_model(model_config(arch, **{"vocab_size": 12, "block_size": 32, **SMALL, **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * noise)
    return m.eval()


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- parameter counts ----------------------------------------------------------------------------------
def test_the_hmu_adds_the_parameters_the_framework_states():
    framework = {**PRESETS["hmu-framework"].fields, "n_layer": 1}                     # D=256, 8 heads
    plain = build_model(model_config("transformer", vocab_size=20, **framework)).num_params()
    gated = build_model(model_config("hmu", vocab_size=20, **framework)).num_params()
    ungated = build_model(model_config("hmu", vocab_size=20, hmu_gate=False, **framework)).num_params()
    assert model_config("hmu", **framework).latent_dim == 128
    assert gated - plain == 297_472
    assert ungated - plain == 494_336
    assert n_params(VAE(256, 128)) == 98_816
    assert n_params(HMU(256, 128, gated=True)) == 297_472


def test_transformer_and_hmu_start_from_the_same_weights_with_one_seed():
    torch.manual_seed(3)
    a = build_model(model_config("transformer", vocab_size=12, **SMALL)).state_dict()
    torch.manual_seed(3)
    b = build_model(model_config("hmu", vocab_size=12, **SMALL)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and set(b) - set(a) and all(k.startswith("hmu.") for k in set(b) - set(a))


def test_the_default_is_a_laptop_size_and_the_framework_size_a_preset(tmp_path):
    gpt = build_model(model_config("gpt", vocab_size=14)).num_params()
    for arch in ("transformer", "hmu"):
        n = build_model(model_config(arch, vocab_size=14)).num_params()
        assert 0.8 * gpt < n < 1.3 * gpt                                    # near the default GPT's 0.8M
    assert train_main(["--arch", "hmu", "--preset", "hmu-framework", "--n_layer", "1", "--task", "hmu_random",
                       "--task_len", "4", "--max_iters", "1", "--eval_interval", "1", "--eval_iters", "1",
                       "--sample_len", "0", "--progress", "false", "--out", str(tmp_path / "r")]) == 0
    saved = (tmp_path / "r" / "model_config.json").read_text()
    assert '"d_model": 256' in saved and '"n_head": 8' in saved and '"n_layer": 1' in saved  # a flag beside wins
    with pytest.raises(SystemExit):
        train_main(["--arch", "gpt", "--preset", "hmu-framework"])


def test_layer_counts_default_to_n_layer_and_can_differ():
    cfg = model_config("transformer", n_layer=3, n_enc_layer=2)
    assert (cfg.n_enc_layer, cfg.n_dec_layer) == (2, 3)
    m = build_model(model_config("transformer", vocab_size=12, n_enc_layer=1, n_dec_layer=2, d_model=16, n_head=2))
    assert len(m.encoder) == 1 and len(m.decoder) == 2


# --- evaluation is deterministic, training samples --------------------------------------------------------
def src_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    src, x = torch.randint(4, 12, (3, 6), generator=g), torch.randint(4, 12, (3, 5), generator=g)
    return Batch(x=x, y=torch.roll(x, -1, 1), src=src)


@pytest.mark.parametrize("at", ["encoder", "decoder"])
def test_evaluation_uses_the_posterior_mean_and_training_samples(at):
    m, b = make("hmu", hmu_at=at), src_batch()
    with torch.no_grad():
        first, second = m(b), m(b)
        assert torch.equal(first.logits, second.logits) and torch.equal(first.loss, second.loss)
        m.train()
        assert not torch.equal(m(b).logits, m(b).logits)   # z = mu + eps sigma while training
    mu = m.hmu.vae.posterior(torch.randn(2, 3, 32))[0]
    assert torch.equal(m.eval().hmu.vae.sample(mu, torch.zeros_like(mu)), mu)


def test_the_kl_term_enters_the_loss_with_its_weight():
    b = src_batch()
    with torch.no_grad():
        out = make("hmu", kl_weight=0.5, recon_weight=0.0)(b)
        zero = make("hmu", kl_weight=0.0, recon_weight=0.0)(b)
    ce = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), b.y.flatten())
    assert out.aux["kl_nats"] > 0
    torch.testing.assert_close(out.loss, ce + 0.5 * out.aux["kl_nats"])
    torch.testing.assert_close(zero.loss, ce)                          # kl_weight 0: the original's loss
    torch.testing.assert_close(zero.aux["kl_nats"], out.aux["kl_nats"])


def test_free_bits_floor_each_dimension_and_the_reconstruction_term_is_the_elbo():
    vae, g = VAE(8, 4), torch.Generator().manual_seed(0)
    mu = torch.tensor([[[0.1, 2.0, 0.0, 0.0]]])
    logvar = torch.zeros(1, 1, 4)
    per = vae.kl_per_dim(mu, logvar)
    torch.testing.assert_close(per, torch.tensor([0.005, 2.0, 0.0, 0.0]))   # 0.5 mu^2 at sigma 1
    m = make("hmu", kl_weight=0.5, kl_free_bits=1.0)
    torch.testing.assert_close(m.vae_loss(per, torch.tensor(0.0)), torch.tensor(0.5 * (1 + 2 + 1 + 1)))
    v, v_hat = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    torch.testing.assert_close(vae.reconstruction(v_hat, v), 0.5 * (v_hat - v).pow(2).sum(-1).mean())
    b = src_batch()
    with torch.no_grad():
        out = make("hmu", kl_weight=0.0, recon_weight=0.25)(b)
    ce = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), b.y.flatten())
    torch.testing.assert_close(out.loss, ce + 0.25 * out.aux["recon_nats"])


@pytest.mark.parametrize("apart", [True, False])
def test_apart_the_vaes_loss_trains_the_vae_and_never_the_encoder(apart):
    m, b = make("hmu", vae_apart=apart, kl_weight=0.1, recon_weight=0.1).train(), src_batch()
    torch.manual_seed(0)
    out = m(b)
    out.aux["kl"].backward()                                           # the VAE's loss term alone
    encoder = [p.grad for p in m.encoder.parameters()]
    assert all(g is None or not g.abs().any() for g in encoder) == apart
    assert m.hmu.vae.mu.weight.grad.abs().sum() > 0 and m.hmu.vae.up.weight.grad.abs().sum() > 0
    m.zero_grad()
    m(b).loss.backward()                                               # the task still trains the encoder
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_kl_annealing_ramps_the_weight_over_its_fraction_of_training():
    m = make("hmu", kl_weight=1.0, kl_anneal=0.5).train()
    per = torch.ones(4)
    weights = []
    for progress in (0.0, 0.25, 0.5, 0.9):
        m.on_step(progress)
        weights.append(float(m.vae_loss(per, torch.tensor(0.0))) / 4)
    assert weights == pytest.approx([0.0, 0.5, 1.0, 1.0])
    m.on_step(0.1)
    assert float(m.eval().vae_loss(per, torch.tensor(0.0))) == 4.0      # evaluation: the full weight


def test_the_latent_figures_count_dimensions_that_vary_and_their_sigma():
    vae = VAE(8, 3)
    mu = torch.stack([torch.linspace(-1, 1, 10), torch.zeros(10), torch.full((10,), 0.5)], -1)[None]  # (1, 10, 3)
    logvar = torch.log(torch.tensor([0.25, 1.0, 1.0]) ** 2).expand(1, 10, 3)
    active, sigma = vae.usage(mu, logvar)
    assert float(active) == 1 and float(sigma) == pytest.approx(0.25)    # only the first varies; its sigma
    active, sigma = vae.usage(torch.zeros(1, 10, 3), torch.zeros(1, 10, 3))
    assert float(active) == 0 and float(sigma) == 1.0                   # collapsed: none active, sigma 1


@pytest.mark.parametrize("at", ["encoder", "decoder"])
def test_the_ablations_replace_z_by_zero_or_by_another_examples_latent(at):
    m, b = make("hmu", hmu_at=at), src_batch()
    seen = []
    m.hmu.vae.up.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    with torch.no_grad():
        m(b)
        with m.ablated("z0"):
            z0 = m(b).logits
        with m.ablated("zother"):
            m(b)
    mu, zero, other = seen
    assert torch.equal(zero, torch.zeros_like(mu)) and torch.equal(other, mu.roll(1, 0))
    assert not torch.allclose(z0, m(b).logits) and m.hmu.vae.replace is None  # the ablation ends with the block
    with pytest.raises(ValueError, match="zother"):
        with m.ablated("nothing"):
            pass


# --- causality of the decoder -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch,kw", VARIANTS, ids=IDS)
def test_changing_a_target_token_never_changes_earlier_logits(arch, kw):
    m, b = make(arch, **kw), src_batch()
    with torch.no_grad():
        base = m(b).logits
        for p in range(b.x.shape[1]):
            x2 = b.x.clone()
            x2[:, p] = (x2[:, p] - 3) % 8 + 4                          # a different symbol
            changed = m(Batch(x=x2, y=b.y, src=b.src)).logits
            torch.testing.assert_close(changed[:, :p], base[:, :p], atol=1e-5, rtol=0)
            assert not torch.allclose(changed[:, p], base[:, p])       # ...but it changes its own position


# --- padding --------------------------------------------------------------------------------------------
def more_padding(ids, mask, extra, fill):
    return (torch.cat([ids, torch.full((ids.shape[0], extra), fill)], 1),
            torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], 1))


@pytest.mark.parametrize("arch,kw", VARIANTS, ids=IDS)
def test_padding_changes_no_real_position_nor_the_loss(arch, kw):
    m = make(arch, **kw)
    src, src_mask = pad_rows([[5, 6, 7, 8], [9, 5]], 0)
    x, x_mask = pad_rows([[2, 5, 6], [2, 9, 5, 7, 7]], 0)
    y = torch.where(x_mask, torch.roll(x, -1, 1), torch.full_like(x, -100))
    with torch.no_grad():
        a = m(Batch(x=x, y=y, mask=x_mask, src=src, src_mask=src_mask))
        src2, src_mask2 = more_padding(src, src_mask, 6, 3)            # whatever sits in the padding
        x2, x_mask2 = more_padding(x, x_mask, 4, 7)
        y2 = torch.cat([y, torch.full((2, 4), -100)], 1)
        b = m(Batch(x=x2, y=y2, mask=x_mask2, src=src2, src_mask=src_mask2))
    torch.testing.assert_close(a.logits[x_mask], b.logits[:, :x.shape[1]][x_mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)
    for k in a.aux:
        torch.testing.assert_close(a.aux[k], b.aux[k], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch,kw", VARIANTS[:2], ids=IDS[:2])
def test_padding_changes_no_classification(arch, kw):
    m = make(arch, n_classes=3, **kw)
    src, src_mask = pad_rows([[5, 6, 7], [8, 9, 5, 6, 7, 8, 9], [4, 4, 4, 4, 4]], 0)
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        a = m(Batch(src=src, src_mask=src_mask, labels=labels))
        src2, mask2 = more_padding(src, src_mask, 5, 7)
        b = m(Batch(src=src2, src_mask=mask2, labels=labels))
    assert a.logits.shape == (3, 3)
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-5, rtol=0)


def test_the_hmu_after_the_decoder_does_not_apply_to_classification():
    with pytest.raises(ConfigError, match="hmu_at"):
        model_config("hmu", n_classes=2, hmu_at="decoder")


# --- generation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,kw", VARIANTS, ids=IDS)
def test_greedy_decoding_with_caches_equals_decoding_without(arch, kw):
    src, src_mask = pad_rows([[5, 6, 7, 8], [9, 5, 3], [4, 11, 10, 4, 5]], 0)
    source, start, varied = Batch(src=src, src_mask=src_mask), torch.full((3, 1), 2), 0
    for seed in range(6):  # random models often repeat one token: count the seeds whose choices vary
        m = make(arch, seed=seed, noise=0.5, tie_weights=False, **kw)
        cached = generate_ids(m, start, 12, temperature=0, use_cache=True, source=source)
        recomputed = generate_ids(m, start, 12, temperature=0, use_cache=False, source=source)
        assert torch.equal(cached, recomputed) and cached.shape == (3, 13)
        varied += any(len(set(row)) > 1 for row in cached[:, 1:].tolist())  # choices change over time
    assert varied >= 1


# --- the KL columns of a run ---------------------------------------------------------------------------
def test_a_run_logs_the_kl_and_learns(tmp_path):
    mcfg = model_config("hmu", **SMALL, kl_weight=0.1)
    tcfg = TrainConfig(task="copy", task_len=3, task_vocab=4, max_iters=40, eval_interval=20, eval_iters=2,
                       batch_size=16, warmup_iters=0, sample_len=2)
    t = Trainer(mcfg, tcfg, tmp_path / "run", progress=False, verbose=False).run()
    with open(t.out / "log.csv", newline="") as f:
        header = next(csv.reader(f))
    assert {"train_kl", "val_kl", "train_kl_nats", "val_kl_nats", "val_active", "val_sigma", "val_recon_nats"} <= set(header)
    last = t.rows[-1]
    assert last["val_kl"] == pytest.approx(0.1 * last["val_kl_nats"] + 0.1 * last["val_recon_nats"])  # recon_weight 0.1
    assert last["val_loss"] < t.rows[0]["val_loss"] - 0.3


# --- the HMU framework's synthetic patterns -------------------------------------------------------------
PATTERNS = ["hmu_random", "hmu_temporal", "hmu_hierarchical", "hmu_repetitive"]


def values(name, n=400, L=20, V=7, seed=0):
    task = make_task(name, task_len=L, task_vocab=V)
    src, tgt = task.examples(n, np.random.default_rng(seed))
    return task, src - task.first, tgt - task.first


def test_temporal_is_a_walk_and_its_running_sum():
    _, src, tgt = values("hmu_temporal")
    steps = (src[:, 1:] - src[:, :-1]) % 7
    assert set(np.unique(steps)) == {1, 2, 3, 4}
    assert (tgt[:, 0] == src[:, 0]).all() and (tgt[:, 1:] == (src[:, 1:] + tgt[:, :-1]) % 7).all()


@pytest.mark.parametrize("name,block", [("hmu_hierarchical", 5), ("hmu_repetitive", 4)])
def test_hierarchical_and_repetitive_tile_a_block_and_add_one(name, block):
    _, src, tgt = values(name)
    assert (src == np.tile(src[:, :block], (1, 20 // block))).all()
    assert (tgt == (src + 1) % 7).all()
    assert len({tuple(r) for r in src[:, :block]}) > 300                 # the blocks are random


def test_random_targets_are_independent_of_the_source():
    _, src, tgt = values("hmu_random", n=7000)
    joint = np.histogram2d(src[:, 0], tgt[:, 0], bins=7)[0] / 7000
    assert np.abs(joint - 1 / 49).max() < 0.01                            # P(s, t) = P(s) P(t) = 1/49


@pytest.mark.parametrize("name", PATTERNS)
def test_patterns_batch_in_both_layouts(name):
    task = make_task(name, task_len=8, task_vocab=5)
    rng = np.random.default_rng(0)
    enc = task.batch(3, rng, ENCODER_DECODER)
    assert enc.src.shape == enc.y.shape == enc.x.shape == (3, 8) and (enc.x[:, 0] == task.tokenizer.bos_id).all()
    assert torch.equal(enc.x[:, 1:], enc.y[:, :-1])                       # shifted behind <bos>
    dec = task.batch(3, rng)
    assert dec.x.shape == (3, 16) and (dec.y[:, :8] == IGNORE).all() and (dec.x[:, 8] == task.tokenizer.sep_id).all()
    assert set(task.metrics()) >= {"val_acc", "val_exact", "val_ppl", "val_bleu2", "val_rouge2", "val_distinct2",
                                   "val_retention"}


# --- metrics, against hand-computed examples --------------------------------------------------------
def test_bleu_rouge_and_distinct_against_hand_computed_values():
    # "a b c d" against "a b d c": unigrams 4/4, bigrams {ab} of {ab, bc, cd} = 1/3 -> BLEU-2 = sqrt(1/3)
    assert bleu([[1, 2, 3, 4]], [[1, 2, 4, 3]]) == pytest.approx(3 ** -0.5)
    assert rouge_n([[1, 2, 3, 4]], [[1, 2, 4, 3]]) == pytest.approx(1 / 3)  # precision = recall = 1/3
    # clipping: "a a a a" against "a b c d" has one unigram hit, no bigram -> 0
    assert bleu([[1, 1, 1, 1]], [[1, 2, 3, 4]]) == 0.0
    # corpus sums: unigrams (2 + 3) / (3 + 3), bigrams (1 + 2) / (2 + 2) -> sqrt(5/6 * 3/4)
    assert bleu([[1, 2, 5], [1, 2, 3]], [[1, 2, 3], [1, 2, 3]]) == pytest.approx((5 / 6 * 3 / 4) ** 0.5)
    # brevity penalty: 2 predicted tokens for 4 -> exp(1 - 4/2)
    assert bleu([[1, 2]], [[1, 2, 3, 4]]) == pytest.approx(np.exp(-1))
    # ROUGE-2 F1 with different lengths: 1 shared bigram, precision 1/1, recall 1/3 -> 2 * 1/3 / (4/3) = 1/2
    assert rouge_n([[1, 2]], [[1, 2, 3, 4]]) == pytest.approx(0.5)
    assert distinct_n([[1, 2, 1, 2], [1, 2, 3, 4]]) == pytest.approx(4 / 6)  # {12, 21, 23, 34} of 6 bigrams


def test_metrics_are_one_for_a_perfect_model_and_at_chance_for_random_guesses():
    g = torch.Generator().manual_seed(0)
    V, N, A = 5, 2000, 8
    true = torch.randint(0, V, (N, A), generator=g)
    perfect = sequence_metrics(true, true, blind=torch.randint(0, V, (N, A), generator=g))
    assert perfect == pytest.approx({"acc": 1, "exact": 1, "bleu2": 1, "rouge2": 1, "distinct2": 1, "retention": 1})
    guess, other = (torch.randint(0, V, (N, A), generator=g) for _ in range(2))
    chance = sequence_metrics(guess, true, blind=torch.randint(0, V, (N, A), generator=g))
    again = sequence_metrics(other, true)                                 # another random guesser: chance level
    assert chance["acc"] == pytest.approx(1 / V, abs=0.01) and chance["exact"] < 0.001
    assert chance["retention"] == pytest.approx(0, abs=0.02)
    for k in ("bleu2", "rouge2", "distinct2"):
        assert chance[k] == pytest.approx(again[k], abs=0.02)
    assert chance["bleu2"] < 0.5 and chance["rouge2"] < 0.5             # well below a perfect model's 1
    constant = sequence_metrics(torch.zeros_like(true), true, blind=torch.zeros_like(true))
    assert constant["retention"] == 0 and constant["distinct2"] < 0.05     # ignores the source, never varies


def test_retention_replaces_the_source_of_each_example_with_another():
    task = make_task("hmu_temporal", task_len=6, task_vocab=5)
    for layout in (ENCODER_DECODER, "decoder"):
        b = task.batch(4, np.random.default_rng(0), layout)
        blind = without_source(b)
        if layout == ENCODER_DECODER:
            assert torch.equal(blind.src, b.src.roll(1, 0)) and torch.equal(blind.x, b.x)
        else:
            assert torch.equal(blind.x[:, :6], b.x[:, :6].roll(1, 0)) and torch.equal(blind.x[:, 6:], b.x[:, 6:])
        assert torch.equal(blind.y, b.y)


def test_an_untrained_model_scores_near_chance_on_every_metric():
    task = make_task("hmu_temporal", task_len=6, task_vocab=5)
    torch.manual_seed(0)
    m = build_model(model_config("hmu", vocab_size=task.tokenizer.vocab_size, block_size=task.seq_len, **SMALL))
    scores = task_scores(m, task, task.val_batches(4, 32, seed=1, layout=ENCODER_DECODER))
    assert list(scores) == task.metrics()
    assert scores["val_acc"] < 0.4 and abs(scores["val_retention"]) < 0.15
    assert 4 < scores["val_ppl"] < 2 * task.tokenizer.vocab_size


# --- classification from a TSV/CSV file ----------------------------------------------------------------
def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def sentiment_files(tmp_path, n=60):
    """A GLUE-like pair of files: the label is 1 when the sentence says 'good'."""
    rng = np.random.default_rng(0)
    rows = ["sentence\tlabel"] + [f"{'good' if k % 2 else 'bad'} {'xyz'[rng.integers(3)] * int(rng.integers(1, 4))}\t{k % 2}"
                                  for k in range(n)]
    write(tmp_path / "dev.tsv", "\n".join(rows[:1] + rows[1:11]) + "\n")
    return write(tmp_path / "train.tsv", "\n".join(rows) + "\n")


def test_a_tsv_file_with_its_dev_sibling_is_read_and_trained_on(tmp_path):
    path = sentiment_files(tmp_path)
    task = make_task("classify", task_len=16, data=str(path))
    assert task.n_classes == 2 and task.labels == ["0", "1"] and len(task.train_rows) == 60 and len(task.val_rows) == 10
    assert task.tokenizer.decode(task.train_rows[1]).startswith("good ") and task.train_labels[1] == 1
    val = task.val_batches(1, 4, seed=0, layout=ENCODER_DECODER)
    assert [len(b.labels) for b in val] == [4, 4, 2]                     # every validation row, in order
    mcfg = model_config("hmu", **SMALL)
    tcfg = TrainConfig(task="classify", data=str(path), task_len=16, max_iters=40, eval_interval=20, eval_iters=1,
                       batch_size=16, warmup_iters=0, sample_len=2, lr=3e-3)
    t = Trainer(mcfg, tcfg, tmp_path / "run", progress=False, verbose=False).run()
    assert t.mcfg.n_classes == 2 and t.rows[-1]["val_acc"] == 1.0      # 'good' vs 'bad' is easy
    assert {"val_f1", "val_kl"} <= set(t.rows[-1])


def test_sentence_pairs_and_csv_with_quoted_commas(tmp_path):
    path = write(tmp_path / "pairs.csv", 'q1,q2,is_dup\n"a, b",a b,yes\nc,"d ""e""",no\nf,f,yes\ng,h,no\n')
    task = make_task("classify", task_len=32, data=str(path), text_column="q1", text_pair_column="q2",
                     label_column="is_dup")
    assert task.labels == ["no", "yes"] and len(task.train_rows) + len(task.val_rows) == 4
    rows = {task.tokenizer.decode(r) for r in task.train_rows + task.val_rows}
    assert "a, b<sep>a b" in rows and 'c<sep>d "e"' in rows


@pytest.mark.parametrize("text,message", [
    ("", r"line 1: the file is empty"),
    ("text\tlabel\nhello\t1\n", r"line 1 \(header\), column 'sentence': no such column"),
    ("sentence\tlabel\nhello\t1\nbye\n", r"line 3, column 'label': missing"),
    ("sentence\tlabel\n", r"line 2: a header but no rows"),
    ("sentence\tlabel\nhello\t1\nbye\t1\n", r"column 'label': one label only"),
])
def test_a_malformed_file_is_named_with_its_line_and_column(tmp_path, text, message):
    path = write(tmp_path / "train.tsv", text)
    with pytest.raises(DataFileError, match=message) as e:
        make_task("classify", data=str(path))
    assert str(path) in str(e.value)


def test_a_validation_label_unseen_in_training_is_an_error(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    write(tmp_path / "dev.tsv", "sentence\tlabel\nok\t1\nso so\t2\n")
    with pytest.raises(DataFileError, match=r"dev.tsv, line 3, column 'label': label '2' is not among"):
        make_task("classify", data=str(path))


def test_the_command_line_reports_a_malformed_file(tmp_path, capsys):
    path = write(tmp_path / "train.tsv", "text\tlabel\nhello\t1\n")
    with pytest.raises(SystemExit):
        train_main(["--arch", "transformer", "--task", "classify", "--data", str(path), "--out", str(tmp_path / "r")])
    assert "no such column" in capsys.readouterr().err


def test_classify_without_a_file_is_the_builtin_majority_task():
    task, majority = make_task("classify", n_keys=3), make_task("majority", n_keys=3)
    a, b = (t.batch(4, np.random.default_rng(0)) for t in (task, majority))
    assert task.n_classes == 3 and torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)


# --- the experiment runner ----------------------------------------------------------------------------
def test_the_experiment_trains_every_arm_and_stores_the_latent_and_its_ablations(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from experiments import hmu as experiment
    assert experiment.main(["--tasks", "hmu_random", "hmu_temporal", "--quick", "--seeds", "2",
                            "--root", str(tmp_path)]) == 0
    out = tmp_path / "reproduce" / "hmu"
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["pattern"], r["seed"]) for r in rows] == [
        (a, t, str(s)) for t in ("random", "temporal") for a in experiment.ARMS for s in (0, 1)]
    hmu = next(r for r in rows if r["run"] == "hmu")
    transformer = next(r for r in rows if r["run"] == "transformer")
    assert float(hmu["val_kl_nats"]) > 0 and hmu["val_acc_z0"] and hmu["val_acc_zother"] and hmu["val_sigma"]
    assert transformer["val_kl_nats"] == "" and transformer["val_acc_z0"] == ""   # no latent to ablate
    summary = (out / "summary.md").read_text()
    assert "| temporal | hmu-ungated |" in summary and "hmu-decoder vs transformer-untied" in summary
    assert (out / "curves.png").stat().st_size > 1000
    assert experiment.arms_for("classify") == ["transformer", "transformer-untied", "hmu", "hmu-ungated"]
    stored = json.loads((out / "hmu-random-s0" / "evaluation.json").read_text())
    assert stored["retrain"].startswith("python train.py --arch hmu ") and len(stored["weights_sha256"]) == 64


def test_a_stored_evaluation_without_the_ablations_is_computed_again(tmp_path):
    import evaluation
    import tools
    tcfg = TrainConfig(task="hmu_repetitive", task_len=6, task_vocab=5, max_iters=4, eval_interval=2, eval_iters=1,
                       batch_size=8, warmup_iters=0, sample_len=0)
    out = Trainer(model_config("hmu", **SMALL), tcfg, tmp_path / "run", progress=False, verbose=False).run().out
    stored = evaluation.stored_evaluation(out)
    assert {"val_acc_z0", "val_acc_zother", "val_kl_nats", "val_active", "val_sigma"} <= stored.keys()
    tools.save_json(out / "evaluation.json", {k: v for k, v in stored.items() if not k.startswith("val_acc_z")})
    assert evaluation.stored_evaluation(out) == stored                 # as stored before the ablations existed


def test_the_remedy_rule_needs_every_pattern_and_prefers_the_latent_the_model_reads():
    from experiments.hmu import remedy_table
    def r(name, kl, sigma, acc, other):
        return {"run": name, "val_kl_nats": kl, "val_sigma": sigma, "val_acc": acc, "val_acc_zother": other}
    rows = [r("a", 5, 0.5, 0.9, 0.9), r("a", 5, 0.5, 0.9, 0.9),            # qualifies, not read
            r("b", 3, 0.8, 0.7, 0.4), r("b", 2, 0.9, 0.7, 0.5),            # qualifies, read: chosen
            r("c", 9, 0.2, 0.9, 0.1), r("c", 0.5, 0.2, 0.9, 0.1)]          # one pattern under 1 nat
    lines, chosen = remedy_table(rows)
    assert chosen == "b" and len(lines) == 5 and "| c |" in lines[4] and lines[4].endswith("3 of 4 | no |")
    assert remedy_table(rows[4:])[1] == "none qualifies; closest: c"
    assert remedy_table(rows[4:] + [r("d", 0.5, 0.2, 0.9, 0.1), r("d", 0.5, 0.2, 0.9, 0.1)])[1] == \
        "none qualifies; closest: c"                                           # 3 conditions of 4 against 2
