"""evaluation.state_bytes and evaluation.reach, the two measures notebooks/12_memory_compared puts beside each
memory mechanism's accuracy, checked against what each architecture's structure allows (untrained models: a
reach is a property of the wiring, which training can only shorten)."""
import pytest
import torch

from config import model_config
from evaluation import reach, state_bytes
from modules import build_model

T, V, C, LAYERS = 24, 15, 32, 2


def model(arch, **fields):
    torch.manual_seed(0)
    return build_model(model_config(arch, **{"n_layer": LAYERS, "d_model": C, "n_head": 4, **fields},
                                    vocab_size=V, block_size=T))


@pytest.fixture(scope="module")
def example():
    ids = torch.randint(4, V, (1, T), generator=torch.Generator().manual_seed(0))
    return ids, (ids - 4 + 1) % (V - 4) + 4                      # other: every token changed


@pytest.mark.parametrize("arch, fields, at, expected", [
    ("gpt", {}, None, T - 1),                                   # the whole example
    ("rmt", {"seg_len": 4, "n_mem": 0}, None, 3),                # its own segment only
    ("rmt", {"seg_len": 4, "n_mem": 0}, 20, 0),                  # the first of a segment reads only itself
    ("transformer_xl", {"seg_len": 4, "mem_len": 4}, None, 3 + LAYERS * 4),  # each layer adds its memory
    ("transformer_xl", {"seg_len": 4, "mem_len": 4}, 20, LAYERS * 4),
    ("rmt", {"seg_len": 4, "n_mem": 4}, None, T - 1),            # through the memory, every segment
    ("memory_mosaics", {"pos": "none"}, None, T - 1),
    ("hourglass", {"hierarchy": "1@1 1@2 1@1", "n_layer": 0}, None, T - 1),
    ("hourglass", {"hierarchy": "1@1 1@2 1@1", "n_layer": 0}, 0, 0),
])
def test_reach_is_what_the_wiring_allows(example, arch, fields, at, expected):
    ids, other = example
    assert reach(model(arch, **fields), ids, other, at=at) == expected


def test_reach_sees_no_change_where_nothing_changed(example):
    ids, _ = example
    assert reach(model("gpt"), ids, ids.clone()) == 0


@pytest.mark.parametrize("arch, fields, expected", [
    ("rmt", {"seg_len": 4, "n_mem": 0}, 0),                      # nothing crosses a segment boundary
    ("rmt", {"seg_len": 4, "n_mem": 4}, 4 * C * 4),              # 4 memory vectors, float32
    ("transformer_xl", {"seg_len": 4, "mem_len": 4}, LAYERS * 4 * C * 4),  # 4 hidden states a layer
    ("gpt", {}, LAYERS * 2 * T * C * 4),                         # keys and values of every position a layer
])
def test_state_bytes_count_what_is_kept_not_spare_room(example, arch, fields, expected):
    ids, _ = example                                             # T = 24: a segment boundary for seg_len 4
    assert state_bytes(model(arch, **fields), ids) == expected


@pytest.mark.parametrize("mem_len, seg_len", [(2, 4), (4, 4), (8, 4), (3, 8), (12, 8)])
def test_xl_reach_grows_by_whole_segments_a_layer(mem_len, seg_len):
    """From the last position of a segment: its own segment, mem_len more at the first layer, then
    seg_len * ceil(mem_len / seg_len) at every further layer (the oldest memory vector saw back to its own
    segment's start), not mem_len a layer when mem_len is not a multiple of seg_len
    (docs/architectures/transformer_xl.md)."""
    n = 48
    ids = torch.randint(4, V, (1, n), generator=torch.Generator().manual_seed(0))
    other = (ids - 4 + 1) % (V - 4) + 4
    for layers in (1, 2, 3):
        torch.manual_seed(0)
        xl = build_model(model_config("transformer_xl", n_layer=layers, d_model=C, n_head=4, vocab_size=V,
                                      block_size=n, seg_len=seg_len, mem_len=mem_len))
        expected = min(n - 1, seg_len - 1 + mem_len + (layers - 1) * seg_len * -(-mem_len // seg_len))
        assert reach(xl, ids, other) == expected, (layers, mem_len, seg_len)
