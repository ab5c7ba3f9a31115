"""Tests of the synthetic tasks (data.py): seeded and deterministic, answers right (quadratic equations
checked by substitution), the decoder-only layout, and every architecture able to run every task."""
import re

import numpy as np
import pytest
import torch

from data import DECODER, ENCODER_DECODER, TASKS, QuadraticEquations, greedy_answers, layout_of, make_task
from modules import architectures, build_model
from test_causality import arch_config
from modules.base import IGNORE


def decode_rows(task, rows):
    return [task.tokenizer.decode(r.tolist()) for r in rows]


ANSWER_TASKS = sorted(n for n in TASKS if make_task(n).n_classes == 0)


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("layout", [DECODER, ENCODER_DECODER])
def test_deterministic_per_seed(name, layout):
    task = make_task(name)
    a, b, c = (task.batch(16, np.random.default_rng(seed), layout) for seed in (7, 7, 8))
    fields = [f for f in ("x", "y", "mask", "src", "src_mask", "labels") if getattr(a, f) is not None]
    assert all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)
    assert not all(torch.equal(getattr(a, f), getattr(c, f)) for f in fields)


@pytest.mark.parametrize("name", ANSWER_TASKS)
def test_encoder_decoder_layout_source_then_bos_and_the_answer(name):
    task = make_task(name)
    prompts, answers = (torch.from_numpy(a) for a in task.examples(4, np.random.default_rng(0)))
    b = task.batch(4, np.random.default_rng(0), ENCODER_DECODER)
    assert torch.equal(b.src, prompts) and torch.equal(b.y, answers)
    assert (b.x[:, 0] == task.tokenizer.bos_id).all() and torch.equal(b.x[:, 1:], answers[:, :-1])
    assert b.n_tokens == prompts.numel() + answers.numel()


def test_majority_pads_sentences_of_different_lengths_and_its_label_is_the_majority():
    task = make_task("majority", task_len=12, n_keys=3)
    b = task.batch(64, np.random.default_rng(0))
    lengths = b.mask.sum(1)
    assert lengths.min() >= 6 and lengths.max() == 12 and len(set(lengths.tolist())) > 3
    assert (b.x[~b.mask] == task.tokenizer.pad_id).all() and b.n_tokens == int(lengths.sum())
    for row, m, label in zip(b.x, b.mask, b.labels):
        assert int((row[m] == task.first + label).sum()) > int(m.sum()) // 2


def test_classification_metrics_at_chance_and_perfect():
    from data import classification_metrics
    true = torch.arange(4).repeat(250)
    perfect = classification_metrics(true, true, 4)
    assert perfect == {"val_acc": 1.0, "val_precision": 1.0, "val_recall": 1.0, "val_f1": 1.0}
    constant = classification_metrics(torch.zeros_like(true), true, 4)
    assert constant["val_acc"] == 0.25 and constant["val_recall"] == 0.25
    assert constant["val_precision"] == pytest.approx(0.25 / 4) and constant["val_f1"] == pytest.approx(0.1)
    g = torch.Generator().manual_seed(0)
    random = classification_metrics(torch.randint(0, 4, true.shape, generator=g), true, 4)
    assert all(abs(v - 0.25) < 0.05 for v in random.values())


@pytest.mark.parametrize("name", ANSWER_TASKS)
def test_layout_prompt_sep_answer_with_loss_on_the_answer_only(name):
    task = make_task(name)
    prompts, answers = task.examples(4, np.random.default_rng(0))
    b = task.batch(4, np.random.default_rng(0))
    P, A = prompts.shape[1], answers.shape[1]
    assert b.x.shape == (4, task.seq_len) == (4, P + A)
    assert (b.x[:, P] == task.tokenizer.sep_id).all()
    assert (b.y[:, :P] == IGNORE).all() and torch.equal(b.y[:, P:], torch.from_numpy(answers))


def test_copy_and_reverse_answers():
    rng = np.random.default_rng(0)
    x, a = make_task("copy", task_len=5).examples(8, rng)
    assert np.array_equal(a, np.concatenate([x, x], axis=1))
    x, a = make_task("reverse", task_len=5, task_vocab=20).examples(8, rng)
    assert np.array_equal(a, x[:, ::-1]) and x.shape == (8, 5)
    assert x.min() >= 5 and x.max() < 25                                # 5 specials, then 20 symbols


def test_retrieval_answers_the_value_of_the_queried_key():
    task = make_task("retrieval", n_keys=6, task_vocab=8)
    prompts, answers = task.examples(64, np.random.default_rng(0))
    for p, a in zip(decode_rows(task, prompts), decode_rows(task, answers)):
        pairs, query = p[:-2], p[-1]
        keys, values = pairs[0::2], pairs[1::2]
        assert p[-2] == "?" and len(keys) == 6 == len(set(keys)) and set(keys) <= set("abcdefgh")
        assert values.isdigit() and a == values[keys.index(query)]


def test_retrieval_needs_enough_letters_for_distinct_keys():
    with pytest.raises(ValueError, match="n_keys = 5"):
        make_task("retrieval", n_keys=5, task_vocab=4)


def poly(text):
    """'ax^2+bx+c' -> (a, b, c)."""
    m = re.fullmatch(r"(-?\d+)x\^2([+-]\d+)x([+-]\d+)", text)
    return tuple(map(int, m.groups()))


def test_quadratic_equations_are_solved_correctly():
    task = make_task("sqeq")
    prompts, answers = task.examples(200, np.random.default_rng(0))
    for p, a in zip(decode_rows(task, prompts), decode_rows(task, answers)):
        lhs, rhs = p.strip().split("=")
        a2, p1, q = poly(lhs)
        s, t = map(int, re.fullmatch(r"(-?\d+)x([+-]\d+)", rhs).groups())
        canonical, disc, roots = (field.strip() for field in a.split(";"))
        assert canonical.endswith("=0") and poly(canonical[:-2]) == (a2, p1 - s, q - t)
        A, B, C = a2, p1 - s, q - t
        assert A != 0 and disc == f"D={B * B - 4 * A * C}"
        r1, r2 = map(int, roots.removeprefix("x=").split(","))
        assert -100 < r1 <= r2 < 100
        for r in (r1, r2):                                               # substitution, both forms
            assert A * r * r + B * r + C == 0 and a2 * r * r + p1 * r + q == s * r + t


def test_quadratic_fields_are_fixed_width_even_at_the_extremes():
    task = QuadraticEquations()
    prompt, answer = task.solve(-9, -99, -99, -9, -9)
    assert len(prompt) == task.WIDTHS["equation"] and prompt.strip() == "-9x^2-1791x-88218=-9x-9"
    assert len(answer) == sum(task.WIDTHS[k] for k in ("canonical", "discriminant", "roots")) + 2
    with pytest.raises(ValueError, match="longer than its field"):
        task.field("x=-100,100", 9)


@pytest.mark.parametrize("name", sorted(TASKS))
@pytest.mark.parametrize("arch", sorted(architectures()))
def test_every_architecture_runs_every_task(name, arch):
    """Built from the registry and the task alone (the layout comes from the model's capabilities): a finite
    loss, and the task's own scorer runs on the model's outputs."""
    task = make_task(name)
    cfg = arch_config(arch, vocab_size=task.tokenizer.vocab_size, block_size=task.seq_len, n_layer=1,
                      d_model=16, n_head=2, n_classes=task.n_classes)
    torch.manual_seed(0)
    model = build_model(cfg)
    b = task.batch(3, np.random.default_rng(0), layout_of(type(model)))
    assert torch.isfinite(model(b).loss)
    scores = task.score(model, [b])
    assert list(scores) == task.metrics() and all(task.metric_range(k)[0] <= v <= task.metric_range(k)[1]
                                                  for k, v in scores.items())
    if task.n_classes == 0:
        pred, true = greedy_answers(model, b)
        assert pred.shape == true.shape == (3, task.examples(1, np.random.default_rng(0))[1].shape[1])


# --- the RMT paper's curriculum over the number of segments -----------------------------------------
@pytest.mark.parametrize("name, seg_len", [("copy", 4), ("reverse", 4), ("retrieval", 3), ("copy", 5)])
def test_curriculum_grows_one_segment_at_a_time_to_the_full_task(name, seg_len):
    from data import curriculum_stages
    task = make_task(name, 8, 10, 4)
    stages = curriculum_stages(task, seg_len)
    segments = [-(-t.seq_len // seg_len) for t in stages]
    assert stages[-1] is task and segments == sorted(set(segments))  # strictly more segments each stage
    assert segments[-1] - segments[0] >= len(segments) - 1 and segments[0] <= 2
    assert all(t.tokenizer.vocab_size == task.tokenizer.vocab_size for t in stages)  # one vocabulary
    assert len(stages) > 2


def test_a_task_of_one_size_has_no_curriculum():
    from data import curriculum_stages
    with pytest.raises(ValueError, match="has one size only.*copy"):
        curriculum_stages(make_task("majority", 8, 10, 4), 4)


def test_training_with_a_curriculum_draws_the_stage_of_each_step(tmp_path):
    """The training batches grow with the step (2 steps a stage), validation stays on the full task, and a
    model without segments refuses the option by name."""
    from config import ConfigError, TrainConfig, model_config
    from train import make_source
    tcfg = TrainConfig(task="copy", task_len=8, curriculum=2, batch_size=2, eval_iters=1)
    src, mcfg = make_source(model_config("rmt", seg_len=4, n_mem=2, n_layer=1, d_model=16, n_head=2), tcfg)
    rng = np.random.default_rng(0)
    lengths = [src.train_batch(rng, step).x.shape[1] for step in range(14)]
    assert lengths == [3, 3, 6, 6, 12, 12, 15, 15, 18, 18, 24, 24, 24, 24]
    assert src.val[0].x.shape[1] == 24 == mcfg.block_size
    with pytest.raises(ConfigError, match="curriculum = 2.*'gpt'"):
        make_source(model_config("gpt", n_layer=1, d_model=16, n_head=2), tcfg)


@pytest.mark.parametrize("arch, fields", [("rmt", {"n_mem": 2}), ("transformer_xl", {"mem_len": 4})])
def test_segmented_models_train_through_every_stage(tmp_path, arch, fields):
    """Sequences shorter than a segment, and ones that end inside a segment, train like full ones."""
    from config import TrainConfig, model_config
    from train import Trainer
    t = Trainer(model_config(arch, seg_len=4, n_layer=1, d_model=16, n_head=2, **fields),
                TrainConfig(task="copy", task_len=8, curriculum=1, max_iters=7, batch_size=2, eval_interval=7,
                            eval_iters=1, sample_len=0), tmp_path / arch, progress=False, verbose=False)
    t.run()
    assert t.step == 7 and np.isfinite(t.rows[-1]["train_loss"]) and np.isfinite(t.rows[-1]["val_loss"])
