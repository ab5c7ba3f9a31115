"""Memory Mosaics against a GPT of the same parameters: training step time and peak memory by context length,
and incremental generation against recomputation.

    python benchmarks/memory_mosaics.py                  # from anywhere; several minutes; one thread
    python benchmarks/memory_mosaics.py --lengths 256 --skip-generation
    python benchmarks/memory_mosaics.py --lengths                   # generation only

Models: n_layer 4, n_head 4, d_model 128, vocab 256, RMSNorm, no bias, tied head (GPT: RoPE, GELU MLP).
Contenders: gpt; mm (Memory Mosaics, persistent memory of 448 pairs per head, chunked leaky average, the
default); mm-matrix (the same with the (T, T) leaky matrix); mm-mlp (`--persistent mlp`). Parameter counts are
printed (GPT 0.83 M, the mosaics within 0.1% of it).

1. Training step, forward + backward of the loss, at T = 256, 1024, 4096 with B = 4096 / T sequences (the
   same tokens per step), random ids and targets. Time: in one process per T, the contenders alternate round
   after round (order rotated each round), one warm-up round untimed; the ratio to the GPT is the median over
   rounds of the within-round ratio. Peak memory: each (contender, T) in a fresh process with glibc's mmap
   threshold fixed at 64 KB (so freed tensors leave the resident set at once): after a warm-up step on a short
   batch, the peak resident size is reset (/proc/self/clear_refs) and the growth of VmHWM over one step at T is
   the peak of that step (activations, gradients, temporaries). Target (issue 10): mm / gpt time <= 1.5 at
   T = 256.
2. Generation: a Memory Mosaic trained 60 steps on the built-in corpus (block_size 128, char tokens; no
   weight depends on the block size, so they load into a block_size 1024 model), then 512 greedy tokens after a
   64-token prompt, `inference.generate_ids(..., use_cache=True)` (the state: running leaky keys, cached keys
   and values) against `use_cache=False` (the whole sequence recomputed at each token); alternating rounds.
   Checks: identical tokens, and the largest logit difference of cached steps against one full forward.
   Target: recompute / cache >= 5 (the GPT's KV cache target).
Exits 0 either way: a measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TrainConfig, model_config  # noqa: E402
from inference import generate_ids  # noqa: E402
from modules import Batch, build_model  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, d_model=128, vocab_size=256, norm="rms", bias=False, tie_weights=True)
CONTENDERS = {"gpt": ("gpt", dict(pos="rope", mlp="gelu")),
              "mm": ("memory_mosaics", dict(persistent="pmem", leaky_form="chunked")),
              "mm-matrix": ("memory_mosaics", dict(persistent="pmem", leaky_form="matrix")),
              "mm-mlp": ("memory_mosaics", dict(persistent="mlp", leaky_form="chunked", mlp="gelu"))}
TOKENS, ROUNDS, TARGET_TIME, TARGET_GEN = 4096, 5, 1.5, 5.0
PROMPT, NEW, GEN_ROUNDS, TRAIN_STEPS = 64, 512, 3, 60


def build(name: str, T: int):
    arch, kw = CONTENDERS[name]
    torch.manual_seed(0)
    return build_model(model_config(arch, block_size=T, **SHAPE, **kw))


def step_fn(model, T: int):
    g = torch.Generator().manual_seed(T)
    x = torch.randint(0, SHAPE["vocab_size"], (TOKENS // T, T + 1), generator=g)
    batch = Batch(x[:, :-1], x[:, 1:])

    def step():
        model.zero_grad(set_to_none=True)
        model(batch).loss.backward()
    return step


def rss_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_one(name: str, T: int) -> dict:
    """Run in a fresh process: the peak memory growth of one training step."""
    torch.set_num_threads(1)
    model = build(name, T)
    step_fn(model, 16)()                  # warm-up on a short batch: libraries initialised, little memory kept
    model.zero_grad(set_to_none=True)
    step = step_fn(model, T)
    Path("/proc/self/clear_refs").write_text("5")
    base = rss_kb("VmRSS")
    step()
    return {"peak_mb": (rss_kb("VmHWM") - base) / 1024, "params": model.num_params()}


def peak(name: str, T: int) -> dict:
    # a fixed mmap threshold: every large tensor is its own mapping, returned to the system when freed, so the
    # resident size follows the live tensors (glibc's adaptive threshold would keep freed blocks in the heap)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--peak", name, str(T)], capture_output=True, text=True,
                         check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def timing(T: int) -> dict:
    """Median seconds per step of each contender and the median within-round ratio to the GPT."""
    models = {n: build(n, T) for n in CONTENDERS}
    steps = {n: step_fn(m, T) for n, m in models.items()}
    for s in steps.values():
        s()  # warm-up, untimed
    times = {n: [] for n in CONTENDERS}
    names = list(CONTENDERS)
    for r in range(ROUNDS):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            steps[n]()
            times[n].append(time.perf_counter() - t0)
    return {n: {"s": statistics.median(v), "ratio": statistics.median(a / b for a, b in zip(v, times["gpt"]))}
            for n, v in times.items()}


def generation() -> None:
    from train import Trainer
    mcfg = model_config("memory_mosaics", n_layer=4, n_head=4, d_model=128, block_size=128, tokenizer="char")
    tcfg = TrainConfig(data="builtin", batch_size=16, threads=1, seed=1337, lr=3e-3, warmup_iters=5,
                       max_iters=TRAIN_STEPS)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(mcfg, tcfg, out=Path(tmp) / "run", progress=False, verbose=False)
    for s in range(TRAIN_STEPS):
        loss = trainer.train_step(3e-3 * min(1.0, (s + 1) / 5))[0]
    print(f"\ngeneration: Memory Mosaic trained {TRAIN_STEPS} steps (batch 16 x 128, built-in corpus, char): "
          f"train loss {loss:.3f}")
    model = build_model(model_config("memory_mosaics", n_layer=4, n_head=4, d_model=128, block_size=1024,
                                     vocab_size=trainer.mcfg.vocab_size))
    model.load_state_dict(trainer.model.state_dict())
    model.eval()
    prompt = trainer.src.val[0].x[:1, :PROMPT]

    def run(use_cache, n):
        t0 = time.perf_counter()
        out = generate_ids(model, prompt, n, temperature=0, use_cache=use_cache)
        return time.perf_counter() - t0, out

    run(True, 16), run(False, 16)
    wall, outs = {"cache": [], "recompute": []}, {"cache": [], "recompute": []}
    for i in range(GEN_ROUNDS):
        for k in (("cache", "recompute") if i % 2 == 0 else ("recompute", "cache")):
            w, o = run(k == "cache", NEW)
            wall[k].append(w)
            outs[k].append(o)
    same = all(torch.equal(a, b) for a, b in zip(outs["cache"], outs["recompute"]))
    sampled = [generate_ids(model, prompt, 128, temperature=1.0, use_cache=c,
                            generator=torch.Generator().manual_seed(0)) for c in (True, False)]
    with torch.no_grad():
        seq, state = outs["cache"][0], model.init_state(1)
        stepped = [model(seq[:, :PROMPT], state).logits[:, -1]]
        stepped += [model(seq[:, t:t + 1], state).logits[:, -1] for t in range(PROMPT, PROMPT + NEW - 1)]
        diff = (torch.stack(stepped, 1) - model(seq[:, :-1]).logits[:, PROMPT - 1:]).abs().max().item()
    print(f"greedy tokens identical, cache vs recompute, every round: {same}; sampled (temperature 1, same seed, "
          f"128 tokens) identical: {torch.equal(*sampled)}; logits of cached steps vs one full forward: max "
          f"|difference| {diff:.2e}")
    for k, v in wall.items():
        print(f"{k:>9}: median {statistics.median(v):6.2f} s for {NEW} tokens (rounds {', '.join(f'{x:.2f}' for x in v)})")
    ratio = statistics.median(r / c for r, c in zip(wall["recompute"], wall["cache"]))
    print(f"RESULT memory_mosaics_generation ratio={ratio:.2f} (target >= {TARGET_GEN}) "
          f"identical_tokens={same and torch.equal(*sampled)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=int, nargs="*", default=[256, 1024, 4096],
                   help="context lengths of the training-step comparison (none: generation only)")
    p.add_argument("--skip-generation", action="store_true")
    p.add_argument("--peak", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.peak:
        print(json.dumps(peak_one(a.peak[0], int(a.peak[1]))))
        return 0
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; shape {SHAPE}; {TOKENS} tokens per step")
    print("params: " + ", ".join(f"{n} {build(n, 256).num_params():,}" for n in CONTENDERS))
    if a.lengths:
        print(f"{'T':>5} {'B':>3} | " + " | ".join(f"{n:>22}" for n in CONTENDERS))
    results = {}
    for T in a.lengths:
        tm = timing(T)
        pk = {n: peak(n, T)["peak_mb"] for n in CONTENDERS}
        results[T] = (tm, pk)
        cells = [f"{tm[n]['s']:6.3f} s {tm[n]['ratio']:4.2f}x {pk[n]:6.0f} MB" for n in CONTENDERS]
        print(f"{T:>5} {TOKENS // T:>3} | " + " | ".join(cells), flush=True)
    if a.lengths:
        print("(each cell: median seconds per forward+backward, within-round ratio to gpt, peak memory growth of one "
              "step)")
    for T, (tm, pk) in results.items():
        print(f"RESULT memory_mosaics_train T={T} time_ratio={tm['mm']['ratio']:.2f}"
              f"{f' (target <= {TARGET_TIME})' if T == 256 else ''} memory_ratio={pk['mm'] / pk['gpt']:.2f} "
              f"matrix_time_ratio={tm['mm-matrix']['ratio']:.2f} matrix_memory_ratio={pk['mm-matrix'] / pk['gpt']:.2f} "
              f"mlp_time_ratio={tm['mm-mlp']['ratio']:.2f}")
    if not a.skip_generation:
        generation()
    return 0


if __name__ == "__main__":
    sys.exit(main())
