"""Generation: greedy, temperature, top-k, top-p, min-p sampling and beam search, with the model's streaming
state (a KV cache for GPT, the memory for segment-recurrent models) or by recomputation.

    python inference.py trained/<run> --prompt "The " --max_new_tokens 200 --temperature 0.8 --top_k 50
    python inference.py trained/<finetuned run> --prompt ""     # one record from <bos>, up to its <eos>
    python inference.py trained/<classifier run> --prompt "a fine film"   # its label, with the probability

Sampling filters, applied in this order to the last position's logits:
- temperature T: logits / T; T = 0 means greedy (argmax);
- top-k: keep the k most likely tokens;
- top-p (nucleus, Holtzman et al. 2019): keep the smallest set whose probability reaches p;
- min-p: keep tokens whose probability is at least min_p times the most likely one's.

Every sampling argument is checked in one place, `check_sampling` (used by `generate` and the command line):
a bad value raises `SamplingError` naming it and its valid range. `generate(..., on_text=print)` streams the
text of a single prompt as it is generated (the command line does), holding back only the bytes of a
character not yet complete. Prompts are encoded as plain text (a `<eos>` typed in a prompt is text); a
prompt character the tokenizer has no token for is read as `<unk>`, and one warning names every such
character. Generation stops at `<eos>` and never draws a token that stands for no text of its own (the
tokenizer's `never_generated`: `<pad>`, `<sep>`, `<bos>`, a character tokenizer's `<unk>`): their logits are
set to -inf before any filter, in greedy decoding, sampling and beam search alike.
An empty prompt starts from `<bos>` alone: a model finetuned on records (`train.py --records true`, each
record `<bos> record <eos>`) then writes a record from scratch and stops at its end; `bos=True` puts `<bos>`
before every prompt, as those records were trained (the command line does so for a run trained on records).

A classifier (a run of `train.py --task classify`, or `majority`) generates nothing: `classify` gives each text's labels
with their probabilities, most likely first, the text read as training read its examples and cut to the
model's block_size (the longest example it was trained on); a sentence pair is the two texts separated by a
tab. The command line prints the most likely label of each prompt with its probability, then the next two;
the sampling flags do not apply.

Context: a model with a fixed window (`model.max_context`, the block size for GPT) sees at most that many
tokens. Without the cache each step recomputes the last window; with the cache, when the cache is full it is
rebuilt from the last half window (so cached and uncached outputs agree exactly within the window, and
both stay valid beyond it). Prompts of different lengths are batched by length.
"""
from __future__ import annotations

import math
import numbers
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from data import classification_batch, classify_ids
from modules import ENCODER_DECODER, Batch


class SamplingError(ValueError):
    """A sampling argument out of its valid range; the message names the argument, the value and the range."""


class UnknownCharactersWarning(UserWarning):
    """A prompt holds characters the tokenizer has no token for: they were read as `<unk>`."""


def _integer(low):
    return lambda v: not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= low


def _real(ok):
    return lambda v: not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v) and ok(v)


# name -> (is a value valid, what is valid): check_sampling's messages and the command line's help both say it
SAMPLING_ARGS = {
    "max_new_tokens": (_integer(0), "an integer >= 0: the number of tokens to generate"),
    "temperature": (_real(lambda v: v >= 0), "a finite number >= 0: 0 = greedy, 1 = the model's distribution, "
                                             "higher = more random"),
    "top_k": (_integer(0), "an integer >= 0: keep the k most likely tokens; 0 = off"),
    "top_p": (_real(lambda v: 0 < v <= 1), "a number in (0, 1]: keep the most likely tokens whose probability "
                                           "adds up to p; 1 = off"),
    "min_p": (_real(lambda v: 0 <= v <= 1), "a number in [0, 1]: keep tokens at least min_p times as likely as "
                                            "the best one; 0 = off"),
    "beams": (_integer(1), "an integer >= 1: 1 = sampling, more = beam search with that many beams"),
}


def check_sampling(max_new_tokens: int = 100, temperature: float = 1.0, top_k=None, top_p=None, min_p=None,
                   beams: int = 1) -> None:
    """Raise SamplingError for the first argument that is not valid (None means off for top_k/top_p/min_p)."""
    given = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                 beams=beams)
    for name, v in given.items():
        valid, what = SAMPLING_ARGS[name]
        if not (v is None and name in ("top_k", "top_p", "min_p") or valid(v)):
            raise SamplingError(f"{name} = {v!r} is not valid: use {what}")
    if beams > 1:
        used = [n for n, v, off in (("top_k", top_k, 0), ("top_p", top_p, 1), ("min_p", min_p, 0))
                if v is not None and v != off]
        if used:
            raise SamplingError(f"{', '.join(used)} apply to sampling, but beams = {beams} asks for beam search, "
                                f"which does not sample: leave {', '.join(used)} out, or use beams = 1")


def filter_logits(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  min_p: float | None = None):
    """(B, V) logits -> (B, V) logits with the filtered-out tokens at -inf, scaled by temperature."""
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:  # None or 0: off
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches p
        logits = logits.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), float("-inf"))
    if min_p is not None and min_p > 0:
        probs = logits.softmax(-1)
        logits = logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, float("-inf"))
    return logits


def ban(logits, banned=()):
    """(B, V) logits with the ids in `banned` at -inf, so that neither sampling nor argmax picks them."""
    if not banned:
        return logits
    return logits.index_fill(-1, torch.tensor(list(banned), device=logits.device), float("-inf"))


def next_token(logits, temperature, top_k, top_p, min_p, generator, banned=()):
    """(B, V) logits -> (B, 1) chosen ids, never one of `banned`."""
    logits = ban(logits, banned)
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = filter_logits(logits.float(), temperature, top_k, top_p, min_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


class Stepper:
    """Feeds a growing sequence to the model and returns the next-token logits, with the model's state (a KV
    cache, a memory) or by recomputation. It asks the model for its next-token step (`next_logits`) and
    reads its capabilities, so it serves decoders and encoder-decoders alike: for an encoder-decoder,
    `source` (a Batch with `src`, `src_mask`) is encoded when a state is made. A model whose `init_state`
    gives None carries nothing between calls, so it is always recomputed."""

    def __init__(self, model, use_cache: bool, source=None):
        self.model, self.window = model, model.max_context
        self.use_cache, self.source = use_cache, source
        self.needs_source = ENCODER_DECODER in model.capabilities
        self.state = None

    def first(self, seq):
        return self.prefill(seq) if self.use_cache else self.recompute(seq)

    def fresh_state(self, batch_size: int):
        source = self.source
        if source is not None and source.size != batch_size:  # beams of one prompt share its source
            source = Batch(src=source.src.expand(batch_size, -1),
                           src_mask=None if source.src_mask is None else source.src_mask.expand(batch_size, -1))
        return self.model.init_state(batch_size, source)

    def prefill(self, seq):
        """A fresh state fed with the last window of seq."""
        self.state = self.fresh_state(seq.shape[0])
        if self.state is None:
            self.use_cache = False
            return self.recompute(seq)
        return self.model.next_logits(self.context(seq), self.state)

    def recompute(self, seq):
        state = self.fresh_state(seq.shape[0]) if self.needs_source else None
        return self.model.next_logits(self.context(seq), state)

    def context(self, seq):
        return seq if self.window is None else seq[:, -self.window:]

    def step(self, seq):
        """seq already holds the newest token."""
        if not self.use_cache:
            return self.recompute(seq)
        if self.window is not None and len(self.state) >= self.window:
            return self.prefill(seq[:, -(self.window // 2):])  # cache full: rebuild from the last half window
        return self.model.next_logits(seq[:, -1:], self.state)


@torch.no_grad()
def generate_ids(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
                 min_p=None, eos_id: int | None = None, use_cache: bool = True, generator=None, source=None,
                 on_token=None, banned=()):
    """ids (B, T) -> (B, T + n) continued; a row that produced `eos_id` is padded with it from then on.
    Stops early once every row has finished. source: what an encoder-decoder reads (a Batch with src).
    `on_token`, if given, is called with each new (B, 1) column. No id in `banned` is ever chosen (`generate`
    bans the tokenizer's `never_generated`)."""
    model.eval()
    stepper, (B, T) = Stepper(model, use_cache, source), ids.shape
    seq = ids.new_empty(B, T + max_new_tokens)  # written in place: no growing copy of the sequence per token
    seq[:, :T] = ids
    done = torch.zeros(B, 1, dtype=torch.bool, device=ids.device)
    logits = stepper.first(ids)
    for n in range(T, T + max_new_tokens):
        nxt = next_token(logits, temperature, top_k, top_p, min_p, generator, banned)
        if eos_id is not None:
            nxt = nxt.masked_fill(done, eos_id)
            done |= nxt == eos_id
        seq[:, n:n + 1] = nxt
        if on_token is not None:
            on_token(nxt)
        # reading `done` makes the host wait for the device: only when there is an eos to wait for
        if n == T + max_new_tokens - 1 or (eos_id is not None and bool(done.all())):
            return seq[:, :n + 1]
        logits = stepper.step(seq[:, :n + 1])
    return seq[:, :T]


@torch.no_grad()
def beam_search(model, ids, beams: int = 4, max_new_tokens: int = 50, length_penalty: float = 1.0,
                eos_id: int | None = None, source=None, banned=()):
    """The most likely continuation of ids (1, T) under beam search: (1, T + n), with no id of `banned`.

    Beams are scored by summed log-probability / (length ** length_penalty); a beam that emits eos_id
    is finished and kept aside. Each step recomputes the sequence (no cache), so it works for every model."""
    if ids.shape[0] != 1:
        raise ValueError(f"beam_search takes one prompt (got a batch of {ids.shape[0]}); loop over prompts")
    if max_new_tokens < 1:
        return ids
    model.eval()
    stepper = Stepper(model, use_cache=False, source=source)
    alive, scores, finished = ids, torch.zeros(1, device=ids.device), []
    for n in range(1, max_new_tokens + 1):
        logp = ban(stepper.recompute(alive).float(), banned).log_softmax(-1)  # (beams, V)
        cand = (scores[:, None] + logp).flatten()
        top = cand.topk(min(beams, cand.numel())).indices
        rows, toks = top // logp.shape[-1], top % logp.shape[-1]
        alive, scores = torch.cat([alive[rows], toks[:, None]], dim=1), cand[top]
        if eos_id is not None:
            ended = toks == eos_id
            finished += [(s.item() / n ** length_penalty, seq) for s, seq in zip(scores[ended], alive[ended])]
            alive, scores = alive[~ended], scores[~ended]
            if len(alive) == 0:
                break
    finished += [(s.item() / (alive.shape[1] - ids.shape[1]) ** length_penalty, seq)
                 for s, seq in zip(scores, alive)]
    return max(finished, key=lambda f: f[0])[1][None]


class TextStream:
    """Generated ids of one sequence -> text pieces, written as they arrive (`write(piece)`), stopping at
    `eos_id`. A token that ends inside a multi-byte character (BPE) is held back until the character is
    whole, so the pieces join to exactly the text `generate` returns."""

    def __init__(self, tokenizer, write, eos_id: int | None = None):
        self.tokenizer, self.write, self.eos_id = tokenizer, write, eos_id
        self.ids, self.sent, self.done = [], 0, False

    def __call__(self, column) -> None:
        if self.done:
            return
        i = int(column[0, 0])
        if i == self.eos_id:
            self.done = True
            return
        self.ids.append(i)
        text = self.tokenizer.decode_generated(self.ids)
        if not text.endswith("\ufffd"):  # U+FFFD at the end: maybe a character whose next bytes are coming
            self.flush(text)

    def flush(self, text: str | None = None) -> None:
        text = self.tokenizer.decode_generated(self.ids) if text is None else text
        if len(text) > self.sent:
            self.write(text[self.sent:])
            self.sent = len(text)


def generate(model, tokenizer, prompt, max_new_tokens: int = 100, temperature: float = 1.0, top_k=None,
             top_p=None, min_p=None, beams: int = 1, use_cache: bool = True, stop_at_eos: bool = True,
             seed: int | None = None, on_text=None, bos: bool = False):
    """Continue `prompt` (a string, or a list of strings) and return the new text (a string, or a list).
    For an encoder-decoder the prompt is the source text, and the decoder writes from `<bos>`. A decoder
    starts from `<bos>` when the prompt is empty, and before every prompt when `bos` (a run trained on records).

    The arguments are checked first (`check_sampling`). `on_text`: a function called with each piece of new
    text as it is generated (e.g. `print` with `end="", flush=True`); for a single prompt string, beams = 1.
    Prompt characters the tokenizer has no token for are read as `<unk>`, with one UnknownCharactersWarning
    naming them; no token of `tokenizer.never_generated` (`<pad>`, `<sep>`, `<bos>`, `<unk>`) is ever drawn."""
    check_sampling(max_new_tokens, temperature, top_k, top_p, min_p, beams)
    if getattr(model, "classifies", False):
        raise ValueError("the model is a classifier: its head gives class logits, not next-token ones, so it "
                         "generates nothing; use classify(model, tokenizer, texts, labels)")
    if on_text is not None and not (isinstance(prompt, str) and beams == 1):
        raise SamplingError("on_text streams one prompt sampled token by token: give a single prompt string "
                            "and beams = 1")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    unknown = sorted(set().union(*(tokenizer.unknown_chars(p) for p in prompts)))
    if unknown:
        warnings.warn(f"the prompt holds characters the tokenizer {tokenizer.name!r} has no token for: "
                      f"{', '.join(map(repr, unknown))}; the model reads each as <unk>", UnknownCharactersWarning,
                      stacklevel=2)
    device = next(model.parameters(), torch.empty(0)).device  # where the model lives (a stand-in: cpu)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None
    eos, banned = tokenizer.eos_id if stop_at_eos else None, tokenizer.never_generated
    if ENCODER_DECODER in model.capabilities:
        encoded = [[tokenizer.bos_id] for _ in prompts]
        sources = [torch.tensor([tokenizer.encode_ordinary(p)], device=device) for p in prompts]
    else:
        start = [tokenizer.bos_id] if bos else []
        encoded = [start + tokenizer.encode_ordinary(p) or [tokenizer.bos_id] for p in prompts]
    stream = TextStream(tokenizer, on_text, eos) if on_text is not None else None
    outputs: list[str | None] = [None] * len(prompts)
    for length in sorted({len(e) for e in encoded}):
        idx = [i for i, e in enumerate(encoded) if len(e) == length]
        ids = torch.tensor([encoded[i] for i in idx], device=device)
        if ENCODER_DECODER in model.capabilities:  # one source at a time: sources differ in length
            new = [(beam_search(model, ids[j:j + 1], beams, max_new_tokens, eos_id=eos, source=Batch(src=sources[i]),
                                banned=banned)
                    if beams > 1 else generate_ids(model, ids[j:j + 1], max_new_tokens, temperature, top_k, top_p,
                                                   min_p, eos, use_cache, generator, Batch(src=sources[i]),
                                                   on_token=stream, banned=banned))[0]
                   for j, i in enumerate(idx)]
        elif beams > 1:
            new = [beam_search(model, ids[j:j + 1], beams, max_new_tokens, eos_id=eos, banned=banned)[0]
                   for j in range(len(idx))]
        else:
            new = generate_ids(model, ids, max_new_tokens, temperature, top_k, top_p, min_p, eos, use_cache,
                               generator, on_token=stream, banned=banned)
        for i, row in zip(idx, new):
            toks = row[length:].tolist()
            if eos is not None and eos in toks:
                toks = toks[:toks.index(eos)]
            outputs[i] = tokenizer.decode_generated(toks)
    if stream is not None:
        stream.flush()
    return outputs[0] if isinstance(prompt, str) else outputs


class Prediction(NamedTuple):
    """A classified text: `ranked`, every (label, probability), most likely first; `cut`, how many tokens at
    its end the model did not read (0: it read the whole text)."""
    ranked: list
    cut: int


@torch.no_grad()
def classify(model, tokenizer, texts, labels: list[str], pairs: bool = False):
    """The labels of `texts` (a string, or a list of strings) under a classifier: a Prediction, or a list.
    A text is read as training read its examples (`data.classify_ids`: characters, `text <sep> pair` for a
    pair) and cut to the model's block_size; with `pairs` (a run trained on sentence pairs) each text holds
    the two texts separated by a tab. `labels`: the name of each class id (`runs.load_labels`)."""
    if not getattr(model, "classifies", False):
        raise ValueError("the model has a language-model head, not a classification one: use generate()")
    one = isinstance(texts, str)
    rows = []
    for text in [texts] if one else texts:
        if pairs and "\t" not in text:
            raise ValueError(f"{text!r} is one text, and the model classifies sentence pairs: give the two "
                             f"texts separated by a tab, e.g. 'first text\\tsecond text'")
        rows.append(classify_ids(tokenizer, *text.split("\t", 1)) if pairs else classify_ids(tokenizer, text))
    limit = model.cfg.block_size
    batch = classification_batch([r[:limit] for r in rows], tokenizer.pad_id, layout=model.batch_layout())
    device = next(model.parameters()).device
    probs = model.eval()(batch.to(device)).logits.float().softmax(-1).cpu()
    out = [Prediction([(labels[k], float(p[k])) for k in p.argsort(descending=True)], max(0, len(r) - limit))
           for r, p in zip(rows, probs)]
    return out[0] if one else out


def training_note(folder, which: str) -> str:
    """For a run a live process is still training ('' otherwise): a one-line note that what is read are the
    latest weights it saved, and of which step (the last row of its log, written just before them)."""
    from runs import run_status
    from tools import read_log
    if run_status(folder) != "training":
        return ""
    step = read_log(Path(folder) / "log.csv")[-1]["step"]
    weights = f"model.pt of step {step}" if which == "model" else f"best_model.pt, the best up to step {step}"
    return f"note: {folder} is still being trained; this reads the latest weights it saved, {weights}"


def main(argv=None) -> int:
    from runs import find_run, load_labels, load_run
    from tools import ArgParser, set_threads
    p = ArgParser(prog="inference.py", description="Generate text from a trained run folder, or classify texts "
                                                   "with a classifier run.")
    p.add_argument("run", help="run folder (a path, or a name under trained/), e.g. trained/gpt-builtin-reference")
    p.add_argument("--prompt", action="append", help="prompt text (repeat the flag for a batch); \"\" starts from "
                                                     "<bos> alone; default: a newline, or \"\" for a run trained "
                                                     "on records")
    for name, kind, default in (("max_new_tokens", int, 200), ("temperature", float, 0.8), ("top_k", int, None),
                                ("top_p", float, None), ("min_p", float, None), ("beams", int, 1)):
        p.add_argument(f"--{name}", type=kind, default=default,  # the valid values as check_sampling states them
                       help=f"{SAMPLING_ARGS[name][1]} (default: {'off' if default is None else default})")
    p.add_argument("--no_cache", action="store_true", help="recompute every step instead of the KV cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--best", action="store_true", help="use best_model.pt instead of model.pt")
    p.add_argument("--bos", choices=("true", "false"), help="start every prompt with <bos> (default: true for a run "
                                                           "trained on records, whose records start so)")
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:N or mps "
                                                    "(default: auto)")
    a = p.parse_args(argv)
    try:  # before loading anything: a typo in a flag costs nothing
        check_sampling(a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.min_p, a.beams)
    except SamplingError as e:
        p.error(f"--{e}")
    set_threads(1)
    try:
        model, cfgs, tok = load_run(a.run, "best_model" if a.best else "model", device=a.device)
        labels = load_labels(a.run, cfgs["model"].n_classes) if model.classifies else None
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    note = training_note(find_run(a.run), "best_model" if a.best else "model")
    if note:
        print(note, file=sys.stderr)
    if model.classifies:
        return print_labels(p, a, model, cfgs, tok, labels)
    records = cfgs["train"].records
    prompts = a.prompt or ["" if records else "\n"]
    kw = dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
              min_p=a.min_p, beams=a.beams, use_cache=not a.no_cache, seed=a.seed,
              bos=records if a.bos is None else a.bos == "true")
    with warnings.catch_warnings():  # a prompt's unknown characters: one line on stderr, before any text
        warnings.showwarning = lambda message, *_: print(f"inference.py: warning: {message}", file=sys.stderr)
        if len(prompts) == 1 and a.beams == 1:  # one prompt: stream the text as it comes
            unsent = [prompts[0]]  # the prompt goes out with the first piece, after a warning if there is one

            def write(piece):
                print(*unsent, piece, sep="", end="", flush=True)
                unsent.clear()

            generate(model, tok, prompts[0], on_text=write, **kw)
            print(*unsent, "\n" + "-" * 40, sep="")
            return 0
        for prompt, out in zip(prompts, generate(model, tok, prompts, **kw)):
            print(prompt + out)
            print("-" * 40)
    return 0


def print_labels(parser, args, model, cfgs, tokenizer, labels: list[str]) -> int:
    """The command line on a classifier: each prompt, its most likely label with its probability, then the
    next two."""
    if not args.prompt:
        parser.error(f"{args.run} is a classifier (labels {labels}): give the text to classify with --prompt TEXT "
                     f"(repeat the flag for several)")
    try:
        predictions = classify(model, tokenizer, args.prompt, labels, pairs=bool(cfgs["train"].text_pair_column))
    except ValueError as e:
        parser.error(f"--prompt {e}")
    for prompt, (ranked, cut) in zip(args.prompt, predictions):
        (label, prob), *others = ranked
        then = ", ".join(f"{name} ({q:.3f})" for name, q in others[:2])
        print(f"{prompt} -> {label} ({prob:.3f})" + (f"; then {then}" if then else ""))
        if cut:
            print(f"  (its last {cut} tokens were not read: the model reads {model.cfg.block_size} at most, the "
                  f"longest example it was trained on)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
