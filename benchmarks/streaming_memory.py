"""Streaming inference over 1k, 4k and 16k tokens: memory and time of RMT and Transformer-XL against a GPT.

    python benchmarks/streaming_memory.py          # from anywhere; a few minutes; one thread
    python benchmarks/streaming_memory.py --lengths 1024 4096

Each model reads a random stream one token per call, `model(ids[:, t:t+1], state)`, exactly as
`inference.generate_ids` feeds it after the prompt, and keeps its streaming state:
- gpt: a KV cache per layer, which grows with every token (block_size = the stream's length, so the GPT
  attends to everything it has read; nothing is ever dropped);
- transformer_xl: per layer, mem_len hidden states plus the current segment's inputs (< seg_len);
- rmt: n_mem memory vectors plus the current segment's tokens; each call recomputes that segment.
All three: n_layer 4, n_head 4, d_model 128, RoPE, untrained (memory and time do not depend on the
weights); seg_len 64, mem_len 64, n_mem 16.

Measured per (model, length), each in a fresh Python process so that one run's allocations do not hide
another's:
- state: the bytes of the tensors in the streaming state at the end (exact);
- peak: the growth of the process's peak resident memory (VmHWM, reset through /proc/self/clear_refs
  after a 64-token warm-up) while streaming; it includes the transient activations of every call;
- time: seconds per token (wall clock, one thread).
Expected: RMT's and XL's state and peak flat in the length, GPT's growing linearly (its time per token
too, since each new token attends to all the cached ones). Ratios are GPT / RMT and GPT / XL. Exits 0:
a measurement, not a test.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import model_config  # noqa: E402
from evaluation import tensor_bytes  # noqa: E402
from modules import build_model  # noqa: E402

MODEL = dict(n_layer=4, n_head=4, d_model=128, pos="rope", vocab_size=256)
ARCHS = {"gpt": {}, "transformer_xl": {"seg_len": 64, "mem_len": 64}, "rmt": {"seg_len": 64, "n_mem": 16}}
WARMUP = 64


def rss_kb(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


@torch.no_grad()
def measure(arch: str, length: int) -> dict:
    """Stream `length` tokens through a fresh model of `arch` (run in its own process)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(model_config(arch, block_size=length + WARMUP, **MODEL, **ARCHS[arch])).eval()
    ids = torch.randint(0, MODEL["vocab_size"], (1, WARMUP + length))
    state = model.init_state(1)
    for t in range(WARMUP):
        model(ids[:, t:t + 1], state)
    Path("/proc/self/clear_refs").write_text("5")               # reset the peak to the current size
    base = rss_kb("VmRSS")
    t0 = time.perf_counter()
    for t in range(WARMUP, WARMUP + length):
        model(ids[:, t:t + 1], state)
    seconds = time.perf_counter() - t0
    return {"arch": arch, "length": length, "state_kb": tensor_bytes(state) / 1024,
            "peak_kb": rss_kb("VmHWM") - base, "ms_per_token": 1000 * seconds / length}


def in_subprocess(arch: str, length: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", arch, str(length)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--one", nargs=2, metavar=("ARCH", "LENGTH"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure(a.one[0], int(a.one[1]))))
        return 0
    rows = {(arch, n): in_subprocess(arch, n) for n in a.lengths for arch in ARCHS}
    print(f"{'model':15} {'tokens':>7} {'state KB':>10} {'peak KB':>9} {'ms/token':>9}")
    for (arch, n), r in rows.items():
        print(f"{arch:15} {n:7d} {r['state_kb']:10.0f} {r['peak_kb']:9d} {r['ms_per_token']:9.2f}")
    print("\nratios GPT / model (state, peak, time per token):")
    for n in a.lengths:
        g = rows["gpt", n]
        for arch in ("transformer_xl", "rmt"):
            r = rows[arch, n]
            print(f"  {n:6d} tokens, {arch:15} state {g['state_kb'] / r['state_kb']:6.1f}x  peak "
                  f"{g['peak_kb'] / max(r['peak_kb'], 1):6.1f}x  time {g['ms_per_token'] / r['ms_per_token']:5.2f}x")
    first, last = a.lengths[0], a.lengths[-1]
    print(f"\ngrowth from {first} to {last} tokens (state, peak, time per token):")
    for arch in ARCHS:
        s0, s1 = rows[arch, first], rows[arch, last]
        print(f"  {arch:15} state {s1['state_kb'] / s0['state_kb']:5.1f}x  peak "
              f"{s1['peak_kb'] / max(s0['peak_kb'], 1):5.1f}x  time {s1['ms_per_token'] / s0['ms_per_token']:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
