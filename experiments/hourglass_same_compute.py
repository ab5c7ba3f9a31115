"""The Hourglass paper's claim at toy scale: a hierarchy with more layers, at about the same compute per token
as a plain Transformer, reaches at least the same loss.

    python experiments/hourglass_same_compute.py            # compare the shipped runs (seconds)
    python experiments/hourglass_same_compute.py --train    # retrain the Hourglass run first (~10-20 min, 1 thread)

Contenders, same data (the built-in corpus, char tokens), same training (500 steps, batch 32 x 128, lr 3e-3
cosine, seed 1337, the same fixed validation batches):
- trained/gpt-builtin-reference: GPT, 4 layers, d_model 128 (shipped with mnemo);
- trained/hourglass-builtin-1x4x1: Hourglass `1@1 4@2 1@1` (avg, repeat), d_model 128: 6 layers, 2 at full
  length and 4 at half length, so the same matrix work per token as 4 full-length layers, and less attention
  work (2 + 4/4 = 3 layers' worth instead of 4).
The script prints both models' per-token cost (multiply-adds in the layers' matrices, and in attention at
T = 128), then the validation loss of both runs at every logged step.
"""
import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runs  # noqa: E402
from config import parse_hierarchy  # noqa: E402

GPT_RUN, HG_RUN = ROOT / "trained/gpt-builtin-reference", ROOT / "trained/hourglass-builtin-1x4x1"
TRAIN = ["train.py", "--arch", "hourglass", "--hierarchy", "1@1 4@2 1@1", "--data", "builtin", "--max_iters", "500",
         "--batch_size", "32", "--block_size", "128", "--d_model", "128", "--n_head", "4", "--progress", "false",
         "--out", str(HG_RUN)]


def cost_per_token(cfg, T: int) -> tuple[float, float]:
    """(matrix multiply-adds, attention multiply-adds) per token, layers only (embedding and head alike)."""
    C = cfg.d_model
    levels = parse_hierarchy(cfg.hierarchy) if cfg.arch == "hourglass" else [(cfg.n_layer, 1)]
    matrix = sum(n * 12 * C * C / f for n, f in levels)         # qkv + proj (4C^2) + MLP (8C^2), at 1/f of the tokens
    attention = sum(n * 2 * C * (T / f) / 2 / f for n, f in levels)  # q k^T and p v over ~T/(2f) keys, 1/f of the tokens
    return matrix, attention


def val_losses(run: Path) -> dict[int, float]:
    with open(run / "log.csv", newline="") as f:
        return {int(r["step"]): float(r["val_loss"]) for r in csv.DictReader(f)}


def config_of(run: Path):
    return runs.load_configs(run)["model"]


def main() -> int:
    if "--train" in sys.argv:
        subprocess.run([sys.executable, *TRAIN], cwd=ROOT, check=True)
    gpt, hg = config_of(GPT_RUN), config_of(HG_RUN)
    for name, cfg in (("gpt 4 layers", gpt), (f"hourglass {hg.hierarchy!r}", hg)):
        m, a = cost_per_token(cfg, cfg.block_size)
        print(f"{name:>26}: {m / 1e6:.3f} M matrix multiply-adds per token, {a / 1e6:.3f} M in attention (T = 128)")
    g, h = val_losses(GPT_RUN), val_losses(HG_RUN)
    print("step  gpt val_loss  hourglass val_loss  difference")
    for step in sorted(set(g) & set(h)):
        print(f"{step:>4}  {g[step]:12.4f}  {h[step]:18.4f}  {h[step] - g[step]:+10.4f}")
    last = max(set(g) & set(h))
    print(f"RESULT hourglass_same_compute final val_loss gpt={g[last]:.4f} hourglass={h[last]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
