"""Where a user waits on generation: logits only where they are needed, and cached decoding against Hugging Face.

    python benchmarks/generation_speed.py          # from anywhere; about two minutes; one thread
    python benchmarks/generation_speed.py hf       # (b) only; `last_only` for (a) only

Two measurements, each in this one run, contenders alternating (A B, B A, ...) after an untimed warm-up;
the ratio is the median over the rounds of the ratio within a round, printed with its min-max.

(a) Logits only where they are needed (the project's issue, item 1). Generation without the cache
    (`inference.generate_ids(..., use_cache=False)`: the whole sequence recomputed at every step) at a
    4,096-token vocabulary, where the LM head is the largest matrix multiply. Contenders: the model's own
    next-token step, `model.next_logits` (the head on the last position only: `last_only=True`), against a
    stand-in whose step computes the head over every position and keeps the last (`model(ids).logits[:, -1]`,
    what generation did before). The model: mnemo's default GPT (n_layer 4, n_head 4, d_model 128, RMSNorm,
    RoPE, GELU, tied head), vocab_size 4096 (bpe-4096's size), block_size 1024; 64-token prompt, 128 new
    tokens, batch 1. Check: identical tokens.

(b) Cached greedy decoding against Hugging Face (item 2). mnemo's `generate_ids(..., temperature=0,
    use_cache=True)` against `transformers`' `GPT2LMHeadModel.generate(use_cache=True, do_sample=False)`,
    the same shape (GPT-2 style: LayerNorm, learned positions, exact GELU, biases, tied head; n_layer 4,
    n_head 4, d_model 128, block 1024, vocab_size 65 (the built-in corpus's characters); 64-token prompt, 512
    new tokens, batch 1) and the same weights: mnemo's are copied into HF's GPT-2 (its Conv1D layers store W
    transposed; its c_attn stacks q, k, v as mnemo's qkv does). Checks: the same logits on the prompt,
    identical greedy tokens in every round.

Weights (both): seeded random init with every matrix scaled by 10 (`model_with`): at the usual scale, or
after a few training steps, greedy decoding soon repeats one token, which would make "identical tokens" a
weak check; scaled, the tokens wander. Prompts: seeded random ids.
    HF runs in a child process started outside the repo (the repo's `tokenizers/` folder would shadow the
    `tokenizers` package that transformers imports), reading the weights from a temporary .pt file; the two
    processes take turns, one generation at a time, so they never run at once.
    `transformers` is a benchmark-only dependency, never mnemo's: if the interpreter running this script
    cannot import it, the script makes a virtual environment for itself that sees this interpreter's
    packages (so the same torch) and pip-installs `transformers` there (MNEMO_HF_VENV, default
    ~/.cache/mnemo/hf-venv).

Targets: (a) > 1 with identical tokens (the issue measured 1.32x); (b) HF / mnemo >= 1.5 with identical
tokens. Exits 0 either way.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import model_config  # noqa: E402
from inference import generate_ids  # noqa: E402
from modules import build_model  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, d_model=128)
DEFAULTS = dict(norm="rms", pos="rope", mlp="gelu", bias=False, tie_weights=True)      # config.py's, pinned
GPT2_STYLE = dict(norm="layer", pos="learned", mlp="gelu", bias=True, tie_weights=True)
VOCAB_B = 65  # the built-in corpus's character vocabulary
PROMPT, NEW_A, NEW_B, ROUNDS_A, ROUNDS_B, SCALE = 64, 128, 512, 5, 9, 10.0
TARGET_A, TARGET_B = 1.0, 1.5


def model_with(vocab_size: int, **options):
    """A GPT of SHAPE at block_size 1024, random init with every matrix scaled by SCALE (seeded), in eval mode.

    At the usual init (std 0.02), or after a few training steps, greedy decoding soon repeats one token,
    which would make "identical tokens" a weak check; with larger weights the logits depend sharply on the
    context and the greedy tokens wander (dozens of distinct ones among the new tokens). Speed does not
    depend on the values of the weights."""
    torch.manual_seed(1337)
    model = build_model(model_config("gpt", block_size=1024, vocab_size=vocab_size, **SHAPE, **options))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(SCALE)
    return model.eval()


def prompt_for(vocab_size: int):
    return torch.randint(0, vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(0))


def summary(name, times, cpu, n):
    med, med_cpu = statistics.median(times), statistics.median(cpu)
    return (f"{name:>12}: median {med:6.3f} s ({med / n * 1e3:5.2f} ms per token; CPU {med_cpu / n * 1e3:5.2f} ms "
            f"per token; rounds {', '.join(f'{t:.2f}' for t in times)})")


def ratio_line(label, slow, fast, slow_cpu, fast_cpu):
    """Print and return the within-round ratio (median, min, max) on wall time, with the cross-checks."""
    within = [s / f for s, f in zip(slow, fast)]
    on_cpu = [s / f for s, f in zip(slow_cpu, fast_cpu)]
    med = statistics.median(within)
    print(f"  {label} = {med:.2f}x (min {min(within):.2f}, max {max(within):.2f} over {len(within)} rounds; "
          f"ratio of the medians {statistics.median(slow) / statistics.median(fast):.2f}; on CPU time "
          f"{statistics.median(on_cpu):.2f}, min {min(on_cpu):.2f}, max {max(on_cpu):.2f})")
    return med, min(within), max(within), statistics.median(on_cpu)


def timed(f):
    """(wall seconds, CPU seconds of this process, f())."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return time.perf_counter() - t0, time.process_time() - c0, out


# --- (a) logits only where they are needed --------------------------------------------------------
class FullLogits:
    """The same model, with the next-token step of the old contract: the LM head over every position."""

    def __init__(self, model):
        self.model, self.max_context, self.capabilities = model, model.max_context, model.capabilities

    def eval(self):
        self.model.eval()
        return self

    def init_state(self, batch_size, source=None):
        return self.model.init_state(batch_size, source)

    def next_logits(self, ids, state=None):
        return self.model(ids, state).logits[:, -1]


def last_only_against_full():
    print("\n(a) generation without the cache, vocab 4096: the head on the last position only vs every position")
    model, prompt = model_with(4096, **DEFAULTS), prompt_for(4096)
    full = FullLogits(model)
    contenders = {"last_only": model, "full": full}
    for m in contenders.values():  # warm-up, untimed
        generate_ids(m, prompt, 8, temperature=0, use_cache=False)
    times, cpu, outs = ({k: [] for k in contenders} for _ in range(3))
    for i in range(ROUNDS_A):
        for k in (("last_only", "full") if i % 2 == 0 else ("full", "last_only")):
            t, c, out = timed(lambda: generate_ids(contenders[k], prompt, NEW_A, temperature=0, use_cache=False))
            times[k].append(t)
            cpu[k].append(c)
            outs[k].append(out)
    same = all(torch.equal(out, outs["last_only"][0]) for k in contenders for out in outs[k])
    new = outs["last_only"][0][0, PROMPT:]
    print(f"  identical tokens in every round: {same}; {len(set(new.tolist()))} distinct among the {NEW_A} new "
          f"tokens; they start {new[:8].tolist()}")
    for k in contenders:
        print(summary(k, times[k], cpu[k], NEW_A))
    return (*ratio_line("full / last_only", times["full"], times["last_only"], cpu["full"], cpu["last_only"]), same)


# --- (b) cached decoding against Hugging Face -----------------------------------------------------
HF_SCRIPT = r'''
import json, sys, time
import torch, transformers
from transformers import GPT2Config, GPT2LMHeadModel
torch.set_num_threads(1)
args = json.loads(sys.stdin.readline())
cfg = GPT2Config(vocab_size=args["vocab"], n_positions=args["block"], n_embd=args["d_model"],
                 n_layer=args["n_layer"], n_head=args["n_head"], activation_function="gelu",
                 layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                 bos_token_id=None, eos_token_id=None, pad_token_id=None)
model = GPT2LMHeadModel(cfg).eval()
missing, unexpected = model.load_state_dict(torch.load(args["weights"]), strict=False)
prompt = torch.tensor(args["prompt"])
with torch.no_grad():
    logits = model(prompt).logits[0].tolist()
kw = dict(do_sample=False, use_cache=True, attention_mask=torch.ones_like(prompt), eos_token_id=None,
          pad_token_id=0)
def generate(n):
    with torch.no_grad():
        return model.generate(prompt, max_new_tokens=n, **kw)  # no eos: always n new tokens
generate(32)  # warm-up
print(json.dumps({"versions": f"transformers {transformers.__version__}, torch {torch.__version__}",
                  "attn": model.config._attn_implementation, "missing": missing, "unexpected": unexpected,
                  "logits": logits}), flush=True)
for line in sys.stdin:  # one timed generation per line read
    t0, c0 = time.perf_counter(), time.process_time()
    out = generate(args["new"])
    print(json.dumps({"s": time.perf_counter() - t0, "cpu": time.process_time() - c0, "ids": out[0].tolist()}),
          flush=True)
'''


def hf_python() -> str:
    """An interpreter that imports transformers outside the repo: this one, or a private venv made for it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as tmp:
        if not subprocess.run([sys.executable, "-c", "import transformers"], cwd=tmp, env=env,
                              capture_output=True).returncode:
            return sys.executable
    venv = Path(os.environ.get("MNEMO_HF_VENV", Path.home() / ".cache/mnemo/hf-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"  making {venv} (sees this interpreter's packages) for transformers, benchmark only")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    if subprocess.run([str(python), "-c", "import transformers"], cwd=tempfile.gettempdir(), env=env,
                      capture_output=True).returncode:
        print(f"  pip install transformers into {venv}")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "transformers"], check=True)
    return str(python)


def to_hf(model) -> dict:
    """mnemo's GPT-2-style state dict under HF GPT2LMHeadModel's names (Conv1D: weights transposed)."""
    sd, out = model.state_dict(), {}
    out["transformer.wte.weight"] = sd["embed.weight"]
    out["transformer.wpe.weight"] = sd["positions.absolute.table.weight"]
    for i in range(model.cfg.n_layer):
        b, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ours, theirs, conv in [("norm1", "ln_1", False), ("attn.qkv", "attn.c_attn", True),
                                   ("attn.proj", "attn.c_proj", True), ("norm2", "ln_2", False),
                                   ("mlp.up", "mlp.c_fc", True), ("mlp.down", "mlp.c_proj", True)]:
            w = sd[b + ours + ".weight"]
            out[h + theirs + ".weight"] = w.t().contiguous() if conv else w
            out[h + theirs + ".bias"] = sd[b + ours + ".bias"]
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["norm.weight"], sd["norm.bias"]
    out["lm_head.weight"] = sd["embed.weight"]
    return {k: v.detach().clone() for k, v in out.items()}


def against_hugging_face():
    print("\n(b) cached greedy decoding, GPT-2 style, mnemo vs Hugging Face GPT2LMHeadModel.generate")
    model, prompt = model_with(VOCAB_B, **GPT2_STYLE), prompt_for(VOCAB_B)
    python = hf_python()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(to_hf(model), Path(tmp) / "weights.pt")
        (Path(tmp) / "hf.py").write_text(HF_SCRIPT)
        hf = subprocess.Popen([python, str(Path(tmp) / "hf.py")], cwd=tmp, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        hf.stdin.write(json.dumps({"weights": str(Path(tmp) / "weights.pt"), "prompt": prompt.tolist(),
                                   "vocab": model.cfg.vocab_size, "block": 1024, "new": NEW_B, **SHAPE}) + "\n")
        hf.stdin.flush()
        info = json.loads(hf.stdout.readline())

        def hf_round():
            hf.stdin.write("go\n")
            hf.stdin.flush()
            reply = json.loads(hf.stdout.readline())
            return reply["s"], reply["cpu"], torch.tensor([reply["ids"]])

        with torch.no_grad():
            diff = (model(prompt).logits[0] - torch.tensor(info["logits"])).abs().max().item()
        print(f"  {info['versions']}, HF attention {info['attn']!r}; weights not loaded: {info['missing']}, "
              f"unused: {info['unexpected']}")
        print(f"  same weights, logits on the prompt: max |mnemo - HF| {diff:.1e}")
        generate_ids(model, prompt, 32, temperature=0)  # warm-up (HF warmed up in its process)
        times, cpu, outs = ({"mnemo": [], "hf": []} for _ in range(3))
        for i in range(ROUNDS_B):
            for k in (("mnemo", "hf") if i % 2 == 0 else ("hf", "mnemo")):
                t, c, out = (timed(lambda: generate_ids(model, prompt, NEW_B, temperature=0)) if k == "mnemo"
                             else hf_round())
                times[k].append(t)
                cpu[k].append(c)
                outs[k].append(out)
        hf.stdin.close()
        hf.wait()
    same = all(torch.equal(a, b) for a in outs["mnemo"] for b in outs["hf"])
    new = outs["mnemo"][0][0, PROMPT:]
    print(f"  identical greedy tokens, mnemo vs HF, every round: {same}; {len(set(new.tolist()))} distinct among "
          f"the {NEW_B} new; they start {new[:8].tolist()}")
    for k in times:
        print(summary(k, times[k], cpu[k], NEW_B))
    return (*ratio_line("HF / mnemo", times["hf"], times["mnemo"], cpu["hf"], cpu["mnemo"]), same)


def main() -> int:
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, Python {sys.version.split()[0]}; "
          f"1-minute load at start {os.getloadavg()[0]:.1f}")
    parts = sys.argv[1:] or ["last_only", "hf"]  # `python benchmarks/generation_speed.py hf`: (b) only
    a = last_only_against_full() if "last_only" in parts else None
    b = against_hugging_face() if "hf" in parts else None
    if a:
        print(f"RESULT generation_speed last_only ratio={a[0]:.2f} (min {a[1]:.2f}, max {a[2]:.2f}; CPU {a[3]:.2f}; "
              f"target > {TARGET_A}) identical_tokens={a[4]}")
    if b:
        print(f"RESULT generation_speed hf_cached ratio={b[0]:.2f} (min {b[1]:.2f}, max {b[2]:.2f}; CPU {b[3]:.2f}; "
              f"target >= {TARGET_B}) identical_tokens={b[4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
