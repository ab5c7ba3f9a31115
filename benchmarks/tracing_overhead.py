"""What tracing costs when it is off: the model with `@log_io` decorators, tracing off, against the same
model with the decorators stripped.

    python benchmarks/tracing_overhead.py   # from anywhere; about a minute; one thread

DESIGN.md 3.1 promises that a decorated call costs one flag check when tracing is off. Here the same
model object runs in two states that alternate (A B A B ...):
- decorated: the classes as they are, no trace active (every `@log_io` method goes through the wrapper,
  which reads `self._tracer`, finds None and calls the method);
- stripped: inside `stripped(model)`, every `@log_io` method of every LoggingModule class the model uses
  is replaced on its class by the undecorated function (`__wrapped__`, set by functools.wraps), and put
  back on exit. A trace taken while stripped records nothing, which checks that the stripping is
  complete.
Each timing is a block of forward passes (no_grad, eval mode: the least work per call, so the overhead
shows most), after one untimed pass (the interpreter re-specialises after the class attributes change);
warm-up blocks are not timed; one thread. The ratio is the median, over the rounds, of decorated /
stripped of the two adjacent blocks of a round (order A B, B A, ... so neither always goes first): on
a shared machine the load drifts between rounds, and a ratio within a round cancels most of it. The
ratio of the two medians and the same ratio on CPU time (`time.process_time`, which does not advance
while the process waits for a core) are printed beside it as cross-checks.

Two shapes:
- headline: the project's default GPT (n_layer 4, n_head 4, d_model 128, RMSNorm, RoPE, GELU, tied
  head) on a training batch (32 x 128 tokens), the same model as benchmarks/train_speed.py;
- small: d_model 64, 2 layers, 4 heads, one sequence of 16 tokens, where the per-call overhead is the
  largest share of the work (the worst case; reported beside the headline).
Target (the project's issue 2): decorated / stripped <= 1.03x. Exits 0 either way.
"""
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import model_config  # noqa: E402
from modules import build_model  # noqa: E402
from modules.tracing import LoggingModule, log_io, trace  # noqa: E402

# config.py's defaults today, pinned so a change of default never changes what is compared
DEFAULTS = dict(tokenizer="char", norm="rms", pos="rope", mlp="gelu", bias=False, tie_weights=True)
TARGET = 1.03
VOCAB = 108  # the char tokenizer of the built-in corpus
_WRAPPER_CODE = log_io(lambda self: None).__code__  # how to recognise a @log_io wrapper


@contextlib.contextmanager
def stripped(model):
    """Within the block, every @log_io method of the model's LoggingModule classes is undecorated."""
    classes = {c for m in model.modules() for c in type(m).__mro__ if issubclass(c, LoggingModule)}
    saved = [(c, name, v) for c in classes for name, v in vars(c).items()
             if getattr(v, "__code__", None) is _WRAPPER_CODE]
    for c, name, v in saved:
        setattr(c, name, v.__wrapped__)
    try:
        yield len(saved)
    finally:
        for c, name, v in saved:
            setattr(c, name, v)


def measure(name, cfg, batch, seq, blocks, per_block, warmup=2):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.randint(0, cfg.vocab_size, (batch, seq))
    with torch.no_grad():
        with trace(model) as t:
            ref = model(x).logits
        calls = len(t.events)
        with stripped(model) as n_methods, trace(model) as t_stripped:
            same = torch.equal(model(x).logits, ref)
        leaked = len(t_stripped.events)

        def run(strip):
            with stripped(model) if strip else contextlib.nullcontext():
                model(x)  # untimed: re-specialise after the class attributes changed
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(per_block):
                    model(x)
                return (time.perf_counter() - t0) / per_block, (time.process_time() - c0) / per_block

        times = {"decorated": [], "stripped": []}
        cpu = {"decorated": [], "stripped": []}
        for i in range(warmup + blocks):
            for k in (("decorated", "stripped") if i % 2 else ("stripped", "decorated")):  # A B B A ...
                wall, c = run(k == "stripped")
                if i >= warmup:
                    times[k].append(wall)
                    cpu[k].append(c)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times["decorated"], times["stripped"]))
    of_medians = med["decorated"] / med["stripped"]
    cpu_ratio = statistics.median(a / b for a, b in zip(cpu["decorated"], cpu["stripped"]))
    print(f"[{name}] n_layer {cfg.n_layer}, n_head {cfg.n_head}, d_model {cfg.d_model}, input {batch} x {seq}: "
          f"{calls} decorated calls per forward ({n_methods} methods stripped; trace while stripped "
          f"recorded {leaked} calls; same logits: {same})")
    if n_methods == 0:
        print("  (no @log_io wrapper found on the classes: decorated and stripped run the same code, so this is an "
              "A/A run and the ratio shows the measurement noise)")
    for k, v in times.items():
        q = statistics.quantiles(v, n=4)
        print(f"  {k:>9}: median forward {med[k] * 1e6:9.1f} us (quartiles {q[0] * 1e6:.1f}..{q[2] * 1e6:.1f}; "
              f"{blocks} blocks of {per_block})")
    print(f"  decorated / stripped = {ratio:.4f} (median of the ratios of adjacent blocks; ratio of the "
          f"medians {of_medians:.4f}; same on CPU time {cpu_ratio:.4f}); "
          f"{(ratio - 1) * med['stripped'] / calls * 1e9:+.0f} ns per decorated call")
    return ratio


def main() -> int:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, Python {sys.version.split()[0]}")
    big = model_config("gpt", n_layer=4, n_head=4, d_model=128, block_size=128, vocab_size=VOCAB, **DEFAULTS)
    small = model_config("gpt", n_layer=2, n_head=4, d_model=64, block_size=16, vocab_size=VOCAB, **DEFAULTS)
    r_big = measure("headline", big, batch=32, seq=128, blocks=41, per_block=1)
    r_small = measure("small", small, batch=1, seq=16, blocks=61, per_block=200)
    print(f"RESULT tracing_overhead ratio={r_big:.3f} (target <= {TARGET}; headline: default model, 32x128 "
          f"tokens) small_ratio={r_small:.3f} (d_model 64, 2 layers, 1x16 tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
