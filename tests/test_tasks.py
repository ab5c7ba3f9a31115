"""Tests of the synthetic tasks (data.py): seeded and deterministic, answers right (quadratic equations
checked by substitution), the decoder-only layout, and every architecture able to run every task."""
import re

import numpy as np
import pytest
import torch

from data import DECODER, ENCODER_DECODER, TASKS, QuadraticEquations, make_task
from evaluation import greedy_answers, task_scores
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
    b = task.batch(4, np.random.default_rng(0), ENCODER_DECODER, split=None)  # any example: the draws of examples()
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
    b = task.batch(4, np.random.default_rng(0), split=None)  # any example: the draws of examples()
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
    b = task.batch(3, np.random.default_rng(0), model.batch_layout())
    assert torch.isfinite(model(b).loss)
    scores = task_scores(model, task, [b])
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


def test_quadratic_equations_shrink_by_cutting_the_worked_solution_short():
    from data import curriculum_stages
    task = make_task("sqeq")
    prompts, answers = task.examples(5, np.random.default_rng(0))
    for steps, small in enumerate(task.smaller(), 1):  # the same draws: the answer's first `steps` fields
        p, a = small.examples(5, np.random.default_rng(0))
        assert (p == prompts).all() and decode_rows(small, a) == [";".join(r.split(";")[:steps])
                                                                for r in decode_rows(task, answers)]
    assert [(t.steps, t.seq_len) for t in curriculum_stages(task, 16)] == [(1, 42), (3, 62)]  # 3, then 4 segments
    with pytest.raises(ValueError, match="steps = 4 is not valid"):
        QuadraticEquations(steps=4)


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


# --- classification from a TSV/CSV file: its length, and the rows it refuses ----------------------------
FILMS = {"pos": ("good", "great", "fine", "superb"), "neg": ("bad", "dull", "awful", "poor")}


def film_files(folder, n_train=40, n_dev=10):
    """train.tsv and dev.tsv whose every sentence starts with the same 8 characters, 'the film', so that
    only what comes after them tells the label (pos or neg); both files balanced."""
    def rows(n, offset):
        out = ["sentence\tlabel"]
        for k in range(n):
            label = ("pos", "neg")[k % 2]
            tail = " indeed" if (k // 2 + offset) % 3 == 0 else ""
            out.append(f"the film was {FILMS[label][(k // 2 + offset) % 4]}{tail}\t{label}")
        return "\n".join(out) + "\n"
    (folder / "dev.tsv").write_text(rows(n_dev, 1), encoding="utf-8")
    path = folder / "train.tsv"
    path.write_text(rows(n_train, 0), encoding="utf-8")
    return path


def test_classify_takes_its_length_from_the_data_up_to_block_size(tmp_path):
    path = film_files(tmp_path)
    lengths = [len(line.split("\t")[0]) for f in ("train.tsv", "dev.tsv")
               for line in (tmp_path / f).read_text().splitlines()[1:]]
    longest = max(lengths)
    task = make_task("classify", data=str(path))                       # the default: the whole examples
    assert task.task_len == task.seq_len == longest == 26
    assert [len(r) for r in task.train_rows + task.val_rows] == lengths
    assert task.note == f"classify: 50 examples, the longest {longest} tokens: none cut"
    roomy = make_task("classify", data=str(path), block_size=longest)  # a block that holds them: nothing cut
    assert roomy.train_rows == task.train_rows and "none cut" in roomy.note
    capped = make_task("classify", data=str(path), block_size=20)
    cut = sum(n > 20 for n in lengths)
    assert capped.seq_len == 20 and max(map(len, capped.train_rows + capped.val_rows)) == 20 and 0 < cut < 50
    assert f"{cut} of 50 examples cut to block_size = 20 tokens" in capped.note and "--block_size" in capped.note
    assert f"the longest has {longest}" in capped.note
    short = make_task("classify", task_len=8, data=str(path), block_size=128)  # an explicit task_len is kept
    assert short.seq_len == 8 and "50 of 50 examples cut to task_len = 8 tokens (40 training, 10 validation" \
        in short.note
    assert {short.tokenizer.decode(r) for r in short.train_rows} == {"the film"}


def test_the_task_len_default_is_8_for_every_task_but_classify_from_a_file():
    from config import TrainConfig
    assert TrainConfig().task_len == TrainConfig(task="copy").task_len == TrainConfig(task="classify").task_len == 8
    assert TrainConfig(task="classify", data="train.tsv").task_len == 0     # measured from the file
    assert TrainConfig(task="classify", data="train.tsv", task_len=12).task_len == 12
    assert make_task("copy").task_len == make_task("classify").task_len == 8


def train_films(tmp_path, name, *flags):
    """Train a tiny GPT classifier on film_files through the command line; (its run folder, what it printed)."""
    import train
    out = tmp_path / name
    code = train.main(["--task", "classify", "--data", str(tmp_path / "train.tsv"), "--n_layer", "1", "--d_model",
                       "32", "--n_head", "2", "--max_iters", "80", "--eval_interval", "80", "--eval_iters", "1",
                       "--batch_size", "16", "--warmup_iters", "0", "--sample_len", "2", "--progress", "false",
                       "--out", str(out), *flags])
    assert code == 0
    return out


def test_a_classify_run_reads_whole_sentences_by_default_and_a_short_task_len_scores_chance(tmp_path, capsys):
    """The label comes after the 8 characters every sentence starts with: cut there (--task_len 8, the old
    default), every example looks the same and the score is chance, 0.5; the default reads them whole."""
    import runs
    import tools
    from train import make_source
    film_files(tmp_path)
    run = train_films(tmp_path, "whole")
    printed = capsys.readouterr().out
    summary, note = tools.load_json(run / "summary.json"), "classify: 50 examples, the longest 26 tokens: none cut"
    assert summary["val_acc"] == 1.0 and note in printed and note in (run / "README.md").read_text()
    assert tools.load_json(run / "model_config.json")["block_size"] == 26
    assert tools.load_json(run / "train_config.json")["task_len"] == 0  # a resume measures the file again
    assert tools.load_json(run / "labels.json") == ["neg", "pos"]
    cfgs = runs.load_configs(run)                                      # what a resume and load_run rebuild
    src, mcfg = make_source(cfgs["model"], cfgs["train"], progress=False)
    assert mcfg == cfgs["model"] and src.note == note
    # cut to 'the film', every input is the same, so any model, however long trained, gives one answer
    cut = train_films(tmp_path, "cut", "--task_len", "8", "--max_iters", "2", "--eval_interval", "2")
    assert tools.load_json(cut / "summary.json")["val_acc"] == 0.5
    assert "50 of 50 examples cut to task_len = 8 tokens" in capsys.readouterr().out


def refused_then_read(path, bad: str, good: str, says: str):
    """`path` holding `bad` is refused by classify with a DataFileError matching `says`; holding `good` (the
    control) it is read: the task."""
    from data import DataFileError
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(DataFileError, match=says):
        make_task("classify", data=str(path))
    path.write_text(good, encoding="utf-8")
    return make_task("classify", data=str(path))


@pytest.mark.parametrize("defect, fixed, says", [
    ("the film was good\t\n", "the film was good\tpos\n",
     r"train.tsv, line 3, column 'label': the label is empty; every row needs one of \['neg', 'pos'\]"),
    ("the film was\tgood\tpos\n", "the film was good\tpos\n",
     r"train.tsv, line 3: 3 fields, but the header has 2 \(\['sentence', 'label'\]\); the extra: \['pos'\]; a tab "
     r"inside a text splits it"),
])
def test_an_empty_label_or_an_extra_field_is_refused_with_its_file_and_line(tmp_path, defect, fixed, says):
    """Today's file with the defect fixed is read, the same row included (the control)."""
    text = "sentence\tlabel\nthe film was bad\tneg\n{}the film was dull\tneg\nthe film was fine\tpos\n"
    task = refused_then_read(tmp_path / "train.tsv", text.format(defect), text.format(fixed), says)
    assert task.labels == ["neg", "pos"] and len(task.train_rows) + len(task.val_rows) == 4


def test_a_file_whose_labels_are_all_empty_says_so(tmp_path):
    task = refused_then_read(tmp_path / "train.tsv", "sentence\tlabel\ngood\t\nbad\t\n",
                             "sentence\tlabel\ngood\tpos\nbad\tneg\n",
                             r"train.tsv, column 'label': no label \(every one is empty\); "
                             r"classification needs at least 2")
    assert task.labels == ["neg", "pos"]


def test_an_unquoted_comma_in_a_csv_text_is_refused_and_a_quoted_one_read(tmp_path):
    task = refused_then_read(tmp_path / "films.csv",
                             "sentence,label\nbad,neg\ngood, really,pos\nfine,pos\ndull,neg\n",
                             'sentence,label\nbad,neg\n"good, really",pos\nfine,pos\ndull,neg\n',
                             r"films.csv, line 3: 3 fields, but the header has 2 .*the extra: \['pos'\]; a comma "
                             r"inside a text splits it unless the field is quoted")
    assert "good, really" in {task.tokenizer.decode(r) for r in task.train_rows + task.val_rows}


def test_an_empty_label_in_the_dev_file_is_refused_and_the_command_line_says_so(tmp_path, capsys):
    import train
    path = film_files(tmp_path)
    dev = (tmp_path / "dev.tsv").read_text().splitlines()
    args = ["--task", "classify", "--data", str(path), "--max_iters", "1", "--out", str(tmp_path / "run")]
    (tmp_path / "dev.tsv").write_text("\n".join(dev[:4] + ["the film was good\t "] + dev[4:]) + "\n")
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"train.py: error: {tmp_path / 'dev.tsv'}, line 5, column 'label': "
                                                "the label is empty") and "Traceback" not in err
    assert not (tmp_path / "run" / "model.pt").exists()
    (tmp_path / "dev.tsv").write_text("\n".join(dev) + "\n")                # the control: the file as it was
    assert make_task("classify", data=str(path)).val_labels == [1, 0] * 5
