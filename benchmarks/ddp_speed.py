"""Two processes under torchrun (DistributedDataParallel, gloo) against one process, on this machine's CPUs.

    python benchmarks/ddp_speed.py            # a few minutes; each process pinned to one thread

Both train mnemo's default GPT on the built-in corpus with batch_size 32 per process (so the two-process run
sees a global batch of 64: twice the tokens per step), for STEPS steps, ROUNDS times alternately. tokens/s is
the run's training throughput logged in log.csv (evaluation excluded), the median of its rows after the first;
the ratio (2 processes / 1) is taken within each round and its median, min and max are printed. 2.0 would be
perfect scaling; the gradient all-reduce and the machine's other load take their share.
"""
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools  # noqa: E402

STEPS, ROUNDS = 60, 3
ARGS = ["--max_iters", STEPS, "--eval_interval", 20, "--eval_iters", 2, "--sample_len", 0, "--progress", "false",
        "--batch_size", 32]


def tokens_per_s(out: Path) -> float:
    return statistics.median(r["tokens_per_s"] for r in tools.read_log(out / "log.csv")[2:])


def train(out: Path, processes: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run",
                                                        "--standalone", f"--nproc_per_node={processes}"]
    r = subprocess.run([*launcher, "train.py", "--out", str(out), *map(str, ARGS)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"training with {processes} process(es) failed:\n{r.stderr[-2000:]}")
    return tokens_per_s(out)


def main() -> int:
    print(f"CPUs: {os.cpu_count()}; {STEPS} steps a run, batch 32 per process")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(ROUNDS):
            order = (1, 2) if i % 2 == 0 else (2, 1)
            speed = {n: train(Path(tmp) / f"r{i}-{n}", n) for n in order}
            ratios.append(speed[2] / speed[1])
            print(f"round {i + 1}: 1 process {speed[1]:,.0f} tokens/s, 2 processes {speed[2]:,.0f} tokens/s, "
                  f"ratio {ratios[-1]:.2f}", flush=True)
    print(f"2 processes / 1: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
