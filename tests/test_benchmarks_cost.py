"""benchmarks/cost_vs_length.py's measurements on tiny models: the shape of what they return, a peak-memory
figure that grows with the length and agrees with benchmarks/hourglass.py's op-by-op count (a few seconds)."""
import torch

from benchmarks.cost_vs_length import VOCAB, build, generation_cost, peak_bytes, table, training_cost
from benchmarks.hourglass import PeakMemory, fwd_bwd
from experiments.reference import QUICK_MODEL, archs as reference_archs

QUICK_ARCHS = reference_archs(QUICK_MODEL)


def quiet(*args, **kwargs):
    pass


def test_cost_measurements_on_tiny_models():
    archs = dict(QUICK_ARCHS)
    train = training_cost(archs, (32, 64), rounds=1, model=QUICK_MODEL, log=quiet)
    assert set(train) == set(archs)
    for arch, by_T in train.items():
        assert list(by_T) == [32, 64]
        for d in by_T.values():
            assert d["rounds"] == 1 and len(d["times"]) == 1 and d["time_s"] > 0
        assert by_T[64]["peak_bytes"] > by_T[32]["peak_bytes"] > 0, arch
    gen = generation_cost(archs, new=20, rounds=1, bucket=8, model=QUICK_MODEL, log=quiet)
    for arch, g in gen.items():
        assert g["cached"], arch  # every decoder here streams: the per-token cost is that of a cached step
        assert g["bucket_start"] == [0, 8, 16] and len(g["ms_per_token"]) == 3
        assert all(t > 0 for t in g["ms_per_token"])
    assert "peak bytes" in table(train, gen)


def test_allocator_peak_agrees_with_the_op_by_op_count():
    """The profiler's allocator events and PeakMemory's live storages give the same peak, up to the
    gradients (at most the parameters' size: they are counted at different moments) and kernel temporaries."""
    for arch in ("gpt", "transformer_xl", "memory_mosaics"):
        m = build(arch, QUICK_ARCHS[arch], QUICK_MODEL, 64).train()
        x, y = (torch.randint(0, VOCAB, (1, 64), generator=torch.Generator().manual_seed(0)) for _ in range(2))
        fwd_bwd(m, x, y)
        with PeakMemory() as mem:
            fwd_bwd(m, x, y)
        params = sum(p.numel() * p.element_size() for p in m.parameters())
        assert abs(peak_bytes(m, x, y) - mem.peak) <= params + 64 * 1024, arch
