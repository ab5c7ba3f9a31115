"""Memory Mosaics against a GPT of the same parameters and the same tokens: on the built-in corpus, and on
in-context language learning (`--task icll`), with the persistent memory and with the MLP in its place.

    python experiments/memory_mosaics.py                    # every run, one after the other, one thread
    python experiments/memory_mosaics.py --only mm-icll gpt-icll

Each run trains through `train.train` into trained/<name> (a normal run folder). The built-in corpus runs use
the shape and training of the shipped `gpt-builtin-reference` (n_layer 4, n_head 4, d_model 128, block 128,
char tokens, 500 steps of batch 32, lr 3e-3 cosine to 3e-4, seed 1337), so `mm-builtin` is compared with that
GPT run as it is. The icll runs: n_layer 2, n_head 4, d_model 64, task_len 8 (strings of 1..8 letters),
task_vocab 10, sequences of 128 tokens, 1,000 steps of batch 32, same optimiser. Parameter counts printed.
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

BUILTIN = dict(n_layer=4, n_head=4, d_model=128, block_size=128, tokenizer="char")
ICLL_MODEL = dict(n_layer=2, n_head=4, d_model=64)
ICLL_TRAIN = dict(task="icll", task_len=8, task_vocab=10, max_iters=1000, eval_interval=200, eval_iters=8,
                  sample_len=0)
SEED = 1337

# name -> (arch, model fields, train fields)
RUNS = {
    "mm-builtin": ("memory_mosaics", {**BUILTIN, "persistent": "pmem"}, {"data": "builtin"}),
    "gpt-icll": ("gpt", ICLL_MODEL, ICLL_TRAIN),
    "mm-icll": ("memory_mosaics", {**ICLL_MODEL, "persistent": "pmem"}, ICLL_TRAIN),
    "mm-mlp-icll": ("memory_mosaics", {**ICLL_MODEL, "persistent": "mlp"}, ICLL_TRAIN),
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
