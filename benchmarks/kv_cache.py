"""Greedy generation with the KV cache against recomputation, and a check that both give the same tokens.

    python benchmarks/kv_cache.py           # from anywhere; one to two minutes; one thread

The model: mnemo's default GPT shape (n_layer 4, n_head 4, d_model 128, RMSNorm, RoPE, GELU, tied head)
with block_size 1024, so the whole sequence (a 64-token prompt + 512 new tokens) fits in the context and
neither path ever truncates it. It is first trained for a few steps on the built-in corpus (at
block_size 128; RoPE has no parameter that depends on the block size, so the weights load into the
1024 model unchanged): an untrained model repeats one token, which would make the "same tokens" check
meaningless.

Contenders (`inference.generate_ids(model, prompt, 512, temperature=0, use_cache=...)`, batch 1):
- cache: the prompt once, then one token per call, attending to the cached keys and values;
- recompute: the whole sequence so far at every step.
They alternate (A B, B A, ...); one short warm-up round is not timed; the ratio is the median over the
rounds of recompute / cache time within a round (the ratio of the medians is printed beside it).
Correctness, untimed: the greedy tokens of every round must be identical; so must 128 tokens sampled at
temperature 1 with the same generator seed (greedy output of a barely trained model soon repeats one
character, which checks little); and the logits of each cached step are compared with one full forward
pass over the generated sequence.
Target (the project's issue 2): recompute / cache >= 5x, and identical tokens. Exits 0 either way.
"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import TrainConfig, model_config  # noqa: E402
from inference import generate_ids  # noqa: E402
from modules import build_model  # noqa: E402
from train import Trainer  # noqa: E402

PROMPT, NEW, ROUNDS, TRAIN_STEPS, SAMPLED = 64, 512, 5, 60, 128
# config.py's defaults today, pinned so a change of default never changes what is compared
DEFAULTS = dict(tokenizer="char", norm="rms", pos="rope", mlp="gelu", bias=False, tie_weights=True)
TARGET = 5.0


def trained_weights() -> tuple[dict, object]:
    """A briefly trained default GPT (block_size 128): its state dict and the corpus source."""
    mcfg = model_config("gpt", n_layer=4, n_head=4, d_model=128, block_size=128, **DEFAULTS)
    tcfg = TrainConfig(data="builtin", batch_size=16, threads=1, seed=1337, lr=3e-3, warmup_iters=5,
                       max_iters=TRAIN_STEPS)
    with tempfile.TemporaryDirectory() as tmp:  # train_step never writes; the run folder is never created
        trainer = Trainer(mcfg, tcfg, out=Path(tmp) / "run", progress=False, verbose=False)
    trainer.model.train()
    for step in range(TRAIN_STEPS):
        loss = trainer.train_step(3e-3 * min(1.0, (step + 1) / 5))[0]  # (loss, grad norm, tokens, aux)
    print(f"trained {TRAIN_STEPS} steps (batch 16 x 128, built-in corpus, char tokens): train loss {loss:.3f}")
    return trainer.model.state_dict(), trainer


def main() -> int:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    weights, trainer = trained_weights()
    print(f"  ({time.perf_counter() - t0:.0f} s)")
    cfg = model_config("gpt", n_layer=4, n_head=4, d_model=128, block_size=1024,
                       vocab_size=trainer.mcfg.vocab_size, **DEFAULTS)
    model = build_model(cfg)
    model.load_state_dict(weights)
    model.eval()
    tok = trainer.src.tokenizer
    prompt = trainer.src.val[0].x[:1, :PROMPT]  # (1, 64), from the validation split
    print(f"model: n_layer {cfg.n_layer}, n_head {cfg.n_head}, d_model {cfg.d_model}, block_size "
          f"{cfg.block_size}, pos {cfg.pos}; prompt {PROMPT} tokens + {NEW} new (greedy, batch 1); "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    def run(use_cache, n):
        t0, c0 = time.perf_counter(), time.process_time()
        out = generate_ids(model, prompt, n, temperature=0, use_cache=use_cache)
        return time.perf_counter() - t0, time.process_time() - c0, out

    run(True, 32), run(False, 32)  # warm-up, untimed
    wall, cpu, outs = {"cache": [], "recompute": []}, {"cache": [], "recompute": []}, {"cache": [], "recompute": []}
    for i in range(ROUNDS):
        for k in (("cache", "recompute") if i % 2 == 0 else ("recompute", "cache")):
            w, c, out = run(k == "cache", NEW)
            wall[k].append(w)
            cpu[k].append(c)
            outs[k].append(out)
    same = all(torch.equal(a, b) for a, b in zip(outs["cache"], outs["recompute"]))
    assert outs["cache"][0].shape == (1, PROMPT + NEW)
    text = tok.decode(outs["cache"][0][0, PROMPT:PROMPT + 60].tolist())
    print(f"greedy: identical tokens, cache vs recompute, every round: {same}; new text starts {text!r}")
    # A barely trained char model soon repeats one token under greedy decoding, so check more than that:
    # sampled tokens (same generator seed) and the logits themselves at every position.
    sampled = [generate_ids(model, prompt, SAMPLED, temperature=1.0, use_cache=c,
                            generator=torch.Generator().manual_seed(0)) for c in (True, False)]
    same_sampled = torch.equal(*sampled)
    text = tok.decode(sampled[0][0, PROMPT:PROMPT + 60].tolist())
    print(f"sampled (temperature 1, same seed, {SAMPLED} tokens): identical tokens {same_sampled}; new text "
          f"starts {text!r}")
    with torch.no_grad():
        seq, state = outs["cache"][0], model.init_state(1)
        stepped = [model(seq[:, :PROMPT], state).logits[:, -1]]
        stepped += [model(seq[:, t:t + 1], state).logits[:, -1] for t in range(PROMPT, PROMPT + NEW - 1)]
        full = model(seq[:, :-1]).logits[:, PROMPT - 1:]
        diff = (torch.stack(stepped, 1) - full).abs().max().item()
    print(f"logits of every new position, cached steps vs one full forward: max |difference| {diff:.2e}")
    for k, v in wall.items():
        med = statistics.median(v)
        print(f"{k:>9}: median {med:7.3f} s for {NEW} tokens ({med / NEW * 1e3:6.2f} ms per token; "
              f"rounds {', '.join(f'{x:.2f}' for x in v)})")
    ratio = statistics.median(r / c for r, c in zip(wall["recompute"], wall["cache"]))
    of_medians = statistics.median(wall["recompute"]) / statistics.median(wall["cache"])
    cpu_ratio = statistics.median(r / c for r, c in zip(cpu["recompute"], cpu["cache"]))
    print(f"recompute / cache = {ratio:.2f}x (median of the ratios within a round; ratio of the medians "
          f"{of_medians:.2f}; on CPU time {cpu_ratio:.2f})")
    print(f"RESULT kv_cache ratio={ratio:.2f} (target >= {TARGET}) identical_tokens={same and same_sampled}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
