"""Hourglass and HILT against their GPTs: training cost, cached generation, and HILT's step time.

    python benchmarks/hourglass.py           # from anywhere; one thread; a few minutes
    python benchmarks/hourglass.py --quick   # shorter lengths and fewer rounds, to see that it runs

Three measurements, each printed with its own RESULT line (every ratio from contenders run in this one
process, alternating A B, B A; the first round is a warm-up and not timed; the ratio is the median
over rounds of the ratio within a round; see benchmarks/README.md):

1. Training cost: forward + backward (loss.backward(), no optimizer) of the Hourglass `1@1 4@4 1@1`
   (avg shortening, repeat upsampling) against a 6-layer GPT of the same width (d_model 128, n_head 4),
   at T = 256, 1024, 4096 with 8,192 tokens per batch (batch 32, 8, 2). Both have 6 layers and the same
   parameter count. Time is wall-clock; memory is the peak of the bytes held by tensor storages during
   one forward + backward, counted op by op with a TorchDispatchMode (every storage an operator returns,
   until it is freed; the parameters, which exist before, are not counted): the allocator's own caching is
   left out, so it is the same figure on any machine. Targets at T = 1024 (issue 9): time <= 0.6x and
   peak memory <= 0.7x the GPT's.
2. Cached generation: 1,024 new tokens after a 32-token prompt (batch 1, greedy) with
   `inference.generate_ids(..., use_cache=True)` against `use_cache=False` (the whole sequence at every
   step), Hourglass `1@1 4@4 1@1` with linear shortening and attention upsampling (the state with the
   most parts), block_size 2048 so nothing is truncated. Random weights; checks: identical greedy tokens,
   identical tokens sampled at temperature 1 with the same seed (greedy output of random weights soon
   repeats). Target: recompute / cache >= 3.
3. HILT: one training step (`train.Trainer.train_step`: batch, forward, backward, clip, AdamW) of HILT
   (4 layers, d_model 128, ILTs 128 wide, 2 layers, 2 heads) against the GPT it is built on, batch 16 x
   128 from the built-in corpus. No target; the price of the 3 ILTs.
Exits 0 either way: a measurement, not a test.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TrainConfig, model_config  # noqa: E402
from inference import generate_ids  # noqa: E402
from modules import Batch, build_model  # noqa: E402

QUICK = "--quick" in sys.argv
# config.py's defaults today, pinned so a change of default never changes what is compared
DEFAULTS = dict(tokenizer="char", norm="rms", pos="rope", mlp="gelu", bias=False, tie_weights=True)
WIDTH = dict(d_model=128, n_head=4)
VOCAB = 96
TOKENS = 8192
LENGTHS = (256, 1024) if QUICK else (256, 1024, 4096)
ROUNDS = 3 if QUICK else 6
NEW, PROMPT, GEN_ROUNDS = (256, 32, 2) if QUICK else (1024, 32, 3)
HIERARCHY = "1@1 4@4 1@1"


class PeakMemory(TorchDispatchMode):
    """Bytes of tensor storage alive, op by op: every storage an operator returns counts until it is freed."""

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak = {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key, (ref, n) in list(self.live.items()):
            if ref.expired():
                del self.live[key]
                self.now -= n
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                s = t.untyped_storage()
                if s._cdata not in self.live:
                    self.live[s._cdata] = (StorageWeakRef(s), s.nbytes())
                    self.now += s.nbytes()
        self.peak = max(self.peak, self.now)
        return out


def models(T: int):
    torch.manual_seed(0)
    gpt = build_model(model_config("gpt", n_layer=6, block_size=T, vocab_size=VOCAB, **WIDTH, **DEFAULTS))
    torch.manual_seed(0)
    hg = build_model(model_config("hourglass", hierarchy=HIERARCHY, block_size=T, vocab_size=VOCAB, **WIDTH,
                                  **DEFAULTS))
    return {"gpt": gpt.train(), "hourglass": hg.train()}


def fwd_bwd(model, x, y):
    model(Batch(x, y)).loss.backward()
    for p in model.parameters():
        p.grad = None


def training_cost() -> float:
    print(f"1. forward + backward, Hourglass {HIERARCHY!r} vs 6-layer GPT, d_model 128, {TOKENS} tokens per batch")
    at_1024 = {}
    for T in LENGTHS:
        B = TOKENS // T
        ms = models(T)
        g = torch.Generator().manual_seed(T)
        x, y = (torch.randint(0, VOCAB, (B, T), generator=g) for _ in range(2))
        params = {k: m.num_params() for k, m in ms.items()}
        peak = {}
        for k, m in ms.items():
            with PeakMemory() as mem:
                fwd_bwd(m, x, y)
            peak[k] = mem.peak
        times = {k: [] for k in ms}
        for r in range(ROUNDS + 1):
            for k in (("gpt", "hourglass") if r % 2 == 0 else ("hourglass", "gpt")):
                t0 = time.perf_counter()
                fwd_bwd(ms[k], x, y)
                if r:
                    times[k].append(time.perf_counter() - t0)
        ratio = statistics.median(h / g for h, g in zip(times["hourglass"], times["gpt"]))
        mem_ratio = peak["hourglass"] / peak["gpt"]
        print(f"  T {T:5d} (batch {B:2d}): params gpt {params['gpt']:,} hourglass {params['hourglass']:,}; "
              f"time gpt {statistics.median(times['gpt']):.3f} s, hourglass {statistics.median(times['hourglass']):.3f} s, "
              f"ratio {ratio:.2f}; peak memory gpt {peak['gpt'] / 2**20:.1f} MiB, hourglass "
              f"{peak['hourglass'] / 2**20:.1f} MiB, ratio {mem_ratio:.2f}")
        if T == 1024:
            at_1024 = dict(time=ratio, memory=mem_ratio)
    print(f"RESULT hourglass_train ratio={at_1024['time']:.2f} (target <= 0.6 at T=1024) "
          f"memory_ratio={at_1024['memory']:.2f} (target <= 0.7)")
    return at_1024["time"]


def cached_generation() -> float:
    torch.manual_seed(0)
    m = build_model(model_config("hourglass", hierarchy=HIERARCHY, shorten="linear", upsample="attention",
                                 block_size=2048, vocab_size=VOCAB, **WIDTH, **DEFAULTS)).eval()
    prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    print(f"2. cached generation: {NEW} new tokens after {PROMPT}, Hourglass {HIERARCHY!r} (linear, attention), "
          f"batch 1, greedy")

    def run(cache, n):
        t0 = time.perf_counter()
        out = generate_ids(m, prompt, n, temperature=0, use_cache=cache)
        return time.perf_counter() - t0, out

    run(True, 16), run(False, 16)  # warm-up
    wall, outs = {True: [], False: []}, {True: [], False: []}
    for r in range(GEN_ROUNDS):
        for c in ((True, False) if r % 2 == 0 else (False, True)):
            w, out = run(c, NEW)
            wall[c].append(w)
            outs[c].append(out)
    same = all(torch.equal(a, b) for a, b in zip(outs[True], outs[False]))
    sampled = [generate_ids(m, prompt, 128, temperature=1.0, use_cache=c, generator=torch.Generator().manual_seed(0))
               for c in (True, False)]
    same_sampled = torch.equal(*sampled)
    ratio = statistics.median(r / c for r, c in zip(wall[False], wall[True]))
    print(f"  cache {statistics.median(wall[True]):.2f} s ({statistics.median(wall[True]) / NEW * 1e3:.2f} ms/token), "
          f"recompute {statistics.median(wall[False]):.2f} s; identical greedy tokens {same}, identical sampled "
          f"tokens (128, {len(set(sampled[0][0, PROMPT:].tolist()))} distinct) {same_sampled}")
    print(f"RESULT hourglass_cache ratio={ratio:.2f} (target >= 3) identical_tokens={same and same_sampled}")
    return ratio


def hilt_step() -> float:
    from train import Trainer
    print("3. HILT training step vs its GPT (4 layers, d_model 128, batch 16 x 128, built-in corpus)")
    trainers = {}
    for arch in ("gpt", "hilt"):
        mcfg = model_config(arch, n_layer=4, block_size=128, **WIDTH, **DEFAULTS)
        tcfg = TrainConfig(data="builtin", batch_size=16, threads=1, seed=1337, max_iters=100)
        with tempfile.TemporaryDirectory() as tmp:  # train_step never writes
            trainers[arch] = Trainer(mcfg, tcfg, out=Path(tmp) / "run", progress=False, verbose=False)
        trainers[arch].model.train()
    params = {k: t.model.num_params() for k, t in trainers.items()}
    times = {k: [] for k in trainers}
    for r in range(2 * ROUNDS + 1):
        for k in (("gpt", "hilt") if r % 2 == 0 else ("hilt", "gpt")):
            t0 = time.perf_counter()
            trainers[k].train_step(1e-3)
            trainers[k].step += 1
            if r:
                times[k].append(time.perf_counter() - t0)
    ratio = statistics.median(h / g for h, g in zip(times["hilt"], times["gpt"]))
    print(f"  params gpt {params['gpt']:,} hilt {params['hilt']:,}; step gpt {statistics.median(times['gpt']) * 1e3:.0f} ms, "
          f"hilt {statistics.median(times['hilt']) * 1e3:.0f} ms")
    print(f"RESULT hilt_step ratio={ratio:.2f} (hilt / gpt step time; no target)")
    return ratio


def main() -> int:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    training_cost()
    cached_generation()
    hilt_step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
