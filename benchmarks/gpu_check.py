"""Where a GPU exists: the reference GPT trained in float32, in bfloat16 (autocast) and compiled, with the
throughput and peak memory of each; where none exists, it says so and exits 0.

    python benchmarks/gpu_check.py            # a few minutes on a GPU, at once without one

The model and data are those of the shipped reference run (trained/gpt-builtin-reference: 4 layers, d_model
128, block 128, the built-in corpus, character tokenizer), with batch 64 so that the GPU has work to do.
Each variant trains STEPS steps through train.Trainer (the same code path as `python train.py --device cuda
--dtype ... --compile ...`) into a temporary folder; tokens/s is the median of the logged rows after the
first (compilation and warm-up happen before it), peak memory is torch.cuda.max_memory_allocated.
"""
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import runs  # noqa: E402
import tools  # noqa: E402
from train import Trainer  # noqa: E402

STEPS, EVERY, BATCH = 300, 50, 64
VARIANTS = {"float32": dict(dtype="float32"), "bfloat16": dict(dtype="bfloat16"),
            "float32 compiled": dict(dtype="float32", compile=True),
            "bfloat16 compiled": dict(dtype="bfloat16", compile=True)}


def main() -> int:
    if not torch.cuda.is_available():
        print(f"no GPU here (torch {torch.__version__}: torch.cuda.is_available() is False); devices: "
              f"{tools.available_devices()}. Nothing to check.")
        return 0
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    cfgs = runs.load_configs(tools.TRAINED / "gpt-builtin-reference")
    print(f"{'variant':20} {'tokens/s':>12} {'peak MiB':>10} {'final val loss':>15}")
    base = None
    for name, fields in VARIANTS.items():
        tcfg = cfgs["train"].__class__(**{**cfgs["train"].to_dict(), "max_iters": STEPS, "eval_interval": EVERY,
                                          "batch_size": BATCH, "device": "cuda", "sample_len": 0, **fields})
        torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            t = Trainer(cfgs["model"], tcfg, Path(tmp) / "run", progress=False, verbose=False).run()
        speed = statistics.median(r["tokens_per_s"] for r in t.rows[2:])
        base = base or speed
        print(f"{name:20} {speed:12,.0f} {torch.cuda.max_memory_allocated() / 2**20:10.1f} "
              f"{t.rows[-1]['val_loss']:15.3f}   ({speed / base:.2f}x float32)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
