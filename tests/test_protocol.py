"""The evaluation protocol: held-out task examples no training run can draw, stream training and evaluation
for the models that carry a memory, resume with that memory, and the replay that keeps runs saved before
held-out examples honest (evaluation.py, data/tasks/base.py, data/corpus.py: Stream, train.py)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluation
import runs
import tools
from config import TrainConfig, model_config
from data import HELD_OUT_EVERY, TASKS, Corpus, digests, held_out, make_task
from train import Trainer

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py: token ids cached in a private folder


def task_named(name, tmp_path):
    if name != "classify":
        return make_task(name)
    path = tmp_path / "train.tsv"  # classify from a file: its held-out examples are the file's validation rows
    path.write_text("sentence\tlabel\n" + "".join(f"{'ab' * (i % 7 + 1)}{i}\t{i % 2}\n" for i in range(60)))
    return make_task("classify", data=str(path))


# --- held-out examples ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TASKS))
def test_no_training_draw_of_any_task_is_an_example_validation_reads(name, tmp_path):
    """Every task: many training draws (several seeds) and the validation draws share no example, whatever the
    seeds; every validation example is held out by its hash and no training example is."""
    task = task_named(name, tmp_path)
    train = [task.draw(64, np.random.default_rng(seed), "train") for seed in range(4)]
    val = [task.draw(64, np.random.default_rng(seed), "val") for seed in (0, 1, 2)]
    keys = lambda parts: {tuple(map(int, k)) for p in parts for k in task.keys(p)}
    if name == "classify":  # from a file: the rows of its validation split, which training never reads
        batches = task.val_batches(1, 4, 0)
        val_rows = {tuple(r) for r in task.val_rows}
        assert keys(train) and not {k[:-1] for k in keys(train)} & val_rows and batches
        return
    assert not keys(train) & keys(val)
    assert all(held_out(task.keys(p)).all() for p in val)
    assert not any(held_out(task.keys(p)).any() for p in train)
    assert all(len(p[0]) == 64 for p in train + val)


def test_a_small_example_space_is_split_too():
    """hmu_hierarchical at task_len 8 has 100 distinct examples (a block of 2 symbols of 10): training reaches
    every one that is not held out and none that is; validation reads the held-out tenth only."""
    task = make_task("hmu_hierarchical", task_len=8)
    rng = np.random.default_rng(0)
    train = {tuple(k) for _ in range(50) for k in task.keys(task.draw(64, rng, "train"))}
    val = {tuple(k) for _ in range(20) for k in task.keys(task.draw(64, rng, "val"))}
    everything = {tuple(k) for k in task.keys(task.draw(5000, rng, None))}
    assert len(everything) == 100 and train | val == everything and not train & val
    assert 0 < len(val) < 100 // HELD_OUT_EVERY * 2


def test_the_partition_depends_on_the_example_alone():
    """The same example is held out or not in any process, any draw: digests are a stable hash (blake2b), not
    Python's per-process hash()."""
    key = [np.array([5, 6, 7, 8], dtype=np.int64)]
    assert digests(key)[0] == digests([[5, 6, 7, 8]])[0] == np.uint64(int.from_bytes(
        __import__("hashlib").blake2b(np.array([5, 6, 7, 8], dtype=np.int64).tobytes(), digest_size=8).digest(),
        "little"))
    assert 0.07 < held_out([[i, j] for i in range(100) for j in range(100)]).mean() < 0.13


def test_runs_saved_before_held_out_examples_keep_their_sampler():
    """heldout false (every run saved before 2026-12-07, config.ADDED_FIELDS) draws exactly what it drew then:
    any example, held out or not, so their logs still reproduce."""
    task = make_task("copy")
    old = task.sample(200, np.random.default_rng(3))
    assert all(np.array_equal(a, b) for a, b in zip(task.draw(200, np.random.default_rng(3), None), old))
    assert held_out(task.keys(old)).any()
    saved = {f: v for f, v in TrainConfig(task="copy").to_dict().items() if f not in ("heldout", "stream")}
    assert TrainConfig.from_dict(saved, saved=True).heldout is False
    assert TrainConfig(heldout=False).heldout is True  # a corpus's validation split is always held out


def test_evaluation_of_a_run_saved_before_never_reads_an_example_its_training_drew(tmp_path):
    """A run with the old sampler (heldout false) on a small space: replaying its sampler finds exactly what it
    drew (recorded as it trained), and its stored evaluation reads none of those, saying how many of the plain
    held-out examples it had drawn."""
    out = tmp_path / "old"
    m = model_config("gpt", n_layer=1, d_model=16, n_head=2)
    t = TrainConfig(task="hmu_hierarchical", task_len=12, heldout=False, max_iters=6, batch_size=32,
                    eval_interval=3, eval_iters=1, sample_len=0)
    trainer = Trainer(m, t, out, progress=False, verbose=False)
    drawn, real = [], trainer.src.train_batch

    def recording(rng, i):
        state = rng.bit_generator.state
        parts = trainer.src.stage(i).draw(t.batch_size, rng, None)
        drawn.append(digests(trainer.src.stage(i).keys(parts)))
        rng.bit_generator.state = state
        return real(rng, i)

    trainer.src.train_batch = recording
    trainer.run()
    replayed = evaluation.training_digests(out)
    assert set(replayed.tolist()) == set(np.concatenate(drawn).tolist())
    scores = evaluation.stored_evaluation(out)
    assert scores["drawn_in_training"] > 0                    # 192 draws of 1,000 examples: some were held out
    batches = evaluation.validation_batches(out, exclude=replayed)
    read = [k for b in batches for k in np.concatenate([b.x[:, :12], b.y[:, 12:]], 1)]  # prompt, answer
    assert len(read) == 8 * 16 and held_out(read).all() and not np.isin(digests(read), replayed).any()


# --- streams ----------------------------------------------------------------------------------------
def test_a_stream_row_reads_on_where_its_last_window_ended():
    ids = np.arange(1000) % 60000
    s = Corpus(ids.astype(np.int64), __import__("tokenizers").CharTokenizer("ab")).stream("train", 4, 10)
    part = 900 // 4
    assert len(s) == (part - 1) // 10
    for i in range(len(s) + 2):
        b = s.batch(i)
        w = i % len(s)
        assert torch.equal(b.x[:, 0], torch.arange(4) * part + w * 10)
        assert torch.equal(b.y, b.x + 1)
        assert s.starts_over(i) == (w == 0)


def stream_run(out, arch, steps=8, **train):
    m = model_config(arch, tokenizer="char", block_size=16, n_layer=1, d_model=16, n_head=2,
                     **({"seg_len": 8, "mem_len": 8} if arch == "transformer_xl" else
                        {"seg_len": 8, "n_mem": 2} if arch == "rmt" else {}))
    t = TrainConfig(**{**dict(data="builtin", stream=True, max_iters=steps, batch_size=4, eval_interval=4,
                              eval_iters=1, warmup_iters=0, sample_len=0), **train})
    return Trainer(m, t, out, progress=False, verbose=False)


@pytest.mark.parametrize("arch", ["transformer_xl", "rmt"])
def test_a_stream_run_resumes_bit_exactly_with_the_memory_it_carried(tmp_path, monkeypatch, arch):
    """Stopped by Ctrl-C at step 5, the checkpoint holds the memory carried into step 5; resumed, the run equals
    the straight one (log and weights), which it could not if the memory were dropped or taken after the step."""
    straight = stream_run(tmp_path / "straight", arch).run()
    assert straight.memory is not None
    real, fired = Trainer.gradients, []

    def cut(self, lr):
        if self.step == 5 and not fired:
            fired.append(True)
            real(self, lr)               # the forward ran and advanced a copy of the memory, then Ctrl-C
            raise KeyboardInterrupt
        return real(self, lr)

    monkeypatch.setattr(Trainer, "gradients", cut)
    out = tmp_path / "cut"
    t = stream_run(out, arch).run()
    assert fired and t.step == 5 and tools.load_weights(out / "checkpoint.pt")["memory"] is not None
    monkeypatch.setattr(Trainer, "gradients", real)
    Trainer.resume(out, progress=False, verbose=False).run()
    cols = ["step", "train_loss", "val_loss", "grad_norm"]
    assert [[r[c] for c in cols] for r in tools.read_log(out / "log.csv")] == \
        [[r[c] for c in cols] for r in tools.read_log(straight.out / "log.csv")]
    a, b = (tools.load_weights(f / "model.pt") for f in (out, straight.out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stream_run_carries_the_memory_a_random_window_run_does_not(tmp_path):
    """The memory entering a step is the one the step before left (detached): window i+1 of a row continues
    window i, and the model reads it with the memory of window i."""
    t = stream_run(tmp_path / "xl", "transformer_xl", steps=3)
    seen = []
    real = t.model.forward

    def forward(batch, state=None, last_only=False):
        if t.model.training:  # evaluations read random windows, each alone
            seen.append(None if state is None else [m.clone() for m in state.memory])
        return real(batch, state, last_only)

    t.model.forward = forward
    t.run()
    assert len(seen) == 3 and all(s is not None for s in seen)
    assert seen[0][0].shape[1] == 0 and seen[1][0].shape[1] == seen[2][0].shape[1] == 8  # fresh, then carried
    assert torch.equal(seen[2][0], t.memory.memory[0]) is False  # step 3's memory moved on after it


@pytest.fixture(scope="module")
def trained_xl(tmp_path_factory, private_cache):
    out = tmp_path_factory.mktemp("stream") / "xl"
    m = model_config("transformer_xl", tokenizer="char", block_size=16, n_layer=2, d_model=32, n_head=2,
                     seg_len=8, mem_len=16)
    t = TrainConfig(data="builtin", stream=True, max_iters=300, batch_size=16, eval_interval=300, eval_iters=1,
                    warmup_iters=10, sample_len=0)  # about 6 s; carried 3.35 bpc against fresh 3.38
    Trainer(m, t, out, progress=False, verbose=False).run()
    return out


def test_memory_helps_when_it_is_carried(trained_xl):
    """A stream-trained XL reads the validation text in order: with its memory carried from window to window it
    has a lower bpc than on the same windows each read with a fresh memory (its first positions see the text
    before them), and than its window bpc (random validation windows, each read with a fresh memory)."""
    model, _, tok = runs.load_run(trained_xl)
    stream = evaluation.validation_stream(trained_xl)
    carried = evaluation.stream_scores(model, stream, tok)
    fresh = evaluation.stream_scores(model, stream, tok, carry=False)
    assert carried["stream_bpc"] < fresh["stream_bpc"] - 0.01
    scores = evaluation.evaluate_run(trained_xl)
    assert scores["stream_bpc"] == pytest.approx(carried["stream_bpc"])
    assert scores["stream_bpc"] < scores["bpc"]  # random windows, each read with a fresh memory


def test_a_gpt_reads_the_stream_as_consecutive_windows(tmp_path):
    """A GPT carries no memory: its stream bpc is its bpc over the same consecutive windows read as one batch."""
    out = tmp_path / "gpt"
    stream_run(out, "gpt", steps=4).run()
    model, _, tok = runs.load_run(out)
    stream = evaluation.validation_stream(out)
    scores = evaluation.stream_scores(model, stream, tok)
    windows = [stream.batch(i) for i in range(len(stream))]
    x, y = torch.cat([w.x for w in windows]), torch.cat([w.y for w in windows])
    with torch.no_grad(), evaluation.eval_mode(model):
        nll = torch.nn.functional.cross_entropy(model(x).logits.flatten(0, 1), y.flatten(), reduction="sum")
    chars = sum(len(tok.decode(r.tolist())) for r in y)
    assert scores["stream_bpc"] == pytest.approx(float(nll) / chars / np.log(2), rel=1e-5)


def test_stream_is_for_language_modelling_and_one_process():
    with pytest.raises(Exception, match="stream"):
        TrainConfig(task="copy", stream=True)


def test_one_command_stores_every_score_where_the_experiments_read_it(tmp_path, capsys):
    """`python model_comparison.py --eval RUN` writes the run's scores into its evaluation.json, window and stream
    bits per character included; the experiments' reader (`stored_evaluation`) then returns the same file
    without computing anything again."""
    import model_comparison
    out = tmp_path / "xl"
    stream_run(out, "transformer_xl", steps=4).run()
    assert model_comparison.main([str(out), "--eval"]) == 0
    stored = tools.load_json(out / "evaluation.json")
    assert {"bpc", "stream_bpc", "val_loss", "by_position", "weights"} <= stored.keys()
    assert "stream_bpc" in capsys.readouterr().out
    before = (out / "evaluation.json").stat().st_mtime_ns
    assert evaluation.stored_evaluation(out) == stored and (out / "evaluation.json").stat().st_mtime_ns == before
