"""The model contract (modules/base.py, modules/seq2seq.py, data.Task.score, the registry) proven on models
defined here, before the real encoder-decoders and classifiers arrive: a fake encoder-decoder and a fake
classifier, each a few lines on the shared blocks, registered for the test only, trained for a few steps
through `train.Trainer`, scored through `task.score`, saved and reloaded. Also: padding never changes what
real positions compute, aux terms get their own log.csv columns, encoder-decoder decoding with caches equals
decoding without, and the activation-patching and trace-scope mechanisms."""
import csv
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import config
import runs
from config import ModelConfig, TrainConfig, model_config, option
from data import make_task, pad_rows
from evaluation import task_scores
from inference import generate, generate_ids
from modules import CAUSAL, CLASSIFIES, Batch, build_model, patch, trace
from modules.base import ClassifierHead, LanguageModel, TokenEmbedding, make_head
from modules.gpt import GPT
from modules.layer import stack
from modules.norms import make_norm
from modules.positions import Positions
from modules.seq2seq import EncoderDecoder, key_mask
from train import Trainer


# --- the fakes: a few lines each on the shared blocks ------------------------------------------------
class FakeSeq2Seq(EncoderDecoder):
    """One encoder layer, one decoder layer with cross-attention."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed = TokenEmbedding(cfg.vocab_size, cfg.d_model)
        self.positions = Positions(cfg.pos, cfg.d_model, cfg.n_head, cfg.block_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder, self.enc_norm = stack(cfg, 1), make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.decoder, self.norm = stack(cfg, 1, cross=True), make_norm(cfg.norm, cfg.d_model, cfg.bias)
        self.head = make_head(cfg, self.embed)
        self.init_weights(depth=2)


class FakeClassifier(LanguageModel):
    """A bidirectional encoder (not causal) with a mean-pooling classification head."""
    capabilities = frozenset({CLASSIFIES})

    def __init__(self, cfg):
        super().__init__(cfg)
        self.embed, self.blocks = TokenEmbedding(cfg.vocab_size, cfg.d_model), stack(cfg, cfg.n_layer)
        self.norm, self.head = make_norm(cfg.norm, cfg.d_model, cfg.bias), ClassifierHead(cfg.d_model, cfg.n_classes, "mean")
        self.init_weights(depth=cfg.n_layer)

    def forward(self, batch, state=None, last_only=False):
        h = self.embed(batch.x)
        for block in self.blocks:
            h = block(h, mask=key_mask(batch.mask), causal=False)
        return self.outputs(self.norm(h), batch, state)


class FakeAux(GPT):
    """A GPT that declares two aux terms: a loss that enters the total and a metric that does not."""
    aux_terms = {"l2": "loss", "h_norm": "metric"}

    def forward(self, batch, state=None, last_only=False):
        batch = Batch(batch) if isinstance(batch, torch.Tensor) else batch
        h = self.body(batch.x, state)
        aux = {"l2": 1e-2 * h.pow(2).mean(), "h_norm": h.norm(dim=-1).mean().detach()}
        return self.outputs(h, batch, state, last_only, aux)


@dataclass
class FakeSeq2SeqConfig(ModelConfig):
    arch: str = option("fake_seq2seq", "test only")


@dataclass
class FakeClassifierConfig(ModelConfig):
    arch: str = option("fake_classifier", "test only")


@dataclass
class FakeAuxConfig(ModelConfig):
    arch: str = option("fake_aux", "test only")


FAKES = {FakeSeq2SeqConfig: FakeSeq2Seq, FakeClassifierConfig: FakeClassifier, FakeAuxConfig: FakeAux}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    """The fakes are in the registry for each test, and gone after it."""
    monkeypatch.setattr(config, "MODEL_CONFIGS", dict(config.MODEL_CONFIGS))
    monkeypatch.setattr(config, "MODEL_CLASSES", dict(config.MODEL_CLASSES))
    for cfg_cls, model_cls in FAKES.items():
        config.register(model_cls)(cfg_cls)


SMALL = dict(n_layer=1, d_model=32, n_head=2)


def train_fake(tmp_path, arch, task, steps=30, **task_fields):
    mcfg = model_config(arch, **SMALL)
    tcfg = TrainConfig(task=task, max_iters=steps, eval_interval=steps // 2, eval_iters=2, batch_size=16,
                       warmup_iters=0, sample_len=4, **task_fields)
    return Trainer(mcfg, tcfg, tmp_path / arch, progress=False, verbose=False).run()


def read_header(run):
    with open(run / "log.csv", newline="") as f:
        return next(csv.reader(f))


# --- trained, scored, saved and reloaded through the real loop ---------------------------------------
def test_a_fake_encoder_decoder_trains_scores_saves_and_reloads(tmp_path):
    t = train_fake(tmp_path, "fake_seq2seq", "copy", steps=60, task_len=4, task_vocab=4)
    rows = t.rows
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.3          # it learns
    assert read_header(t.out)[-2:] == ["val_acc", "val_exact"]        # scored by task.score
    assert rows[-1]["val_acc"] > rows[0]["val_acc"]
    b = t.src.val[0]
    assert b.src is not None and (b.x[:, 0] == t.src.tokenizer.bos_id).all()  # the layout its capabilities ask
    model, cfgs, tok = runs.load_run(t.out)
    assert type(model) is FakeSeq2Seq and cfgs["model"].arch == "fake_seq2seq"
    with torch.no_grad():
        torch.testing.assert_close(model(b).loss, t.model.eval()(b).loss)
    assert task_scores(model, make_task("copy", task_len=4, task_vocab=4), t.src.val) == {
        k: rows[-1][k] for k in ("val_acc", "val_exact")}
    assert "->" in (t.out / "README.md").read_text()                  # a sample of source -> answer


def test_a_fake_classifier_trains_on_padded_sentences_and_gets_its_metrics(tmp_path):
    t = train_fake(tmp_path, "fake_classifier", "majority", steps=60, task_len=10, n_keys=3)
    assert t.mcfg.n_classes == 3 and isinstance(t.model.head, ClassifierHead)
    assert read_header(t.out)[-4:] == ["val_acc", "val_precision", "val_recall", "val_f1"]
    assert t.rows[-1]["val_acc"] > 0.6 > 1 / 3 + 0.1                # well above chance (1/3)
    model, _, _ = runs.load_run(t.out)
    scores = task_scores(model, make_task("majority", task_len=10, n_keys=3), t.src.val)
    assert scores["val_acc"] == pytest.approx(t.rows[-1]["val_acc"])


@pytest.mark.parametrize("arch", ["gpt", "transformer_xl", "rmt"])
def test_every_decoder_classifies_through_the_same_loop(tmp_path, arch):
    extra = {"seg_len": 4} if arch != "gpt" else {}
    mcfg = model_config(arch, **SMALL, **extra)
    tcfg = TrainConfig(task="majority", task_len=8, max_iters=4, eval_interval=2, eval_iters=1, batch_size=8,
                       sample_len=2)
    t = Trainer(mcfg, tcfg, tmp_path / arch, progress=False, verbose=False).run()
    assert t.model.classifies and t.rows[-1]["val_f1"] is not None


class NoClassify(LanguageModel):
    capabilities = frozenset({CAUSAL})


def test_a_model_that_cannot_classify_says_so():
    with pytest.raises(ValueError, match="no classification head"):
        NoClassify(model_config("gpt", vocab_size=10, n_classes=2, **SMALL))


# --- aux terms ------------------------------------------------------------------------------------
def test_declared_aux_terms_get_their_columns_and_losses_enter_the_total(tmp_path):
    t = train_fake(tmp_path, "fake_aux", "copy", steps=6, task_len=3, task_vocab=4)
    header = read_header(t.out)
    assert {"train_l2", "val_l2", "train_h_norm", "val_h_norm"} <= set(header)
    assert all(r["val_l2"] > 0 and r["val_h_norm"] > 0 for r in t.rows)
    b = t.src.val[0]
    out = t.model.eval()(b)
    plain = LanguageModel.loss(out.logits, b.y)
    torch.testing.assert_close(out.loss, plain + out.aux["l2"])        # the loss term is in the total...
    assert set(out.aux) == {"l2", "h_norm"}                             # ...the metric is only reported


# --- padding --------------------------------------------------------------------------------------
def more_padding(ids, mask, extra, pad_id=0):
    return (torch.cat([ids, torch.full((ids.shape[0], extra), pad_id)], 1),
            torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=torch.bool)], 1))


@pytest.mark.parametrize("arch", ["gpt", "transformer_xl", "rmt", "fake_classifier"])
def test_padding_changes_neither_the_loss_nor_the_classification(arch):
    torch.manual_seed(0)
    extra = {"seg_len": 4} if arch in ("transformer_xl", "rmt") else {}
    m = build_model(model_config(arch, vocab_size=12, n_classes=3, block_size=32, **SMALL, **extra)).eval()
    rows = [[5, 6, 7], [8, 9, 5, 6, 7, 8, 9], [4, 4, 4, 4, 4]]
    ids, mask = pad_rows(rows, 0)
    labels = torch.tensor([0, 1, 2])
    a = m(Batch(x=ids, mask=mask, labels=labels))
    ids2, mask2 = more_padding(ids, mask, 9)
    b = m(Batch(x=ids2, mask=mask2, labels=labels))
    torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-6, rtol=0)
    ids3 = ids2.clone()
    ids3[~mask2] = 7                                                   # whatever sits in the padding
    torch.testing.assert_close(m(Batch(x=ids3, mask=mask2)).logits, a.logits, atol=1e-5, rtol=0)


def test_padding_of_source_and_target_changes_no_real_position_of_an_encoder_decoder():
    torch.manual_seed(0)
    m = build_model(model_config("fake_seq2seq", vocab_size=12, block_size=32, **SMALL)).eval()
    src, src_mask = pad_rows([[5, 6, 7, 8], [9, 5]], 0)
    x, x_mask = pad_rows([[2, 5, 6], [2, 9, 5, 7, 7]], 0)
    y = torch.where(x_mask, torch.roll(x, -1, 1), torch.full_like(x, -100))
    a = m(Batch(x=x, y=y, mask=x_mask, src=src, src_mask=src_mask))
    src2, src_mask2 = more_padding(src, src_mask, 6)
    x2, x_mask2 = more_padding(x, x_mask, 4)
    y2 = torch.cat([y, torch.full((2, 4), -100)], 1)
    src2[~src_mask2] = 3
    b = m(Batch(x=x2, y=y2, mask=x_mask2, src=src2, src_mask=src_mask2))
    torch.testing.assert_close(a.logits[x_mask], b.logits[:, :x.shape[1]][x_mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.loss, b.loss, atol=1e-6, rtol=0)


def test_n_tokens_counts_real_tokens_only():
    ids, mask = pad_rows([[1, 2, 3], [4]], 0)
    assert Batch(x=ids, mask=mask).n_tokens == 4
    assert Batch(x=ids, src=ids, src_mask=mask).n_tokens == 6 + 4
    assert Batch(ids).n_tokens == 6


# --- encoder-decoder generation ---------------------------------------------------------------------
def test_encoder_decoder_decoding_with_caches_equals_decoding_without():
    torch.manual_seed(0)
    m = build_model(model_config("fake_seq2seq", vocab_size=12, block_size=32, **SMALL)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)                          # varied greedy choices
    src, src_mask = pad_rows([[5, 6, 7, 8], [9, 5, 3]], 0)
    source = Batch(src=src, src_mask=src_mask)
    start = torch.full((2, 1), 2)
    cached = generate_ids(m, start, 12, temperature=0, use_cache=True, source=source)
    recomputed = generate_ids(m, start, 12, temperature=0, use_cache=False, source=source)
    assert torch.equal(cached, recomputed) and cached.shape == (2, 13)
    assert len(set(cached[0].tolist())) > 2                            # not a constant sequence


def test_generate_reads_a_source_text_for_an_encoder_decoder():
    task = make_task("copy", task_len=4, task_vocab=4)
    torch.manual_seed(0)
    m = build_model(model_config("fake_seq2seq", vocab_size=task.tokenizer.vocab_size, block_size=16, **SMALL))
    out = generate(m, task.tokenizer, ["abca", "dd"], max_new_tokens=5, temperature=0, stop_at_eos=False)
    for text, source in zip(out, ["abca", "dd"]):
        ids = generate_ids(m, torch.tensor([[task.tokenizer.bos_id]]), 5, temperature=0,
                           source=Batch(src=torch.tensor([task.tokenizer.encode(source)])),
                           banned=task.tokenizer.never_generated)
        assert text == task.tokenizer.decode_generated(ids[0, 1:].tolist())
    with pytest.raises(ValueError, match="needs a source"):
        m.init_state(1)


# --- names that read like the papers: scopes, kept patterns, activation patching ---------------------
def rmt(**kw):
    torch.manual_seed(0)
    return build_model(model_config("rmt", vocab_size=10, block_size=12, seg_len=4, n_mem=2, **SMALL, **kw)).eval()


def test_segments_are_named_stably_in_traces_and_attention_patterns_are_kept():
    m, x = rmt(), torch.randint(0, 10, (1, 12))
    with trace(m, keep=True) as t:
        m(x)
    for s in range(3):
        assert f"segment.{s}.blocks.0.attn.attend.pattern" in t.cache
        assert f"segment.{s}.hand_over.out" in t.cache
    pattern = t.cache["segment.1.blocks.0.attn.attend.pattern"]        # (B, H, S, S), S = 2 m + seg_len
    assert pattern.shape == (1, 2, 8, 8)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(1, 2, 8))
    assert (pattern[0, :, 2:6, 6:] == 0).all()                          # segment rows never read write memory
    assert "[segment.1] step: " not in t.text() and "[segment.1] RMT.step" in t.text()


def test_patching_the_memory_hand_over_changes_later_segments_only():
    m, x = rmt(), torch.randint(0, 10, (2, 12))
    base = m(x).logits
    with patch(m, {"hand_over": torch.zeros_like}):
        ablated = m(x).logits
    torch.testing.assert_close(ablated[:, :4], base[:, :4])            # segment 0 reads the initial memory
    assert not torch.allclose(ablated[:, 4:], base[:, 4:])             # later segments read zeros
    torch.testing.assert_close(m(x).logits, base)                      # the patch is gone after the block
    with pytest.raises(ValueError, match="names no traced call"):
        with patch(m, {"no_such_step": torch.zeros_like}):
            pass


@pytest.mark.parametrize("patch_first", [True, False])
def test_patch_and_trace_compose_in_either_order(patch_first):
    m, x = rmt(), torch.randint(0, 10, (1, 8))
    name = "blocks.0.mlp.forward"
    p, t = patch(m, {name: torch.zeros_like}), trace(m, only=("blocks",), keep=True)
    with (p if patch_first else t) as first, (t if patch_first else p) as second:
        patched = m(x).logits
    kept = (second if patch_first else first).cache
    assert (kept[f"segment.0.{name}.out"] == 0).all()
    assert not torch.allclose(patched, m(x).logits)                    # it changed the output...
    assert "_patches" not in m.blocks[0].mlp.__dict__ or not m.blocks[0].mlp.__dict__["_patches"]
    assert "forward" not in m.blocks[0].mlp.__dict__                   # ...and left nothing behind
