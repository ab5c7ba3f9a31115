"""Speed of the handwritten BPE (tokenizers/bpe.py) against the textbook trainer and Hugging Face.

    python benchmarks/bpe_speed.py          # from the repo root; about a minute; one thread

Prints, measured in this one run (medians of repeats where a repeat is cheap):
1. training to 4096 on the built-in corpus, mnemo's trainer;
2. the textbook trainer (minbpe's loop: recount every pair of the whole text, then rewrite the whole
   text, once per merge; same counting and tie rule, so the same merges). A full run would take many
   minutes, so each step is timed at several points of the run (starting from the text as it is after
   k merges) and the cost of all 3836 steps is integrated from those; a short real run checks the
   estimate;
3. Hugging Face `tokenizers` training the same vocabulary with the same pre-split, if installed
   (benchmark only, never a mnemo dependency). Timed in a subprocess started outside the repo,
   because the repo's own `tokenizers/` folder shadows the package;
4. encoding speed (MB/s of English text, first pass with an empty chunk cache and a warm pass) and
   the token count against two references with the same merges: GPT-2's encoder.py algorithm written
   here, and Hugging Face's BPE model loaded with mnemo's merges.
Targets (the project's issue 3): textbook/mnemo >= 100x, mnemo/HF <= 5x, encoding >= 1 MB/s, same counts.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.update(OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")

from data import builtin_text  # noqa: E402
from tokenizers.bpe import (GPT4_SPLIT_PATTERN, SPECIAL_TOKENS, BPETokenizer, count_chunks,  # noqa: E402
                            get_stats, merge, to_bytes)

VOCAB = 4096


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


# --- Hugging Face, in a subprocess outside the repo -------------------------------------------------
HF_SCRIPT = r'''
import json, statistics, sys, time
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

times = []
for _ in range(3):
    t0 = time.perf_counter(); trained = train(); times.append(time.perf_counter() - t0)

# mnemo's merges in HF's BPE model: bytes are written as GPT-2's printable stand-in characters
byte_char = {b: chr(b) for b in [*range(33, 127), *range(161, 173), *range(174, 256)]}
byte_char.update({b: chr(256 + i) for i, b in enumerate(b for b in range(256) if b not in byte_char)})
as_str = lambda hexes: "".join(byte_char[b] for b in bytes.fromhex(hexes))
vocab = {as_str(h): int(i) for i, h in args["vocab_hex"].items()}
merges = [(as_str(a), as_str(b)) for a, b in args["merges_hex"]]
same = Tokenizer(models.BPE(vocab=vocab, merges=merges))
same.pre_tokenizer = pre()
char_byte = {c: b for b, c in byte_char.items()}
as_hex = lambda s: bytes(char_byte[c] for c in s).hex()
hf_merges = [m.split(" ") if isinstance(m, str) else m for m in json.loads(trained.to_str())["model"]["merges"]]
print(json.dumps({"train_s": statistics.median(times), "hf_vocab": trained.get_vocab_size(),
                  "hf_merges_hex": [(as_hex(a), as_hex(b)) for a, b in hf_merges],
                  "hf_tokens": len(trained.encode(text).ids),
                  "same_merges_ids": same.encode(text).ids}))
'''


def hugging_face(text, tok):
    """Hugging Face's numbers, or None when the package is not installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run([sys.executable, "-c", "import tokenizers"], cwd=tmp, env=env,
                               capture_output=True)
        if probe.returncode:
            return None
        args = Path(tmp) / "args.json"
        args.write_text(json.dumps({
            "text": text, "pattern": GPT4_SPLIT_PATTERN, "vocab": VOCAB, "specials": list(SPECIAL_TOKENS),
            "vocab_hex": {str(i): v.hex() for i, v in enumerate(tok.vocab) if not 256 <= i < 260},
            "merges_hex": [(tok.vocab[a].hex(), tok.vocab[b].hex()) for a, b in tok.merges]}))
        script = Path(tmp) / "hf.py"
        script.write_text(HF_SCRIPT)
        out = subprocess.run([sys.executable, str(script), str(args)], cwd=tmp, env=env,
                             capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


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


def main():
    text = builtin_text()
    mb = len(text.encode("utf-8")) / 1e6
    print(f"built-in corpus: {len(text):,} characters, {mb * 1e3:.0f} KB; one thread; Python {sys.version.split()[0]}")

    t_ours, tok = timed(lambda: BPETokenizer.train(text, VOCAB), repeats=3)
    print(f"\n[1] mnemo trainer to {VOCAB}: {t_ours:.2f} s (median of 3)")

    chunks = [c for c, n in count_chunks(text, GPT4_SPLIT_PATTERN, SPECIAL_TOKENS).items() for _ in range(n)]
    t_book, step = textbook_estimate(tok, chunks)
    n_check = 20
    t_real, pairs = timed(lambda: textbook_run(chunks, n_check, tok.first_merge_id))
    est_real = n_check * (step[0] + (step[250] - step[0]) * n_check / 2 / 250)
    same = pairs == tok.merges[:n_check]
    print(f"[2] textbook trainer, one step: " + ", ".join(f"{s * 1e3:.0f} ms after {k}" for k, s in step.items()))
    print(f"    check: a real textbook run of {n_check} merges took {t_real:.1f} s (estimate {est_real:.1f} s); "
          f"its merges equal mnemo's: {same}")
    print(f"    estimated full textbook run to {VOCAB}: {t_book:.0f} s ({t_book / 60:.1f} min)")
    print(f"    RATIO textbook / mnemo = {t_book / t_ours:.0f}x   (target >= 100x)")

    hf = hugging_face(text, tok)
    if hf is None:
        print("\n[3] Hugging Face `tokenizers` is not installed: ratio skipped (pip install tokenizers)")
    else:
        print(f"\n[3] Hugging Face tokenizers trainer to {hf['hf_vocab']}: {hf['train_s']:.2f} s (median of 3); "
              f"its own merges give {hf['hf_tokens']:,} tokens on the corpus")
        ours = [(tok.vocab[a].hex(), tok.vocab[b].hex()) for a, b in tok.merges]
        theirs = [tuple(m) for m in hf["hf_merges_hex"]]
        agree = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        print(f"    its merges: {len(theirs)}, the same as mnemo's for the first {agree}, "
              f"{len(set(ours) & set(theirs))} pairs in common")
        print(f"    RATIO mnemo / Hugging Face = {t_ours / hf['train_s']:.2f}x   (target <= 5x)")

    fresh = BPETokenizer.load(Path(ROOT, "tokenizers/bpe_builtin.json"))
    t_enc_cold, ids = timed(lambda: fresh.encode(text))
    t_enc, ids = timed(lambda: tok.encode(text), repeats=5)
    print(f"\n[4] encoding with the 4096 vocabulary: first pass (empty chunk cache) "
          f"{mb / t_enc_cold:.1f} MB/s, warm {mb / t_enc:.1f} MB/s (median of 5)   (target >= 1 MB/s)")
    print(f"    {len(ids):,} tokens, {len(text.encode()) / len(ids):.2f} bytes/token; decode(encode) exact: "
          f"{tok.decode(ids) == text}")
    ref = reference_encode(tok, text)
    print(f"    GPT-2 reference encoder with the same merges: {len(ref):,} tokens; ids identical: {ref == ids}")
    if hf is not None:
        print(f"    Hugging Face BPE loaded with the same merges: {len(hf['same_merges_ids']):,} tokens; "
              f"ids identical: {hf['same_merges_ids'] == ids}")


if __name__ == "__main__":
    main()
