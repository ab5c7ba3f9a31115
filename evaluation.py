"""Every score of a trained model, in one place: the training loop's validation, a task's metrics, the fixed
yardstick runs are compared on, and the scores an experiment stores in a run folder (evaluation.json).

- `validation_scores(model, batches, task)`: mean loss (and aux terms) over fixed batches, plus the task's
  metrics on a task; what train.py logs every eval_interval steps.
- `task_scores(model, task, batches)`: a task's metrics, by what the task is scored on (`task.scoring`):
  `answers`, greedy answers without teacher forcing (`greedy_answers`), per token and per whole answer;
  `labels`, the class of the highest logit (accuracy, macro precision/recall/F1); `legal`, the teacher-forced
  greedy letter of in-context language learning, legal or not; `sequences`, greedy answers with and without
  the source, and the teacher-forced loss (the HMU patterns). `show_examples` prints a few of the same.
- `evaluate_run(folder)`: the same yardstick for every run: a fixed, seeded set of validation windows of its
  own corpus (`validation_batches`), scored as loss per token, bits per character (two tokenizers' per-token
  losses are not comparable; characters are), top-1/top-5 accuracy; a task run, its task's metrics on seeded
  examples. `loss_by_position`: does more context help?
- `stored_evaluation(folder)`: those scores computed once per weights and kept in the folder.
- `judge(a, b, lower_is_better, margin, claim)`: the verdict on a claim against its baseline, paired by seed:
  the mean difference and its 95% t-interval (`t_interval`) against the metric's margin (`MARGINS`).

Data makes the batches and turns answers into metrics (`data.tasks`, `data.metrics`); this module runs the
model to get the answers. See docs/design.md#data-and-tasks.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import runs
import tools
from data import IGNORE, Batch, Corpus, Records, Stream, digests, task_from_config, without_source
from modules.attention import KVCache


@contextlib.contextmanager
def eval_mode(model):
    """The model in evaluation mode (no dropout) within the block, back in the mode it was in after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


# --- tasks: answers, labels, legal letters, sequences ------------------------------------------------
@torch.no_grad()
def greedy_answers(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy-decode the answer of every example (no teacher forcing): (predicted, true), (B, A) each.

    Decoder-only: the prompt is everything before the first answer target, fed once; each answer token then
    goes through `model.next_logits` with the model's state (the whole sequence is recomputed each step for
    a model that carries none). Encoder-decoder: the source is encoded once (`init_state`, which also
    projects the cross-attention keys and values), and the decoder runs from `<bos>` with its cache."""
    if batch.src is not None:
        start, n = 0, batch.y.shape[1]
        seq, true = batch.x[:, :1], batch.y                     # <bos>
        state = model.init_state(batch.size, batch)
    else:
        answer_mask = batch.y[0] != IGNORE
        start = int(answer_mask.nonzero()[0])      # index in x whose next token is the first answer token
        n, seq, true = int(answer_mask.sum()), batch.x[:, :start + 1], batch.y[:, answer_mask]
        state = model.init_state(batch.size)
    logits = model.next_logits(seq, state)
    for i in range(n):
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)
        if i < n - 1:
            logits = model.next_logits(seq if state is None else seq[:, -1:], state)
    return seq[:, start + 1:], true


def answer_scores(model, task, batches: list[Batch]) -> dict:
    """Greedy answers of every batch (each decoded in its own layout), scored by the task."""
    preds, trues = zip(*(greedy_answers(model, b) for b in batches))
    return task.answer_metrics(torch.cat(preds), torch.cat(trues))


def label_scores(model, task, batches: list[Batch]) -> dict:
    """The class of the highest logit for every example, scored by the task."""
    pred = torch.cat([model(b).logits.argmax(-1) for b in batches])
    return task.label_metrics(pred, torch.cat([b.labels for b in batches]))


def legal_scores(model, task, batches: list[Batch]) -> dict:
    """In-context language learning: is the teacher-forced greedy letter legal at each scored position?"""
    hits, scored = zip(*(task.legal_hits(b, task.letters(model(b).logits)) for b in batches))
    return task.legal_metrics(list(hits), list(scored), batches)


def sequence_scores(model, task, batches: list[Batch]) -> dict:
    """Greedy answers with the right source and with another example's (retention), and the teacher-forced
    loss per answer token (perplexity), scored by the task."""
    preds, trues, blind, nll, count = [], [], [], 0.0, 0
    for b in batches:
        pred, true = greedy_answers(model, b)
        preds.append(pred)
        trues.append(true)
        blind.append(greedy_answers(model, without_source(b))[0])
        n = int((b.y != IGNORE).sum())
        nll, count = nll + float(model.loss(model(b).logits, b.y)) * n, count + n
    return task.sequence_scores(torch.cat(preds), torch.cat(trues), torch.cat(blind), nll / count)


SCORERS = {"answers": answer_scores, "labels": label_scores, "legal": legal_scores, "sequences": sequence_scores}


@torch.no_grad()
def task_scores(model, task, batches: list[Batch]) -> dict:
    """The task's metrics of `model` on `batches` (in evaluation mode), as `task.scoring` says to measure them."""
    with eval_mode(model):
        return SCORERS[task.scoring](model, task, batches)


@torch.no_grad()
def show_examples(model, task, batch: Batch, n: int = 4) -> str:
    """A few examples of `batch` as text with the model's answers (a run's README sample)."""
    with eval_mode(model):
        if task.scoring == "labels":
            return task.show_labels(batch, model(batch).logits.argmax(-1), n)
        if task.scoring == "legal":
            return task.show_legal(batch, task.letters(model(batch).logits), n)
        return task.show_answers(batch, *greedy_answers(model, batch), n)


# --- the training loop's validation -----------------------------------------------------------------
@torch.no_grad()
def validation_scores(model, batches: list[Batch], task=None) -> dict:
    """Mean validation loss (and aux terms) over the fixed batches, plus the task's metrics on a task."""
    with eval_mode(model):
        outs = [model(b) for b in batches]
    row = {"val_loss": sum(o.loss.item() for o in outs) / len(outs), **aux_means(outs, model.aux_terms)}
    if task is not None:
        row.update(task_scores(model, task, batches))
    return row


def aux_means(outs: list, names) -> dict:
    """val_<name>: the mean of each named aux term over the outputs of a set of batches."""
    return {f"val_{name}": sum(o.aux[name].item() for o in outs) / len(outs) for name in names}


ABLATED = ("val_acc", "val_exact")  # the task metrics scored again under each of a model's ablations


@torch.no_grad()
def ablation_scores(model, task, batches: list[Batch]) -> dict:
    """The task's accuracies under each of the model's ablations (`LanguageModel.ablations`: the HMU's latent
    replaced by the prior's mean, `val_acc_z0`, or by another example's, `val_acc_zother`), and the mean of
    each reported aux metric (the HMU's KL, active dimensions and sigma) over the batches."""
    out = {}
    with eval_mode(model):
        metrics = [k for k, kind in model.aux_terms.items() if kind == "metric"]
        if metrics:
            out |= aux_means([model(b) for b in batches], metrics)
        for how in model.ablations:
            with model.ablated(how):
                scores = SCORERS[task.scoring](model, task, batches)
            out |= {f"{k}_{how}": scores[k] for k in ABLATED if k in scores}
    return out


# --- one yardstick for every run: data no training run draws ---------------------------------------
def run_corpus(folder) -> Corpus:
    """The corpus a language-modelling run read, with its own tokenizer."""
    cfgs = runs.load_configs(folder)
    m, t = cfgs["model"], cfgs["train"]
    return (Records if t.records else Corpus).load(t.data, runs.load_tokenizer(folder, m), progress=False)


def training_digests(folder) -> np.ndarray:
    """The digests (`data.tasks.base.digests`) of every example a task run's training drew, replayed from its
    seed: the loop's sampler (`data.make_source`) draws from its own NumPy generator, seeded with the run's
    seed, so drawing again as many batches gives exactly the same examples (one process: no run trained by
    several and saved before held-out examples ships). What a run saved before held-out examples existed
    (TrainConfig.heldout false, whose sampler could draw any example) is never evaluated on."""
    from config import model_class
    from data.source import make_source
    cfgs = runs.load_configs(folder)
    m, t = cfgs["model"], cfgs["train"]
    src, _ = make_source(m, t, model_class(m.arch).batch_layout(), progress=False)
    steps = int(tools.read_log(Path(folder) / "log.csv")[-1]["step"])
    rng, out = np.random.default_rng(t.seed), []
    for i in range(steps * t.grad_accum):
        task = src.stage(i)
        out.append(digests(task.keys(task.draw(t.batch_size, rng, None))))
    return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.uint64)


def validation_batches(folder, n: int = 8, batch_size: int = 16, seed: int = 0, device: str = "cpu",
                       exclude=None) -> list[Batch]:
    """A fixed, seeded set of validation batches from the run's own data: windows of its corpus's validation
    split, or its task's held-out examples (in the layout its model reads), none whose digest is in `exclude`
    (`training_digests`, for a run saved before held-out examples)."""
    from config import model_class
    cfgs = runs.load_configs(folder)
    m, t = cfgs["model"], cfgs["train"]
    if t.task:
        task = task_from_config(t, m.block_size)
        batches = task.val_batches(n, batch_size, seed, model_class(m.arch).batch_layout(), "val", exclude)
    else:
        batches = run_corpus(folder).val_batches(n, batch_size, m.block_size, seed)
    return [b.to(device) for b in batches]


STREAM_ROWS, STREAM_TOKENS = 16, 1 << 17  # the validation text read as 16 streams, its first 131,072 tokens


def validation_stream(folder, rows: int = STREAM_ROWS) -> Stream | None:
    """The run's validation text (its first STREAM_TOKENS) as `rows` streams read window after window
    (fewer rows when the text is short; None when it holds no two windows)."""
    corpus, T = run_corpus(folder), runs.load_configs(folder)["model"].block_size
    rows = min(rows, len(corpus.splits["val"][:STREAM_TOKENS]) // (2 * T + 1))
    return corpus.stream("val", rows, T, STREAM_TOKENS) if rows else None


@torch.no_grad()
def stream_scores(model, stream: Stream, tokenizer, carry: bool | None = None, device: str = "cpu") -> dict:
    """The text of `stream` read in order, every window of every row once: loss per token and bits per
    character. A model that carries a memory (`carries_memory`: Transformer-XL, RMT) hands it from each window
    to the next, as Transformer-XL is evaluated; any other model reads each window alone (a GPT: the text in
    consecutive windows). `carry` False reads every window with a fresh state (the same text, no memory)."""
    carry = model.carries_memory if carry is None else carry
    state, nll, tokens, chars = None, 0.0, 0, 0
    with eval_mode(model):
        for i in range(len(stream)):
            b = stream.batch(i).to(device)
            if carry and state is None:
                state = model.init_state(b.size)
            logits = (model(b, state) if carry else model(b)).logits
            nll += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), b.y.flatten(),
                                                           reduction="sum"))
            tokens += b.y.numel()
            chars += sum(len(tokenizer.decode(row.tolist())) for row in b.y)
    return {"stream_loss": nll / tokens, "stream_bpc": nll / chars / math.log(2)}


@torch.no_grad()
def topk_accuracy(model, batches: list[Batch], ks=(1, 5)) -> dict[int, float]:
    """Teacher-forced top-k next-token accuracy over the non-ignored targets."""
    hits, total = {k: 0 for k in ks}, 0
    for b in batches:
        logits, keep = model(b).logits, b.y != IGNORE
        top = logits.topk(max(ks), dim=-1).indices                      # (B, T, kmax)
        match = (top == b.y[..., None]) & keep[..., None]
        for k in ks:
            hits[k] += int(match[..., :k].any(-1).sum())
        total += int(keep.sum())
    return {k: hits[k] / total for k in ks}


@torch.no_grad()
def loss_by_position(model, batches: list[Batch]) -> torch.Tensor:
    """Mean cross-entropy (nats) at each position of the context, (T,): does more context help?"""
    losses = []
    for b in batches:
        logits = model(b).logits
        losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), b.y, reduction="none"))
    return torch.cat(losses).mean(0)


EVAL_BATCH = {"corpus": 16, "task": 64}  # 8 batches: 128 windows of text, or 512 held-out task examples


@torch.no_grad()
def evaluate_run(folder, n: int = 8, batch_size: int | None = None, seed: int = 0, device: str = "cpu",
                 loaded: tuple | None = None, exclude=None) -> dict:
    """Loss per token, bits per character, top-1/top-5 accuracy on fixed windows of the run's validation
    text, and the same text read in order (`stream_scores`: stream_loss, stream_bpc); a task run: the task's
    own metrics (e.g. greedy per-token and whole-answer accuracy) on held-out examples, none in `exclude`.
    `loaded`: the run's (model, cfgs, tokenizer) when already loaded (runs.load_run)."""
    model, cfgs, tok = loaded or runs.load_run(folder, device=device)
    t, m = cfgs["train"], cfgs["model"]
    batch_size = batch_size or EVAL_BATCH["task" if t.task else "corpus"]
    batches = validation_batches(folder, n, batch_size, seed, device, exclude)
    if t.task:
        task = task_from_config(t, m.block_size)
        return task_scores(model, task, batches) | ablation_scores(model, task, batches)
    with eval_mode(model):
        loss = sum(model(b).loss.item() for b in batches) / len(batches)
    chars = sum(len(tok.decode(row.tolist())) for b in batches for row in b.y)
    tokens = sum(b.y.numel() for b in batches)
    out = {"val_loss": loss, "bpc": loss * tokens / chars / math.log(2)}
    out.update({f"top{k}": v for k, v in topk_accuracy(model, batches).items()})
    stream = validation_stream(folder)
    if stream is not None:
        out.update(stream_scores(model, stream, tok, device=device))
    return out


# --- what a model remembers: the state it carries, how far back it reads --------------------------------
def tensor_bytes(obj) -> int:
    """Bytes of every tensor reachable from a streaming state (lists, attributes, KV caches); of a KV cache,
    the positions it holds, not the spare room of its buffers (which double when full)."""
    if isinstance(obj, KVCache):
        return tensor_bytes([obj.k, obj.v])
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(o) for o in obj)
    if hasattr(obj, "__dict__"):
        return sum(tensor_bytes(v) for v in vars(obj).values())
    return 0


@torch.no_grad()
def state_bytes(model, ids: torch.Tensor) -> int:
    """Bytes of the state `model` carries after reading `ids` (1, T) one token at a time: all it keeps of the
    past to go on (a GPT's KV cache, XL's memory and the cache of its current segment, RMT's memory vectors
    and the same, the running sums and stored keys and values of Memory Mosaics)."""
    with eval_mode(model):
        state = model.init_state(ids.shape[0])
        for t in range(ids.shape[1]):
            model(ids[:, t:t + 1], state)
    return tensor_bytes(state)


@torch.no_grad()
def reach(model, ids: torch.Tensor, other: torch.Tensor, at: int | None = None, tol: float = 1e-5) -> int:
    """How far back the prediction at position `at` (default the last) of `ids` (1, T) reads, measured by
    perturbation: each earlier position p where `other` (1, T) differs from `ids` is changed to `other`'s
    token, one at a time, in one batch; the reach is at - p for the farthest p whose change moves the logits at
    `at` (by more than `tol`), 0 when only its own token does. The whole sequence goes through the model in one
    call, as in training, so a segmented model carries its memory across its segments."""
    at = ids.shape[1] - 1 if at is None else at
    where = [p for p in range(at + 1) if other[0, p] != ids[0, p]]
    rows = ids.repeat(1 + len(where), 1)                                 # (1 + P, T): row 0 untouched
    rows[range(1, len(where) + 1), where] = other[0, where]
    with eval_mode(model):
        logits = model(rows).logits[:, at]                               # (1 + P, V)
    moved = [p for p, d in zip(where, (logits[1:] - logits[:1]).abs().amax(-1)) if d > tol]
    return at - min(moved) if moved else 0


# --- stored in the run folder -----------------------------------------------------------------------
EVALUATION_VERSION = 4  # what stored_evaluation() stores; a stored evaluation of another version is computed again
BY_POSITION_BATCHES = 32


def stored_evaluation(folder: Path, device: str = "cpu", loaded: tuple | None = None) -> dict:
    """The run's scores on held-out data (`evaluate_run`; corpus runs also their loss by position), plus its
    parameters, training seconds, tokens per second and best validation loss of its log (the loop's own
    validation batches, drawn with the run's seed); computed once and kept in folder/evaluation.json with
    the hash of the weights they were computed from (recomputed when the weights change, or when this
    function stores more). What experiments and `python model_comparison.py --eval` read their tables and
    verdicts from; `loaded`: the run's (model, cfgs, tokenizer) on `device`, if already loaded. A task run
    saved before held-out examples existed is evaluated on held-out examples its training did not draw
    (replayed, `training_digests`), and `drawn_in_training` says how many of the plain held-out set it drew."""
    folder = Path(folder)
    path = folder / "evaluation.json"
    stored = tools.load_json(path) if path.exists() else {}
    if not (folder / "model.pt").exists() and stored.get("version") == EVALUATION_VERSION:
        return stored  # a run shipped without its weights: its scores are those of the weights it records
    weights = tools.sha256_of(folder / "model.pt")
    if (stored.get("weights") == weights[:16] and stored.get("version") == EVALUATION_VERSION and "retrain" in stored
            and complete(folder, stored)):  # stored before it kept the retrain command: stored again
        return stored
    loaded = loaded or runs.load_run(folder, device=device)
    t, extra = loaded[1]["train"], {}
    exclude = training_digests(folder) if t.task and not t.heldout else None
    if exclude is not None:
        task = task_from_config(t, loaded[1]["model"].block_size)
        rng, plain = np.random.default_rng(0), []
        for _ in range(8):  # evaluate_run's held-out examples, had nothing been excluded
            plain.append(digests(task.keys(task.draw(EVAL_BATCH["task"], rng, "val"))))
        extra["drawn_in_training"] = int(np.isin(np.concatenate(plain), exclude).sum())
    scores = {k: float(v) for k, v in evaluate_run(folder, device=device, loaded=loaded, exclude=exclude).items()}
    scores |= extra
    if not t.task:
        # 32 x 16 windows: at one position the text of 128 windows varies more than the models do
        with eval_mode(loaded[0]):
            by_position = loss_by_position(loaded[0], validation_batches(folder, n=BY_POSITION_BATCHES,
                                                                         device=device))
        scores["by_position"] = [round(float(v), 5) for v in by_position]
    log = tools.read_log(folder / "log.csv")
    last = log[-1]
    scores.update(params=loaded[0].num_params(), train_s=last["elapsed_s"],
                  tokens_per_s=last["tokens"] / last["elapsed_s"],
                  best_val_loss=min(r["val_loss"] for r in log), weights=weights[:16], weights_sha256=weights,
                  retrain=runs.retrain_command(folder), version=EVALUATION_VERSION)
    tools.save_json(path, scores)
    return scores


def complete(folder: Path, stored: dict) -> bool:
    """Does a stored evaluation hold the scores under every ablation of the run's model (stored before the model
    had them, it does not)?"""
    from config import model_class
    cfgs = runs.load_configs(folder)
    ablations = model_class(cfgs["model"].arch).ablations if cfgs["train"].task else ()
    return all(f"val_acc_{how}" in stored for how in ablations)


# --- verdicts: a claim against its baseline, paired by seed ---------------------------------------

# Two-sided 95% critical values of Student's t (the 0.975 quantile) for 1..30 degrees of freedom.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z_975 = 1.959964  # the normal's 0.975 quantile, the limit of T_975


def t_critical(df: int) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom: the table T_975 up to 30;
    beyond, the Cornish-Fisher expansion z + (z^3 + z)/(4 df) + (5z^5 + 16z^3 + 3z)/(96 df^2) around the
    normal's z, whose error there is below 1e-4 (tests/test_verdicts.py checks both against the t density
    integrated numerically). Not the normal's 1.96 alone: at 31 df that is 0.08 too narrow."""
    if df < 1:
        raise ValueError(f"t_critical needs at least 1 degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def t_interval(diffs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the paired differences and its 95% t-interval, mean ± t * sd / sqrt(n)
    with the sample standard deviation sd and n - 1 degrees of freedom (n >= 2)."""
    n = len(diffs)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 differences, got {n}")
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_critical(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


# metric -> margin: the smallest difference between two architectures a verdict calls one (judge below).
MARGINS: dict[str, float] = {
    # bits per character, lower is better: the sample standard deviation of the GPT baseline's bpc over 5 spare
    # seeds (10..14) no comparison uses (python experiments/margins.py; runs in trained/spread/reference/):
    # a difference smaller than one architecture's own spread over seeds is not a difference between two.
    # Measured at the built-in scale; the tiny-shakespeare scale (experiments/reference.py) is judged with the
    # same margins, decided before its runs were read and not re-measured there.
    # Measured 2026-12-07: 2.231, 2.158, 2.201, 2.192, 2.226 over seeds 10..14, sample standard deviation 0.0291.
    "bpc": 0.029,
    # the same rule for the validation text read in order (stream_scores), from the same runs: 2.197, 2.136,
    # 2.180, 2.168, 2.197, sample standard deviation 0.0253
    "stream_bpc": 0.025,
    # accuracies (fractions, higher is better): two points of accuracy. The evaluation's own noise is smaller
    # for most task metrics: the binomial standard error of a per-token accuracy over N scored tokens is at most
    # 0.5 / sqrt(N), with the stored evaluation's 512 held-out examples (evaluate_run: 8 batches of 64) 0.006 on
    # copy (16 answer tokens an example), 0.008 on reverse (8), 0.007 on hmu_hierarchical (12), 0.003 on icll
    # (about 50,000 scored letters), and 0.022 on retrieval and on whole answers (one score an example), where
    # the margin is about one standard error. The seed-to-seed spread of task runs, which is large, is carried
    # by the t-interval, not here.
    "val_acc": 0.02,
    "val_exact": 0.02,
    "val_legal": 0.02,
}


def margin_for(metric: str) -> float:
    """MARGINS[metric], or a ValueError naming the metric and the known ones (a comparison on a metric without
    a margin fixed in advance has no verdict)."""
    if metric not in MARGINS:
        raise ValueError(f"no margin fixed for metric {metric!r}; known: {', '.join(MARGINS)} (evaluation.MARGINS)")
    return MARGINS[metric]


@dataclass
class Verdict:
    """What judge() says of a claim: the word on the page and the numbers behind it."""
    outcome: str     # the word on the page
    claim: str       # "better" or "matches"
    mean: float      # mean paired difference in the claim's direction: positive = the claimed winner is ahead
    low: float       # the 95% t-interval of that mean (nan with one seed)
    high: float
    margin: float
    seeds: int
    ahead: int       # seeds on which the claimed winner is ahead


CLAIM_KINDS = ("better", "matches")


def judge(a: list[float], b: list[float], lower_is_better: bool, margin: float, claim: str = "better") -> Verdict:
    """The verdict on "a is better than b" (claim "better") or "a matches b" (claim "matches"), from a = the
    claimed winner's scores and b = the baseline's, paired by seed (same index, same seed: the same batches in the
    same order, so a seed's difference cancels what the two runs share). The gains are
    g_i = b_i - a_i when lower is better, a_i - b_i when higher is: positive = the claimed winner is ahead.

    Better: "reproduced" when ahead on every seed and the mean gain is beyond the margin (mean > margin);
    "not reproduced: behind" when behind on every seed and the mean is beyond the margin the other way;
    "not reproduced: no difference" when the whole 95% interval lies within ±margin; otherwise "inconclusive".
    Matches: "reproduced" when the interval lies within ±margin and the claimed winner is not behind on every
    seed ("not reproduced: behind on every seed" when it is); "not reproduced: ahead (better than a match)" or
    "not reproduced: behind" when it is ahead (behind) on every seed with the mean beyond the margin; otherwise
    "inconclusive". Within is inclusive (|x| <= margin), beyond is strict. Behind on every seed is never
    "reproduced". One seed: "one seed: not judged".

    Why a t-interval: three seeds are few, and the t-interval of their mean is wide when they disagree, so
    agreeing seeds are needed to call a difference absent. Why a margin: a difference smaller than the spread
    of one architecture over seeds, or than the evaluation's own noise, is not one to report (MARGINS says how
    each was fixed)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"judge needs paired scores, one per seed on each side: got {len(a)} and {len(b)}")
    if claim not in CLAIM_KINDS:
        raise ValueError(f"claim must be one of {CLAIM_KINDS}, got {claim!r}")
    gains = [(y - x) if lower_is_better else (x - y) for x, y in zip(a, b)]
    n, ahead = len(gains), sum(g > 0 for g in gains)
    if n == 1:
        return Verdict("one seed: not judged", claim, gains[0], math.nan, math.nan, margin, 1, ahead)
    mean, low, high = t_interval(gains)
    every_ahead, every_behind = ahead == n, all(g < 0 for g in gains)
    within = -margin <= low and high <= margin
    if claim == "better":
        outcome = ("reproduced" if every_ahead and mean > margin
                   else "not reproduced: behind" if every_behind and mean < -margin
                   else "not reproduced: no difference" if within
                   else "inconclusive")
    else:
        outcome = ("not reproduced: behind on every seed" if within and every_behind
                   else "reproduced" if within
                   else "not reproduced: ahead (better than a match)" if every_ahead and mean > margin
                   else "not reproduced: behind" if every_behind and mean < -margin
                   else "inconclusive")
    return Verdict(outcome, claim, mean, low, high, margin, n, ahead)
