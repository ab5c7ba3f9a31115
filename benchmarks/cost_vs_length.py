"""Cost against length for every decoder-only architecture, in one figure (issue 13, item 2).

    python benchmarks/cost_vs_length.py            # T = 128 ... 4096, 4,096 generated tokens; ~6 min at load 2-3
    python benchmarks/cost_vs_length.py --quick    # T = 128 ... 512, 256 generated tokens: a smoke test (~20 s)
    python benchmarks/cost_vs_length.py --out PATH # the figure there (the JSON beside it, same name .json)

The architectures of experiments/reference.py at their reference configs (equal parameters: MODEL there and
each config's `equal_budget`; 4 layers' worth of width 64, 4 heads, config.py's defaults), random weights (seed 0),
vocab_size 108 (the built-in corpus's characters), one torch thread. Only block_size changes.

1. Training cost against T (T = 128, 256, ..., 4096; batch 1; block_size = T): forward + backward
   (`model(Batch(x, y)).loss.backward()`, no optimizer; benchmarks/hourglass.py's `fwd_bwd`).
   - Time: wall clock, median over rounds after one untimed warm-up per (arch, T). A round runs every
     (arch, T) once, all lengths in turn, the architectures in an order rotating by one place per round,
     so that a change of load on the shared machine hits every length and architecture alike.
     Where one warm-up step is slow, fewer rounds are run for that (arch, T) so each stays within about
     BUDGET_S seconds (at least 1); the number of rounds is printed and kept in the JSON.
   - Memory: the peak of the bytes the CPU allocator holds during one forward + backward (after the warm-up),
     above what it held before: the running sum of the allocation and free events torch.profiler records
     with profile_memory=True. The parameters and the input ids, which exist before, are not counted; the
     gradients, the activations saved for backward and every temporary buffer are. It is the memory the
     step needs, not the process's resident size (the allocator's caching is not in it). Not
     benchmarks/hourglass.py's `PeakMemory`: that one scans every live storage at every operator, which
     is quadratic and took minutes per step for the segment-recurrent models at T >= 2048 (Transformer-XL at
     T = 1024: 26 s against 1.2 s). On the reference GPT, Transformer-XL and Memory Mosaics at T = 256 and
     1024 both measured the same peak to within the size of the parameters (0.78 MiB; tests/
     test_benchmarks_cost.py checks this on tiny models).
2. Generation cost per token against position: 4,096 greedy tokens after a 1-token prompt (batch 1),
   `inference.generate_ids(..., use_cache=True)` (every architecture here has a streaming state: KV cache,
   segment memory or mosaic state), block_size = the whole length so no model ever truncates or rebuilds
   its cache. The time of each token is taken between two `on_token` callbacks (one cached step + sampling);
   per position, the median over the rounds; per bucket of 256 positions, the median of those.
   Segment-recurrent models (Transformer-XL, RMT) have no length limit; the others are generating within
   their block_size, which is set to 4,096 + 1 here (RoPE and Memory Mosaics have no parameter that depends
   on it).

Prints a table of the numbers behind the figure, writes the figure (three panels: time and memory against
T, log-log; ms per generated token against position) and the numbers as JSON beside it, and ends with
`RESULT cost_vs_length ...`: the time growth T_max / T_min per architecture (linear in T would be 32 for
4096 / 128). A measurement, not a test: exits 0.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.hourglass import fwd_bwd  # noqa: E402
from config import MODEL_CONFIGS, model_config  # noqa: E402
from experiments.reference import MODEL, archs  # noqa: E402
from inference import generate_ids  # noqa: E402
from modules import build_model  # noqa: E402
from tools import atomic_write_text  # noqa: E402

VOCAB = 108  # the built-in corpus's character vocabulary (the reference runs' vocab_size)
FULL = dict(lengths=(128, 256, 512, 1024, 2048, 4096), rounds=9, new=4096, gen_rounds=3, bucket=256)
QUICK = dict(lengths=(128, 256, 512), rounds=3, new=256, gen_rounds=2, bucket=64)
BUDGET_S = 60.0   # timed seconds per (arch, T) at most, roughly: fewer rounds where one step is slow
PROMPT = 1
FIGURE = ROOT / "experiments" / "figures" / "cost_vs_length.png"
ARCHS = archs(MODEL)  # every registered causal language model at its reference config


def build(arch: str, fields: dict, model: dict, block_size: int):
    torch.manual_seed(0)
    cfg = model_config(arch, **{**model, **fields, "block_size": block_size, "vocab_size": VOCAB})
    return build_model(cfg)


@contextlib.contextmanager
def quiet_stderr():
    """Kineto writes two log lines to file descriptor 2 per profile; the exception of a failed step still
    reaches the terminal (it is printed after this block restores the descriptor)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_bytes(model, x, y) -> int:
    """Peak of the bytes the CPU allocator holds during one forward + backward, above what it held before:
    the running sum of the allocations and frees that torch.profiler records (profile_memory=True)."""
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as p:
        fwd_bwd(model, x, y)
    events = sorted((e.start_ns(), e.nbytes()) for e in p.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    now = peak = 0
    for _, n in events:
        now += n
        peak = max(peak, now)
    return peak


def rotated(keys: list, r: int) -> list:
    r %= len(keys)
    return keys[r:] + keys[:r]


def training_cost(archs: dict, lengths, rounds: int, model: dict = MODEL, budget_s: float = BUDGET_S,
                  log=print) -> dict:
    """arch -> {T: {time_s, times, rounds, peak_bytes}}: forward + backward at batch 1, block_size T.
    Every (arch, T) is built, warmed up and its memory measured first; then each timed round runs every
    one of them once (all lengths, the architectures in an order that rotates), so that a change of load
    on the machine hits every length alike and the curves keep their shape."""
    out = {a: {} for a in archs}
    runs = {}  # (T, arch) -> (model, x, y)
    n = {}     # (T, arch) -> rounds within the budget
    for T in lengths:
        g = torch.Generator().manual_seed(T)
        x, y = (torch.randint(0, VOCAB, (1, T), generator=g) for _ in range(2))
        for a, f in archs.items():
            m = build(a, f, model, T).train()
            t0 = time.perf_counter()
            fwd_bwd(m, x, y)  # warm-up, untimed; tells how many rounds fit in the budget
            n[T, a] = max(1, min(rounds, int(budget_s / (time.perf_counter() - t0))))
            out[a][T] = dict(peak_bytes=peak_bytes(m, x, y), times=[])
            runs[T, a] = (m, x, y)
        log(f"  T {T:5d}: peak memory " + "; ".join(f"{a} {out[a][T]['peak_bytes'] / 2**20:.1f} MiB" for a in archs),
            flush=True)
    for r in range(max(n.values())):
        for T in lengths:
            for a in rotated(list(archs), r):
                if r < n[T, a]:
                    t0 = time.perf_counter()
                    fwd_bwd(*runs[T, a])
                    out[a][T]["times"].append(time.perf_counter() - t0)
        log(f"  round {r + 1} of {max(n.values())} done", flush=True)
    for a in archs:
        for d in out[a].values():
            d.update(time_s=statistics.median(d["times"]), rounds=len(d["times"]))
    return out


def generation_cost(archs: dict, new: int, rounds: int, bucket: int, model: dict = MODEL,
                    log=print) -> dict:
    """arch -> {cached, ms_per_token (per bucket), bucket_start, total_s}: per-token time against position."""
    ms = {a: build(a, f, model, PROMPT + new).eval() for a, f in archs.items()}
    prompt = torch.randint(0, VOCAB, (1, PROMPT), generator=torch.Generator().manual_seed(1))

    def run(m, n):
        stamps = []
        t0 = time.perf_counter()
        generate_ids(m, prompt, n, temperature=0, use_cache=True, on_token=lambda _: stamps.append(time.perf_counter()))
        return stamps[-1] - t0, [b - a for a, b in zip(stamps, stamps[1:])]

    for m in ms.values():
        run(m, 16)  # warm-up
    per_token = {a: [] for a in ms}
    totals = {a: [] for a in ms}
    for r in range(rounds):
        for a in rotated(list(ms), r):
            total, steps = run(ms[a], new)
            per_token[a].append(steps)
            totals[a].append(total)
    out = {}
    for a, runs in per_token.items():
        # steps[i] fed the token at position PROMPT + i (0-based), i.e. a context of PROMPT + i + 1 tokens
        med = [statistics.median(v) for v in zip(*runs)]
        pos = [PROMPT + i for i in range(len(med))]
        starts = list(range(0, pos[-1] + 1, bucket))
        ms_tok = [statistics.median(t for p, t in zip(pos, med) if s <= p < s + bucket) * 1e3 for s in starts]
        out[a] = dict(cached=ms[a].init_state(1) is not None, bucket=bucket, bucket_start=starts, ms_per_token=ms_tok,
                      total_s=statistics.median(totals[a]), rounds=rounds, max_context=ms[a].max_context)
        log(f"  {a:15s} {out[a]['total_s']:.2f} s for {new} tokens; ms/token by position: "
            + " ".join(f"{v:.2f}" for v in ms_tok), flush=True)
    return out


def table(train: dict, gen: dict) -> str:
    archs = list(train)
    lengths = list(next(iter(train.values())))
    lines = ["forward + backward, batch 1: median wall time, ms (rounds)"]
    lines.append(f"{'T':>6} " + " ".join(f"{a:>16}" for a in archs))
    for T in lengths:
        lines.append(f"{T:>6} " + " ".join(f"{train[a][T]['time_s'] * 1e3:>11,.0f} ({train[a][T]['rounds']})"
                                         for a in archs))
    lines.append("peak bytes allocated during forward + backward (above the parameters), MiB")
    for T in lengths:
        lines.append(f"{T:>6} " + " ".join(f"{train[a][T]['peak_bytes'] / 2**20:>16.1f}" for a in archs))
    bucket = next(iter(gen.values()))["bucket"]
    lines.append(f"cached generation, ms per token (median over the {bucket} positions from each start)")
    lines.append(f"{'from':>6} " + " ".join(f"{a:>16}" for a in gen))
    starts = next(iter(gen.values()))["bucket_start"]
    for i, s in enumerate(starts):
        lines.append(f"{s:>6} " + " ".join(f"{gen[a]['ms_per_token'][i]:>16.2f}" for a in gen))
    return "\n".join(lines)


def figure(train: dict, gen: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, ax = plt.subplots(1, 3, figsize=(16, 4.8))
    lengths = list(next(iter(train.values())))
    for a in train:
        kw = dict(marker="o", ms=4, label=MODEL_CONFIGS[a].display_name)
        ax[0].plot(lengths, [train[a][T]["time_s"] for T in lengths], **kw)
        ax[1].plot(lengths, [train[a][T]["peak_bytes"] / 2**20 for T in lengths], **kw)
        g = gen[a]
        ax[2].plot([s + g["bucket"] / 2 for s in g["bucket_start"]], g["ms_per_token"], **kw)
    t0 = min(train[a][lengths[0]]["time_s"] for a in train)
    m0 = min(train[a][lengths[0]]["peak_bytes"] for a in train) / 2**20
    for p, ls in ((1, ":"), (2, "--")):  # guides through the lowest first point
        ax[0].plot(lengths, [t0 * (T / lengths[0]) ** p for T in lengths], color="grey", ls=ls, lw=0.8,
                   label=f"~T{'' if p == 1 else '²'}")
    ax[1].plot(lengths, [m0 * T / lengths[0] for T in lengths], color="grey", ls=":", lw=0.8, label="~T")
    for a_, ylabel, t in ((ax[0], "seconds", "forward + backward time (batch 1)"),
                          (ax[1], "MiB", "peak allocated memory, forward + backward")):
        a_.set_xscale("log", base=2)
        a_.set_yscale("log")
        a_.set_xticks(lengths, [str(T) for T in lengths])
        a_.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        a_.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        a_.set_xlabel("sequence length T")
        a_.set_ylabel(ylabel)
        a_.set_title(t)
    ax[2].set_xlabel("position in the generated sequence")
    ax[2].set_ylabel("ms per token")
    ax[2].set_ylim(bottom=0)
    ax[2].set_title(f"cached generation, per token (medians of {next(iter(gen.values()))['bucket']} positions)")
    for a_ in ax:
        a_.grid(True, which="both", alpha=0.3)
    ax[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="T up to 512, fewer rounds, 256 generated tokens")
    p.add_argument("--out", type=Path, default=None,
                   help=f"figure path (default {FIGURE.relative_to(ROOT)}; with --quick, a temporary folder)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    s = QUICK if a.quick else FULL
    out = a.out or (Path(tempfile.gettempdir()) / "cost_vs_length_quick.png" if a.quick else FIGURE)
    start = time.perf_counter()
    params = {arch: build(arch, f, MODEL, 128).num_params() for arch, f in ARCHS.items()}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; reference configs (experiments/"
          f"reference.py), vocab {VOCAB}; params " + ", ".join(f"{k} {v:,}" for k, v in params.items()))
    print(f"1. forward + backward, batch 1, T = {', '.join(map(str, s['lengths']))} "
          f"(up to {s['rounds']} rounds, ~{BUDGET_S:.0f} s per arch and T at most)", flush=True)
    train = training_cost(ARCHS, s["lengths"], s["rounds"])
    print(f"2. cached greedy generation, {s['new']} tokens after a {PROMPT}-token prompt, {s['gen_rounds']} rounds",
          flush=True)
    gen = generation_cost(ARCHS, s["new"], s["gen_rounds"], s["bucket"])
    print(table(train, gen))
    T0, T1 = s["lengths"][0], s["lengths"][-1]
    growth = {k: train[k][T1]["time_s"] / train[k][T0]["time_s"] for k in train}
    mem_growth = {k: train[k][T1]["peak_bytes"] / train[k][T0]["peak_bytes"] for k in train}
    gen_growth = {k: g["ms_per_token"][-1] / g["ms_per_token"][0] for k, g in gen.items()}
    wall = time.perf_counter() - start
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    figure(train, gen, out, f"cost against length, reference configs (~{min(params.values()) // 1000}k params), "
                            f"one CPU thread, random weights; {stamp}" + (" (--quick)" if a.quick else ""))
    record = dict(
        meta=dict(command="python benchmarks/cost_vs_length.py" + (" --quick" if a.quick else ""), date=stamp,
                  torch=torch.__version__, python=platform.python_version(), machine=platform.machine(),
                  threads=torch.get_num_threads(), vocab_size=VOCAB, model=MODEL, archs=ARCHS, batch=1,
                  lengths=list(s["lengths"]), max_rounds=s["rounds"], budget_s=BUDGET_S, prompt=PROMPT,
                  new_tokens=s["new"], gen_rounds=s["gen_rounds"], bucket=s["bucket"], wall_s=round(wall, 1),
                  memory="peak bytes held by the CPU allocator during one forward + backward above what it held "
                         "before (torch.profiler memory events, running sum): parameters and inputs not "
                         "counted; gradients, saved activations and temporaries counted"),
        params=params,
        train={k: {str(T): dict(time_s=round(d["time_s"], 5), times=[round(t, 5) for t in d["times"]],
                                rounds=d["rounds"], peak_bytes=d["peak_bytes"]) for T, d in v.items()}
               for k, v in train.items()},
        generation={k: {**g, "ms_per_token": [round(x, 4) for x in g["ms_per_token"]], "total_s": round(g["total_s"], 3)}
                    for k, g in gen.items()},
        growth=dict(time=growth, memory=mem_growth, generation_last_over_first_bucket=gen_growth))
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    print(f"figure {out}; numbers {out.with_suffix('.json')}; {wall:.0f} s")
    print(f"RESULT cost_vs_length time_growth_{T1}/{T0} " + " ".join(f"{k}={v:.1f}" for k, v in growth.items())
          + f" (linear = {T1 // T0}) memory_growth " + " ".join(f"{k}={v:.1f}" for k, v in mem_growth.items())
          + " gen_last/first_bucket " + " ".join(f"{k}={v:.2f}" for k, v in gen_growth.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
