"""Speed of the handwritten BPE (tokenizers/bpe.py) against the textbook trainer, tiktoken and Hugging Face.

    python benchmarks/bpe_speed.py                  # from the repo root; about a minute; one thread
    python benchmarks/bpe_speed.py --encode-only    # section 4 alone; about half a minute

The peers are benchmark-only, never mnemo dependencies (not in requirements.txt):
`pip install tiktoken tokenizers`; a peer that is not installed is skipped with a note.

Prints, measured in this one run:
1. training to 4096 on the built-in corpus, mnemo's trainer (median of 3);
2. the textbook trainer (minbpe's loop: recount every pair of the whole text, then rewrite the whole
   text, once per merge; same counting and tie rule, so the same merges). A full run would take many
   minutes, so each step is timed at several points of the run (starting from the text as it is after
   k merges) and the cost of all 3836 steps is integrated from those; a short real run checks the
   estimate;
3. Hugging Face `tokenizers` training the same vocabulary with the same pre-split (median of 3);
4. encoding the built-in corpus with the shipped bpe-4096, in MB/s of UTF-8 text, in interleaved rounds
   (one warm-up round, then ROUNDS timed rounds; the order of the contenders rotates every round):
   - mnemo, first pass: `encode` with an empty chunk cache (the cache is cleared before each round);
   - the same with mnemo's encoder before it was made fast (the textbook merge loop, `TextbookEncoder`);
   - mnemo, warm: every chunk already in the cache (for information);
   - the regex pre-split alone, `split.findall` (for information: the floor of a pure-Python encoder);
   - tiktoken, a `tiktoken.Encoding` built from mnemo's token bytes and the same split pattern (no
     cache: every pass is a first pass);
   - Hugging Face's BPE model loaded with mnemo's merges and the same pre-split, a fresh model each
     round, so its word cache starts empty like mnemo's first pass.
   The ratios are speeds, mnemo / peer, taken within each round (both ran within the same second or
   two): median and min-max over the rounds, beside the ratio of the medians and the within-round
   ratio on CPU time. The ids of tiktoken, of Hugging Face and of GPT-2's encoder.py algorithm
   (written out below) are checked against mnemo's first.
Hugging Face runs in a worker process started outside the repo, because the repo's own `tokenizers/`
folder shadows the package; it times itself and answers one request per round, so it interleaves too.
Targets: issue 3, textbook/mnemo >= 100x, mnemo/HF training <= 5x; issue "Speed where a user waits",
mnemo/tiktoken first pass >= 0.5x with identical ids.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

import tokenizers  # noqa: E402  (mnemo's package: the repo root is first on sys.path)
from data import builtin_text  # noqa: E402
from tokenizers.bpe import (GPT4_SPLIT_PATTERN, SPECIAL_TOKENS, BPETokenizer, count_chunks,  # noqa: E402
                            get_stats, merge, textbook_encode_chunk, to_bytes)

VOCAB = 4096
ROUNDS = 15
ENCODE_TARGET = 0.5  # mnemo / tiktoken, first pass


def timed(f, repeats=1):
    """(median seconds, last result) over `repeats` calls of f()."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# --- the textbook trainer ---------------------------------------------------------------------------
def textbook_step(words, new_id):
    """One merge the textbook way: count every pair of the whole text, then rewrite the whole text."""
    stats = {}
    for w in words:
        get_stats(w, stats)
    pair = min(stats, key=lambda p: (-stats[p], p))  # the same tie rule as mnemo's trainer
    return [merge(w, pair, new_id) for w in words], pair


def textbook_run(chunks, n, first_id):
    """The first n merges of a real textbook run (to check the estimate and the merges)."""
    words, pairs = [list(to_bytes(c)) for c in chunks], []
    for k in range(n):
        words, pair = textbook_step(words, first_id + k)
        pairs.append(pair)
    return pairs


def words_after(tok, chunks, k):
    """Every chunk occurrence of the text as ids after the first k merges of `tok`."""
    cut = tok.cut(tok.first_merge_id + k)
    distinct = {c: cut.encode_chunk(to_bytes(c)) for c in set(chunks)}
    return [distinct[c] for c in chunks]


def textbook_estimate(tok, chunks, stages=(0, 250, 750, 1500, 2500, 3835)):
    """Seconds for all merges of the textbook run: step time measured at `stages`, integrated."""
    n = len(tok.merges)
    step = {}
    for k in stages:
        words = words_after(tok, chunks, k)
        step[k] = timed(lambda: textbook_step(words, tok.first_merge_id + k), repeats=3)[0]
    points = sorted(step)
    total = sum((b - a) * (step[a] + step[b]) / 2 for a, b in zip(points, points[1:]))
    return total * n / points[-1], step


# --- Hugging Face, in a worker process outside the repo ---------------------------------------------
HF_WORKER = r"""
import json, statistics, sys, time
import tokenizers
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
args = json.load(open(sys.argv[1]))
text, pattern = args["text"], args["pattern"]

def pre():
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

def train():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre()
    trainer = trainers.BpeTrainer(vocab_size=args["vocab"], special_tokens=args["specials"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False, min_frequency=0)
    tok.train_from_iterator([text], trainer)
    return tok

# mnemo's merges in HF's BPE model: bytes are written as GPT-2's printable stand-in characters
byte_char = {b: chr(b) for b in [*range(33, 127), *range(161, 173), *range(174, 256)]}
byte_char.update({b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in byte_char)})
char_byte = {c: b for b, c in byte_char.items()}
as_str = lambda hexes: "".join(byte_char[b] for b in bytes.fromhex(hexes))
as_hex = lambda s: bytes(char_byte[c] for c in s).hex()
vocab = {as_str(h): int(i) for i, h in args["vocab_hex"].items()}
merges = [(as_str(a), as_str(b)) for a, b in args["merges_hex"]]

def with_mnemo_merges():
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre()
    return tok

def handle(req):
    if req["do"] == "version":
        return {"version": tokenizers.__version__}
    if req["do"] == "train":
        times = []
        for _ in range(3):
            t0 = time.perf_counter(); trained = train(); times.append(time.perf_counter() - t0)
        hf_merges = [m.split(" ") if isinstance(m, str) else m
                     for m in json.loads(trained.to_str())["model"]["merges"]]
        return {"train_s": statistics.median(times), "hf_vocab": trained.get_vocab_size(),
                "hf_merges_hex": [(as_hex(a), as_hex(b)) for a, b in hf_merges],
                "hf_tokens": len(trained.encode(text).ids)}
    if req["do"] == "encode":  # one first pass: a fresh model, so its word cache starts empty
        tok = with_mnemo_merges()
        w0, c0 = time.perf_counter(), time.process_time()
        ids = tok.encode(text, add_special_tokens=False).ids
        out = {"wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}
        if req.get("ids"):
            out["ids"] = ids
        return out

for line in sys.stdin:
    print(json.dumps(handle(json.loads(line))), flush=True)
"""


class HuggingFace:
    """The worker: `ask(do=...)` sends one request and waits for its answer (one JSON line each way)."""

    def __init__(self, text, tok):
        self.tmp = tempfile.TemporaryDirectory()
        args = Path(self.tmp.name) / "args.json"
        args.write_text(json.dumps({
            "text": text, "pattern": GPT4_SPLIT_PATTERN, "vocab": VOCAB, "specials": list(SPECIAL_TOKENS),
            "vocab_hex": {str(i): v.hex() for i, v in enumerate(tok.vocab) if i not in tok.special_ids.values()},
            "merges_hex": [(tok.vocab[a].hex(), tok.vocab[b].hex()) for a, b in tok.merges]}))
        script = Path(self.tmp.name) / "hf_worker.py"
        script.write_text(HF_WORKER)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.proc = subprocess.Popen([sys.executable, str(script), str(args)], cwd=self.tmp.name, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Hugging Face worker stopped (exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()
        self.tmp.cleanup()


def hugging_face(text, tok):
    """The worker, or None when the package is not installed (checked outside the repo)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run([sys.executable, "-c", "import tokenizers.models"], cwd=tmp, env=env,
                               capture_output=True)
    return None if probe.returncode else HuggingFace(text, tok)


def tiktoken_encoding(tok):
    """tiktoken with mnemo's vocabulary: rank = mnemo's id, the same split pattern; None if not installed."""
    try:
        import tiktoken
    except ImportError:
        return None
    ranks = {b: i for i, b in enumerate(tok.vocab) if i not in tok.special_ids.values()}
    return tiktoken.Encoding("mnemo-" + tok.name, pat_str=tok.pattern, mergeable_ranks=ranks,
                             special_tokens=tok.special_ids)


# --- the reference encoder: GPT-2's encoder.py bpe() on byte strings --------------------------------
def reference_encode(tok, text):
    ranks = {(tok.vocab[a], tok.vocab[b]): r for r, (a, b) in enumerate(tok.merges)}
    id_of = {v: i for i, v in enumerate(tok.vocab) if not 256 <= i < 260}
    cache, out = {}, []
    for chunk in tok.split.findall(text):
        if chunk not in cache:
            word = [bytes([b]) for b in to_bytes(chunk)]
            while len(word) > 1:
                bigram = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float("inf")))
                if bigram not in ranks:
                    break
                i = next(i for i in range(len(word) - 1) if (word[i], word[i + 1]) == bigram)
                word[i:i + 2] = [bigram[0] + bigram[1]]
            cache[chunk] = [id_of[w] for w in word]
        out.extend(cache[chunk])
    return out


class TextbookEncoder(BPETokenizer):
    """mnemo's encoder before it was made fast, for comparison: in each chunk, scan every pair for the
    lowest rank, rebuild the list with that pair merged, start again."""

    def encode_chunk(self, data: bytes) -> list[int]:
        return textbook_encode_chunk(self.ranks, data)


# --- section 4: encoding, interleaved rounds ----------------------------------------------------------
def clock(f):
    """(wall seconds, CPU seconds) of one call of f()."""
    w0, c0 = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w0, time.process_time() - c0


def encoding_contenders(text, tt, hf):
    """name -> a function timing one pass, returning (wall s, CPU s)."""
    first, warm = tokenizers.load(f"bpe-{VOCAB}"), tokenizers.load(f"bpe-{VOCAB}")
    warm.encode(text)
    before = TextbookEncoder(first.merges, first.pattern, first.specials, name=first.name)

    def first_pass(tok):
        tok.cache.clear()
        return clock(lambda: tok.encode(text))

    contenders = {"mnemo first pass": lambda: first_pass(first),
                  "textbook first pass": lambda: first_pass(before),
                  "mnemo warm": lambda: clock(lambda: warm.encode(text)),
                  "pre-split alone": lambda: clock(lambda: first.split.findall(text))}
    if tt is not None:
        contenders["tiktoken"] = lambda: clock(lambda: tt.encode(text))
    if hf is not None:
        contenders["HF tokenizers"] = lambda: tuple(hf.ask(do="encode")[k] for k in ("wall", "cpu"))
    return contenders


def interleaved(contenders, rounds):
    """name -> [(wall, cpu)] over `rounds` timed rounds, after one untimed warm-up round. The order
    rotates by one place every round, so no contender always runs first or after the same one."""
    names = list(contenders)
    times = {n: [] for n in names}
    for r in range(rounds + 1):
        for n in names[r % len(names):] + names[:r % len(names)]:
            t = contenders[n]()
            if r:
                times[n].append(t)
    return times


def spread(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def ratio_line(times, ours, peer, label, target=""):
    """Speed ratio ours / peer: within each round (median, min-max), of the medians, on CPU time."""
    within = [p[0] / o[0] for o, p in zip(times[ours], times[peer])]
    of_medians = statistics.median(t[0] for t in times[peer]) / statistics.median(t[0] for t in times[ours])
    cpu = statistics.median(p[1] / o[1] for o, p in zip(times[ours], times[peer]))
    print(f"    RATIO {label} = {spread(within)} within rounds; ratio of medians {of_medians:.2f}; "
          f"on CPU time {cpu:.2f}{target}")
    return statistics.median(within)


def encoding(text, tt, hf, rounds=ROUNDS):
    """Section 4. Returns the mnemo / tiktoken ratio (None without tiktoken) and whether all ids agree."""
    mb = len(text.encode("utf-8")) / 1e6
    tok = tokenizers.load(f"bpe-{VOCAB}")
    ids = tok.encode(text)
    checks = {"decode(encode) exact": tok.decode(ids) == text,
              "GPT-2 reference algorithm": reference_encode(tok, text) == ids}
    if tt is not None:
        checks["tiktoken"] = tt.encode(text) == ids
    if hf is not None:
        checks["HF tokenizers"] = hf.ask(do="encode", ids=True)["ids"] == ids
    print(f"\n[4] encoding the built-in corpus ({mb:.2f} MB) with bpe-{VOCAB}: {len(ids):,} tokens, "
          f"{mb * 1e6 / len(ids):.2f} bytes/token; {len(tok.split.findall(text)):,} chunks, "
          f"{len(tok.cache):,} distinct")
    print("    ids identical to mnemo's: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    for missing, name in ((tt, "tiktoken"), (hf, "tokenizers")):
        if missing is None:
            print(f"    {name} is not installed: skipped (pip install {name})")
    contenders = encoding_contenders(text, tt, hf)
    what = {"mnemo first pass": "mnemo, encode with an empty chunk cache",
            "textbook first pass": "the same with the textbook merge loop (before)",
            "mnemo warm": "mnemo, every chunk cached (information)",
            "pre-split alone": "mnemo's regex pre-split alone (information)",
            "tiktoken": f"tiktoken {metadata.version('tiktoken')}" if tt else "",
            "HF tokenizers": f"HF tokenizers {hf.ask(do='version')['version']}, fresh model" if hf else ""}
    times = interleaved(contenders, rounds)
    print(f"    MB/s over {rounds} interleaved rounds after 1 warm-up: wall clock median (min-max); CPU time median")
    for name, ts in times.items():
        print(f"      {what[name]:48s} {spread([mb / w for w, _ in ts]):>18s}; "
              f"{statistics.median(mb / c for _, c in ts):.2f}")
    ratio_line(times, "mnemo first pass", "textbook first pass", "mnemo / textbook merge loop, first pass")
    ratio = None
    if tt is not None:
        ratio = ratio_line(times, "mnemo first pass", "tiktoken", "mnemo / tiktoken, first pass",
                           f"   (target >= {ENCODE_TARGET})")
        ratio_line(times, "mnemo warm", "tiktoken", "mnemo warm / tiktoken (information)")
    if hf is not None:
        ratio_line(times, "mnemo first pass", "HF tokenizers", "mnemo / HF tokenizers, first pass")
    return ratio, all(checks.values())


def training(text, hf):
    """Sections 1-3: mnemo's trainer, the textbook estimate, Hugging Face's trainer."""
    t_ours, tok = timed(lambda: BPETokenizer.train(text, VOCAB), repeats=3)
    print(f"\n[1] mnemo trainer to {VOCAB}: {t_ours:.2f} s (median of 3); "
          f"the same merges as the shipped file: {tok.merges == tokenizers.load(f'bpe-{VOCAB}').merges}")

    chunks = [c for c, n in count_chunks(text, GPT4_SPLIT_PATTERN, SPECIAL_TOKENS).items() for _ in range(n)]
    t_book, step = textbook_estimate(tok, chunks)
    n_check = 20
    t_real, pairs = timed(lambda: textbook_run(chunks, n_check, tok.first_merge_id))
    est_real = n_check * (step[0] + (step[250] - step[0]) * n_check / 2 / 250)
    same = pairs == tok.merges[:n_check]
    print("[2] textbook trainer, one step: " + ", ".join(f"{s * 1e3:.0f} ms after {k}" for k, s in step.items()))
    print(f"    check: a real textbook run of {n_check} merges took {t_real:.1f} s (estimate {est_real:.1f} s); "
          f"its merges equal mnemo's: {same}")
    print(f"    estimated full textbook run to {VOCAB}: {t_book:.0f} s ({t_book / 60:.1f} min)")
    print(f"    RATIO textbook / mnemo = {t_book / t_ours:.0f}x   (target >= 100x)")

    if hf is None:
        print("\n[3] Hugging Face `tokenizers` is not installed: ratio skipped (pip install tokenizers)")
        return
    r = hf.ask(do="train")
    print(f"\n[3] Hugging Face tokenizers trainer to {r['hf_vocab']}: {r['train_s']:.2f} s (median of 3); "
          f"its own merges give {r['hf_tokens']:,} tokens on the corpus")
    ours = [(tok.vocab[a].hex(), tok.vocab[b].hex()) for a, b in tok.merges]
    theirs = [tuple(m) for m in r["hf_merges_hex"]]
    agree = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    print(f"    its merges: {len(theirs)}, the same as mnemo's for the first {agree}, "
          f"{len(set(ours) & set(theirs))} pairs in common")
    print(f"    RATIO mnemo / Hugging Face = {t_ours / r['train_s']:.2f}x   (target <= 5x)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encode-only", action="store_true", help="section 4 alone (encoding speed)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timed rounds of section 4")
    args = parser.parse_args()
    text = builtin_text()
    mb = len(text.encode("utf-8")) / 1e6
    print(f"built-in corpus: {len(text):,} characters, {mb * 1e3:.0f} KB; one thread; Python {sys.version.split()[0]}; "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}; load average {os.getloadavg()[0]:.1f}")
    shipped = tokenizers.load(f"bpe-{VOCAB}")
    tt, hf = tiktoken_encoding(shipped), hugging_face(text, shipped)
    try:
        if not args.encode_only:
            training(text, hf)
        ratio, same_ids = encoding(text, tt, hf, args.rounds)
    finally:
        if hf is not None:
            hf.close()
    shown = "skipped (tiktoken not installed)" if ratio is None else f"{ratio:.2f}"
    print(f"RESULT bpe_encode ratio={shown} (target >= {ENCODE_TARGET}) identical_ids={same_ids}")


if __name__ == "__main__":
    main()
