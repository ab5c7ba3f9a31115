"""Tests of the finetune path (docs/design.md#training: `--init_from RUN`, `--records true`): a run that starts from
another run's weights, tokenizer and model config and records where it came from; records files (blank-line
separated, each `<bos> record <eos>`); finetuning text fitted to a pretrained character tokenizer; and a model
that, finetuned on a handful of records, learns to stop."""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

import data
import inference
import runs
import tools
import train
from config import ConfigError, TrainConfig, model_config
from data import Records, fit_texts, split_records
from tokenizers import CharTokenizer
from train import Trainer

PRETRAIN_TEXT = "the cat sat on the mat. a dog ran in the sun. the sun is hot. on the mat a cat ran. " * 30
RECORDS = ["the cat sat.", "a dog ran in the sun.", "the sun is hot.", "on the mat a cat ran.",
           "a cat sat on the mat.", "the dog is hot."]


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Token ids are cached in a private folder, not in the repo's data_cache/."""
    mp = pytest.MonkeyPatch()
    mp.setattr(data, "CACHE", tmp_path_factory.mktemp("mnemo_cache"))
    yield
    mp.undo()


def tcfg(**kw):
    return TrainConfig(**{**dict(max_iters=20, eval_interval=10, eval_iters=2, batch_size=8, warmup_iters=2,
                                 lr=1e-2, min_lr=1e-3, sample_len=0), **kw})


def write_records(path, records=RECORDS, sep="\n\n"):
    path.write_text(sep.join(records) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("texts")
    (d / "pretrain.txt").write_text(PRETRAIN_TEXT, encoding="utf-8")
    return {"pretrain": d / "pretrain.txt", "records": write_records(d / "records.txt")}


@pytest.fixture(scope="module")
def source(tmp_path_factory, files):
    """A tiny pretrained run on plain text: it never saw `<bos>` or `<eos>`."""
    out = tmp_path_factory.mktemp("runs") / "source"
    m = model_config("gpt", n_layer=1, d_model=32, n_head=2, block_size=32)
    Trainer(m, tcfg(data=str(files["pretrain"]), max_iters=30), out, progress=False, verbose=False).run()
    return out


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, source, files):
    """The source finetuned on RECORDS, long enough to learn where a record ends (~5 s on one thread)."""
    out = tmp_path_factory.mktemp("runs") / "finetuned"
    t = tcfg(init_from=str(source), data=str(files["records"]), records=True, max_iters=150, eval_interval=50,
             batch_size=16, lr=3e-3, min_lr=3e-4, warmup_iters=10)
    return Trainer(None, t, out, progress=False, verbose=False).run()


def stop_lengths(model, tok, seeds, temperature):
    """For each seed, how many tokens generation from `<bos>` took before `<eos>` (None: it never stopped)."""
    out = []
    for seed in seeds:
        ids = torch.tensor([[tok.bos_id]])
        gen = torch.Generator().manual_seed(seed)
        seq = inference.generate_ids(model, ids, 80, temperature, eos_id=tok.eos_id, generator=gen)[0, 1:].tolist()
        out.append(seq.index(tok.eos_id) + 1 if tok.eos_id in seq else None)
    return out


# --- init_from ----------------------------------------------------------------------------------------
def test_init_from_starts_from_the_source_and_records_it(source, files, tmp_path):
    out = tmp_path / "ft"
    t = tcfg(init_from=str(source), data=str(files["records"]), records=True, max_iters=0, lr=5e-4, min_lr=5e-5)
    run = Trainer(None, t, out, progress=False, verbose=False).run()
    # weights, tokenizer and model config are the source's (max_iters = 0: no step changed the weights)
    src_w, ft_w = (tools.load_weights(p / "model.pt") for p in (source, out))
    assert src_w.keys() == ft_w.keys() and all(torch.equal(src_w[k], ft_w[k]) for k in src_w)
    assert (out / "tokenizer.json").read_text() == (source / "tokenizer.json").read_text()
    assert json.loads((out / "model_config.json").read_text()) == json.loads((source / "model_config.json").read_text())
    # a fresh TrainConfig, naming the source
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["init_from"] == str(source.resolve()) and cfg["records"] is True and cfg["lr"] == 5e-4
    sha = hashlib.sha256((source / "model.pt").read_bytes()).hexdigest()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init_from"] == str(source.resolve()) and summary["init_from_sha256"] == sha
    readme = (out / "README.md").read_text()
    assert f"Finetuned as records (`<bos> record <eos>`) from the run `{source.resolve()}`" in readme and sha in readme
    assert run.model.cfg == runs.load_configs(source)["model"]


def test_a_bad_init_from_names_it_and_lists_the_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--init_from", "no-such-run", "--data", "builtin-records", "--records", "true",
                    "--out", str(tmp_path / "ft"), "--progress", "false"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "init_from = 'no-such-run'" in err
    assert "no such folder" in err and "gpt-builtin" in err  # the runs there are, shipped ones among them
    assert not (tmp_path / "ft").exists()


def test_init_from_refuses_model_flags_and_a_different_model_config(source, files, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--init_from", str(source), "--n_layer", "3", "--out", str(tmp_path / "a")])
    assert "--init_from keeps the model config of its run; cannot change ['n_layer']" in capsys.readouterr().err
    other = model_config("gpt", n_layer=2, d_model=32, n_head=2, block_size=32)
    with pytest.raises(ConfigError, match=r"differs from the one given in \['n_layer', 'vocab_size'\]"):
        Trainer(other, tcfg(init_from=str(source), data=str(files["records"])), tmp_path / "b", progress=False)
    with pytest.raises(ConfigError, match="init_from = .* task = 'copy'"):
        tcfg(init_from=str(source), task="copy")


def test_a_finetune_resumes_with_its_own_tokenizer_after_the_source_moved(source, files, tmp_path):
    moved = shutil.copytree(source, tmp_path / "source")
    out = tmp_path / "ft"
    t = tcfg(init_from=str(moved), data=str(files["records"]), records=True, max_iters=4, eval_interval=2)
    Trainer(None, t, out, progress=False, verbose=False).run()
    shutil.rmtree(moved)
    resumed = Trainer.resume(out, progress=False, verbose=False, max_iters=6).run()
    assert resumed.step == 6 and [r["step"] for r in resumed.rows] == [0, 2, 4, 6]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["init_from"] == str(moved.resolve()) and len(summary["init_from_sha256"]) == 64


# --- records ------------------------------------------------------------------------------------------
def test_records_are_split_on_blank_lines():
    text = "first\nstill first\n\nsecond  \n \t \n\n\nthird\r\n\r\nfourth\n\n"
    assert split_records(text, "f.txt") == ["first\nstill first", "second", "third", "fourth"]
    assert split_records("one record\nover two lines", "f.txt") == ["one record\nover two lines"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_a_records_file_without_records_is_an_error_naming_it(tmp_path, content):
    f = tmp_path / "empty.txt"
    f.write_text(content)
    with pytest.raises(ValueError, match=f"{f} holds no records .* separated by blank lines"):
        Records.load(str(f), "char", progress=False)
    f.write_text("just one")
    with pytest.raises(ValueError, match=f"{f} holds 1 record; .* at least 2"):
        Records.load(str(f), "char", progress=False)


def test_records_are_packed_as_bos_record_eos_and_windows_start_at_a_bos(tmp_path):
    records = [f"record {i}" + "!" * (i % 3) for i in range(23)]
    r = Records.load(str(write_records(tmp_path / "r.txt", records, sep="\n\n\n")), "char", progress=False)
    tok = r.tokenizer
    val = [records[i] for i in range(9, 23, 10)]                       # every tenth record
    assert tok.decode(r.splits["val"].tolist()) == "".join(f"<bos>{x}<eos>" for x in val)
    assert tok.decode(r.splits["train"].tolist()) == "".join(f"<bos>{x}<eos>" for x in records if x not in val)
    b = r.batch("val", 8, 30, np.random.default_rng(0))                # the val split (22 tokens) is shorter than
    assert (b.x[:, 0] == tok.bos_id).all() and torch.equal(b.x[:, 1:], b.y[:, :-1])  # a window: read as a loop
    assert {tok.decode(row.tolist()) for row in b.x} == {"<bos>record 9<eos><bos>record 19!<eos><bos>record ",
                                                          "<bos>record 19!<eos><bos>record 9<eos><bos>record "}


def test_builtin_records_ship_with_python_and_are_selectable_by_name(monkeypatch):
    import builtins

    def get_ipython():
        """Return the currently running IPython instance."""
    get_ipython.__module__ = "IPython.core.interactiveshell"      # IPython adds it to builtins: not shipped
    monkeypatch.setattr(builtins, "get_ipython", get_ipython, raising=False)
    records = data.builtin_records()
    assert not [r for r in records if r.startswith("get_ipython")]
    assert len(records) > 300 and "abs: Return the absolute value of the argument." in records
    assert all(": " in r and "\n" not in r for r in records)
    assert split_records(data.load_text("builtin-records"), "builtin-records") == records
    assert data.corpus_name("builtin-records") == "builtin-records"


# --- unseen characters --------------------------------------------------------------------------------
def test_unseen_characters_are_folded_to_nfkd_or_dropped_and_counted():
    tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .2")
    text = "café naïve ﬁne x² " + "plain text. " * 20 + "€"
    (fitted,), note = fit_texts([text], tok, "notes.txt")
    assert fitted == "cafe naive fine x2 " + "plain text. " * 20
    assert not tok.unknown_chars(fitted)
    assert note.startswith("notes.txt: folded 4 (") and "'é' -> 'e' x1" in note and "'ﬁ' -> 'fi' x1" in note
    assert "dropped 1 ('€' x1)" in note and f"of {len(text):,} characters" in note
    assert fit_texts(["plain", "text"], tok, "x") == (["plain", "text"], "")                # nothing unseen: nothing changed


def test_too_many_dropped_characters_are_an_error_naming_the_file_and_the_characters(source, tmp_path):
    f = write_records(tmp_path / "greek.txt", ["the cat sat.", "ο σκύλος έτρεξε."])
    with pytest.raises(ValueError, match=rf"{f}: 13 of its 28 characters \(46.4%\) have no token .* 'ο' x2"):
        Trainer(None, tcfg(init_from=str(source), data=str(f), records=True), tmp_path / "ft", progress=False)


def test_a_finetune_prints_and_keeps_what_was_folded(source, tmp_path, capsys):
    f = write_records(tmp_path / "accents.txt", RECORDS + ["the cät is hot."])
    run = Trainer(None, tcfg(init_from=str(source), data=str(f), records=True, max_iters=0),
                  tmp_path / "ft", progress=False).run()
    note = f"{f}: folded 1 ('ä' -> 'a' x1) of"
    assert note in capsys.readouterr().out and note in (run.out / "README.md").read_text()


# --- learning to stop ---------------------------------------------------------------------------------
def test_a_model_finetuned_on_records_learns_to_stop(source, finetuned):
    src_model, _, tok = runs.load_run(source)
    assert stop_lengths(src_model, tok, [0], temperature=0) == [None]   # pretrained on plain text: it never stops
    model, cfgs, tok = runs.load_run(finetuned.out)
    assert cfgs["train"].records
    greedy = stop_lengths(model, tok, [0], temperature=0)[0]
    assert greedy is not None and greedy <= max(map(len, RECORDS)) + 1
    assert None not in stop_lengths(model, tok, range(5), temperature=1.0)  # sampled records end too


def test_inference_writes_a_record_from_bos_and_stops(finetuned, capsys):
    model, _, tok = runs.load_run(finetuned.out)
    record = inference.generate(model, tok, "", max_new_tokens=80, temperature=0)
    assert 0 < len(record) < 80 and "<eos>" not in record
    assert inference.main([str(finetuned.out), "--temperature", "0", "--max_new_tokens", "80"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == record           # the default prompt of a records run: <bos>
    with_bos = inference.generate(model, tok, "the ", max_new_tokens=40, temperature=0, bos=True)
    ids = torch.tensor([[tok.bos_id, *tok.encode("the ")]])
    expected = inference.generate_ids(model, ids, 40, 0, eos_id=tok.eos_id)[0, ids.shape[1]:].tolist()
    assert with_bos == tok.decode(expected[:expected.index(tok.eos_id)] if tok.eos_id in expected else expected)
