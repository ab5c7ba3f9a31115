"""Tests of config.py: validation messages that name the field, derived values, and the JSON round trip
(docs/design.md#configs)."""
import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import config
from config import MODEL_CONFIGS, ConfigError, GPTConfig, TrainConfig, config_from_dict, model_config


def rejects(field, make, *also):
    """`make()` raises ConfigError whose message names `field` (and every string in `also`)."""
    with pytest.raises(ConfigError) as e:
        make()
    msg = str(e.value)
    assert field in msg, f"message does not name {field!r}: {msg}"
    for s in also:
        assert s in msg, f"message does not say {s!r}: {msg}"
    return msg


# --- invalid values, one field at a time ------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("norm", "batch"), ("pos", "alibi"), ("mlp", "relu2"),
])
def test_unknown_choice_is_rejected_with_the_valid_options(field, value):
    msg = rejects(field, lambda: GPTConfig(**{field: value}), repr(value))
    choices = dict((f.name, f.metadata["choices"]) for f in dataclasses.fields(GPTConfig))[field]
    for c in choices:
        assert c in msg  # the message says what would be right


@pytest.mark.parametrize("field, value", [
    ("n_layer", "4"), ("n_layer", 4.0), ("n_layer", True), ("d_model", None), ("bias", "yes"), ("bias", 1),
    ("tie_weights", "false"), ("dropout", "0.1"), ("norm", 3), ("tokenizer", 5), ("arch", 5),
])
def test_wrong_type_is_rejected(field, value):
    rejects(field, lambda: GPTConfig(**{field: value}))


@pytest.mark.parametrize("field, value", [
    ("max_iters", 2.5), ("lr", "3e-3"), ("schedule", None), ("seed", "1"), ("grad_accum", False),
])
def test_wrong_type_is_rejected_in_train_config(field, value):
    rejects(field, lambda: TrainConfig(**{field: value}))


def test_int_for_a_float_field_becomes_a_float():
    t = TrainConfig(lr=1, min_lr=0)
    assert type(t.lr) is float and t.lr == 1.0 and type(t.min_lr) is float
    assert type(GPTConfig(dropout=0).dropout) is float


@pytest.mark.parametrize("field, value", [
    ("n_layer", 0), ("n_layer", -1), ("n_head", 0), ("d_model", 0), ("block_size", 0), ("vocab_size", -1),
    ("n_kv_head", -1), ("dropout", -0.1), ("dropout", 1.0), ("dropout", 1.5),
])
def test_out_of_range_is_rejected(field, value):
    rejects(field, lambda: GPTConfig(**{field: value}))


@pytest.mark.parametrize("field, value", [
    ("batch_size", 0), ("max_iters", -1), ("lr", -1e-3), ("warmup_iters", -1), ("grad_accum", 0),
    ("eval_interval", 0), ("eval_iters", 0), ("threads", 0), ("task_vocab", 1), ("schedule", "exponential"),
    ("beta1", 1.0), ("beta2", 1.5), ("weight_decay", -0.1), ("grad_clip", -1.0),
])
def test_out_of_range_is_rejected_in_train_config(field, value):
    rejects(field, lambda: TrainConfig(**{field: value}))


def test_min_lr_above_lr_is_rejected():
    rejects("min_lr", lambda: TrainConfig(lr=1e-3, min_lr=1e-2), "lr")


def test_negative_seed_is_rejected():
    # The loop seeds np.random.default_rng(seed), which refuses negative seeds: the config must say so
    # up front instead of the run crashing after the model was built.
    rejects("seed", lambda: TrainConfig(seed=-1))


@pytest.mark.parametrize("cls, kwargs, field", [
    (TrainConfig, {"lr": math.nan}, "lr"),
    (TrainConfig, {"lr": math.inf, "min_lr": 0.0}, "lr"),
    (TrainConfig, {"grad_clip": math.nan}, "grad_clip"),
    (GPTConfig, {"dropout": math.nan}, "dropout"),
], ids=["lr-nan", "lr-inf", "grad_clip-nan", "dropout-nan"])
def test_non_finite_floats_are_rejected(cls, kwargs, field):
    # NaN slips through `value < min` (every comparison with NaN is False); a NaN lr or dropout gives a
    # run whose loss is NaN from the first step.
    rejects(field, lambda: cls(**kwargs))


# --- invalid combinations ---------------------------------------------------------------------------
def test_d_model_not_divisible_by_n_head():
    rejects("d_model", lambda: GPTConfig(d_model=100, n_head=3), "n_head")


def test_rope_needs_an_even_head_width():
    rejects("rope", lambda: GPTConfig(d_model=6, n_head=2, pos="rope"))
    for pos in ("learned", "sinusoidal", "relative"):  # only RoPE rotates pairs
        assert GPTConfig(d_model=6, n_head=2, pos=pos).head_dim == 3


def test_n_head_must_be_a_multiple_of_n_kv_head():
    rejects("n_kv_head", lambda: GPTConfig(d_model=48, n_head=4, n_kv_head=3), "n_head")
    assert GPTConfig(d_model=48, n_head=4, n_kv_head=2).n_kv_head == 2


def test_n_kv_head_zero_means_n_head():
    c = GPTConfig(n_head=8, d_model=64, n_kv_head=0)
    assert c.n_kv_head == 8
    assert GPTConfig(n_head=8, d_model=64, n_kv_head=1).n_kv_head == 1  # explicit values are kept


@pytest.mark.parametrize("name", ["bpe", "bpe-", "bpe-x", "BPE-1024", "byte", "", "char "])
def test_bad_tokenizer_name(name):
    rejects("tokenizer", lambda: GPTConfig(tokenizer=name), "bpe-N")


@pytest.mark.parametrize("name", ["char", "bpe-512", "bpe-4096"])
def test_good_tokenizer_names(name):
    assert GPTConfig(tokenizer=name).tokenizer == name


def test_the_tokenizer_help_states_the_bpe_sizes_that_load():
    import re

    from tokenizers import load
    low, high = map(int, re.search(r"any N from (\d+) to (\d+)", GPTConfig.help()["tokenizer"]).groups())
    assert f"N from {low} to {high}" in str(pytest.raises(ConfigError, GPTConfig, tokenizer="bpe-x").value)
    for n in (low, 1000, high):  # every size in the range, not only the trained ones
        assert load(f"bpe-{n}").vocab_size == n
    for n in (low - 1, high + 1):  # the control: one step outside is refused, with the same range
        with pytest.raises(ValueError, match=f"{low}..{high}"):
            load(f"bpe-{n}")


def test_arch_mismatch():
    other = next(a for a in MODEL_CONFIGS if a != "gpt") if len(MODEL_CONFIGS) > 1 else "nope"
    rejects("arch", lambda: GPTConfig(arch=other), "GPTConfig")
    rejects("arch", lambda: config_from_dict({"arch": "nope"}), "gpt")  # lists the valid ones
    rejects("arch", lambda: model_config("nope"))


def test_unknown_field_in_from_dict_is_named():
    d = GPTConfig().to_dict()
    d["n_layr"] = 3
    msg = rejects("n_layr", lambda: config_from_dict(d))
    assert "n_layer" in msg  # the valid fields are listed
    rejects("n_layer", lambda: config_from_dict({"n_layer": 3}))  # no arch: a TrainConfig has no n_layer
    rejects("foo", lambda: TrainConfig.from_dict({"foo": 1}))


# --- documentation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [*MODEL_CONFIGS.values(), TrainConfig], ids=lambda c: c.__name__)
def test_every_field_is_annotated_typed_and_documented(cls):
    for f in dataclasses.fields(cls):
        assert str(f.type) in ("int", "float", "bool", "str"), f"{cls.__name__}.{f.name}: {f.type}"
        assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help"
    # A class attribute without an annotation is not a field and would silently not be saved (one declared
    # ClassVar, such as display_name, is meant to be the class's, not saved).
    names = {f.name for f in dataclasses.fields(cls)}
    for klass in cls.__mro__:
        declared = {k for k, a in vars(klass).get("__annotations__", {}).items() if "ClassVar" in str(a)}
        for k, v in vars(klass).items():
            if not k.startswith("_") and isinstance(v, (int, float, str, bool)) and k not in names | declared:
                pytest.fail(f"{klass.__name__}.{k} = {v!r} looks like a field but has no annotation")


@pytest.mark.parametrize("arch", sorted(MODEL_CONFIGS))
def test_every_registered_config_is_valid_by_default_and_knows_its_arch(arch):
    c = model_config(arch)
    assert type(c) is MODEL_CONFIGS[arch] and c.arch == arch
    assert isinstance(c, config.ModelConfig)


# --- round trip ------------------------------------------------------------------------------------
def json_round_trip(c):
    return config_from_dict(json.loads(json.dumps(c.to_dict())), saved=True)  # as a run folder's config


def rich_config(arch):
    """A config of `arch` with as many fields as it allows away from their defaults."""
    f = {x.name: x for x in dataclasses.fields(MODEL_CONFIGS[arch])}
    want = dict(n_layer=3, d_model=96, n_head=6, n_kv_head=2, dropout=0.25, block_size=64, vocab_size=77,
                tokenizer="bpe-1024", bias=not f["bias"].default, tie_weights=False)
    if "hierarchy" in f:  # a depth derived from a hierarchy: one of 3 layers, to agree with n_layer = 3
        want["hierarchy"] = "1@1 1@2 1@1"
    for name in ("norm", "pos", "mlp"):
        others = [c for c in f[name].metadata["choices"] if c != f[name].default]
        want[name] = others[0] if others else f[name].default
    try:
        return model_config(arch, **want)
    except ConfigError as e:  # an architecture without grouped key/value heads says so
        assert "n_kv_head" in str(e), e
        return model_config(arch, **{k: v for k, v in want.items() if k != "n_kv_head"})


@pytest.mark.parametrize("arch", sorted(MODEL_CONFIGS))
def test_model_config_json_round_trip(arch):
    c = rich_config(arch)
    back = json_round_trip(c)
    assert back == c and type(back) is type(c)
    assert json_round_trip(model_config(arch)) == model_config(arch)


def test_train_config_json_round_trip():
    t = TrainConfig(data="some/file.txt", task="copy", task_len=5, batch_size=3, max_iters=7, lr=1e-2,
                    min_lr=1e-4, warmup_iters=2, schedule="step", weight_decay=0.0, grad_accum=3,
                    grad_clip=0.5, eval_interval=3, eval_iters=2, seed=7, threads=2, sample_len=0)
    back = json_round_trip(t)
    assert back == t and type(back) is TrainConfig
    assert json_round_trip(TrainConfig()) == TrainConfig()


def test_derived_n_kv_head_survives_the_round_trip():
    c = GPTConfig(n_head=4, d_model=32, n_kv_head=0)
    assert json_round_trip(c) == c and json_round_trip(c).n_kv_head == 4


@st.composite
def gpt_configs(draw):
    n_head = draw(st.sampled_from([1, 2, 4, 8]))
    pos = draw(st.sampled_from(["learned", "sinusoidal", "rope", "relative"]))
    head = draw(st.integers(1, 16)) * (2 if pos == "rope" else 1)
    return GPTConfig(
        n_head=n_head, d_model=n_head * head, pos=pos, n_kv_head=draw(st.sampled_from([0, 1, n_head])),
        n_layer=draw(st.integers(1, 12)), block_size=draw(st.integers(1, 4096)),
        vocab_size=draw(st.integers(0, 70000)), dropout=draw(st.floats(0, 0.99)),
        norm=draw(st.sampled_from(["rms", "layer", "cosine"])), mlp=draw(st.sampled_from(["gelu", "swiglu"])),
        bias=draw(st.booleans()), tie_weights=draw(st.booleans()),
        tokenizer=draw(st.sampled_from(["char", "bpe-512", "bpe-4096"])))


@given(gpt_configs())
@settings(max_examples=100, deadline=None)
def test_any_valid_gpt_config_round_trips(c):
    assert json_round_trip(c) == c


@given(lr=st.floats(1e-6, 1.0), frac=st.floats(0, 1), sched=st.sampled_from(config.SCHEDULES),
       seed=st.integers(0, 2**31))
@settings(max_examples=50, deadline=None)
def test_any_valid_train_config_round_trips(lr, frac, sched, seed):
    t = TrainConfig(lr=lr, min_lr=lr * frac, schedule=sched, seed=seed)
    assert json_round_trip(t) == t


def test_to_dict_is_plain_json():
    d = GPTConfig().to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["arch"] == "gpt" and set(d) == {f.name for f in dataclasses.fields(GPTConfig)}


# --- a saved config is read as it was saved (issue 18) -----------------------------------------------
def test_a_saved_config_that_lacks_fields_is_refused_naming_them_and_their_valid_values():
    d = GPTConfig(norm="layer", pos="learned").to_dict()
    assert config_from_dict(d, saved=True) == GPTConfig(norm="layer", pos="learned")  # complete: loads
    del d["norm"], d["pos"]
    rejects("['norm', 'pos'] are missing", lambda: config_from_dict(d, saved=True),
            "norm: one of ['rms', 'layer', 'cosine']", "pos: one of ['learned'", "never completed with today's")
    assert config_from_dict(d).pos == "rope"  # not saved (written by hand): a field left out takes its default
    t = TrainConfig().to_dict()
    del t["lr"], t["max_iters"]
    rejects("['max_iters', 'lr'] are missing", lambda: config_from_dict(t, saved=True),
            "max_iters: an int >= 0", "lr: a float >= 0.0")


@pytest.mark.parametrize("cls", list(config.ADDED_FIELDS), ids=lambda c: c.__name__)
def test_fields_added_later_take_the_value_the_runs_saved_before_had(cls):
    added = config.ADDED_FIELDS[cls]
    saved = cls(task="copy") if cls is TrainConfig else cls()  # a task run: heldout applies (corpora always hold out)
    d = {k: v for k, v in saved.to_dict().items() if k not in added}
    c = config_from_dict(d, saved=True)
    assert type(c) is cls and {k: getattr(c, k) for k in added} == added


def test_only_the_listed_fields_of_the_listed_classes_may_be_missing():
    t = TrainConfig(init_from="some-run").to_dict()
    del t["device"]
    old = config_from_dict(t, saved=True)
    assert old.device == "cpu" != TrainConfig().device and old.init_from == "some-run"  # a saved value stays
    h = model_config("hilt").to_dict()
    del h["n_classes"]  # HILT came after classification heads: its configs always saved n_classes
    rejects("['n_classes'] are missing", lambda: config_from_dict(h, saved=True))
