"""Memory Mosaics against a GPT of the same parameters and the same tokens: on the built-in corpus, and on
in-context language learning (`--task icll`), with the persistent memory and with the MLP in its place.

    python experiments/memory_mosaics.py                    # every run, one after the other, one thread
    python experiments/memory_mosaics.py --only mm-icll gpt-icll

Each run trains through `train.train` into trained/<name> (a normal run folder). All runs: n_layer 2,
n_head 4, d_model 64, lr 3e-3 (cosine to 3e-4 after 30 warm-up steps), batch 16, seed 1337, one thread; sizes
chosen so that the five runs train in minutes on a shared two-core machine. Built-in corpus: char tokens,
block 128, 400 steps. icll: task_len 8 (strings of 1..8 letters), task_vocab 10, sequences of 128 tokens,
500 steps. Parameter counts are printed (equal within 0.2%).
Paper claim (Zhang et al. 2024, arXiv 2405.06394): Memory Mosaics match a GPT on language modelling and do
better in context; RegBench (Akyurek et al. 2024) is where their later version shows it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools  # noqa: E402
from config import TrainConfig, model_config  # noqa: E402
from train import train  # noqa: E402

MODEL = dict(n_layer=2, n_head=4, d_model=64)
BUILTIN = dict(data="builtin", max_iters=400, eval_interval=100, eval_iters=8, batch_size=16, sample_len=100)
ICLL = dict(task="icll", task_len=8, task_vocab=10, max_iters=500, eval_interval=100, eval_iters=8,
            batch_size=16, sample_len=0)
SEED = 1337

# name -> (arch, model fields, train fields)
RUNS = {
    "gpt-builtin": ("gpt", {**MODEL, "block_size": 128, "tokenizer": "char"}, BUILTIN),
    "mm-builtin": ("memory_mosaics", {**MODEL, "block_size": 128, "tokenizer": "char"}, BUILTIN),
    "gpt-icll": ("gpt", MODEL, ICLL),
    "mm-icll": ("memory_mosaics", MODEL, ICLL),
    "mm-mlp-icll": ("memory_mosaics", {**MODEL, "persistent": "mlp"}, ICLL),
}


def run(name: str) -> None:
    arch, mfields, tfields = RUNS[name]
    tcfg = TrainConfig(seed=SEED, threads=1, **tfields)
    trainer = train(model_config(arch, **mfields), tcfg, out=tools.TRAINED / name, progress=False, verbose=False)
    last = trainer.rows[-1]
    print(f"{name}: {trainer.model.num_params():,} params; " +
          ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_")), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    for name in p.parse_args().only:
        run(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
