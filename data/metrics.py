"""Metrics of answers against references, computed from predictions alone (no model is run here):
classification (accuracy, macro precision/recall/F1) and sequences (per-token and whole-answer accuracy,
BLEU-2, ROUGE-2, distinct-2, and the retention the HMU tasks report).
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch


def classification_metrics(pred: torch.Tensor, true: torch.Tensor, n_classes: int) -> dict:
    """Accuracy and macro-averaged precision, recall and F1 (each class weighs the same; a class never
    predicted has precision 0, a class never present recall 0)."""
    p, r, f = [], [], []
    for c in range(n_classes):
        tp = int(((pred == c) & (true == c)).sum())
        predicted, actual = int((pred == c).sum()), int((true == c).sum())
        pc, rc = tp / predicted if predicted else 0.0, tp / actual if actual else 0.0
        p.append(pc)
        r.append(rc)
        f.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return {"val_acc": float((pred == true).float().mean()), "val_precision": sum(p) / n_classes,
            "val_recall": sum(r) / n_classes, "val_f1": sum(f) / n_classes}




def ngrams(row: list, n: int) -> list[tuple]:
    return [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]


def bleu(preds: list[list], refs: list[list], n: int = 2) -> float:
    """Corpus BLEU-n (Papineni et al. 2002), one reference per prediction: the geometric mean of the clipped
    1..n-gram precisions (each summed over the corpus) times the brevity penalty exp(1 - r/c) when the
    predictions are shorter (c) than the references (r). 0 when any precision is 0 (no smoothing)."""
    log_p = 0.0
    for k in range(1, n + 1):
        hit = total = 0
        for p, r in zip(preds, refs):
            pc, rc = Counter(ngrams(p, k)), Counter(ngrams(r, k))
            hit += sum(min(c, rc[g]) for g, c in pc.items())
            total += sum(pc.values())
        if hit == 0:
            return 0.0
        log_p += np.log(hit / total) / n
    c, r = sum(map(len, preds)), sum(map(len, refs))
    return float(np.exp(log_p + (min(0.0, 1 - r / c) if c else -np.inf)))


def rouge_n(preds: list[list], refs: list[list], n: int = 2) -> float:
    """ROUGE-n F1 (Lin 2004), averaged over examples: the n-grams shared (clipped counts) over those of the
    prediction (precision) and of the reference (recall)."""
    scores = []
    for p, r in zip(preds, refs):
        pc, rc = Counter(ngrams(p, n)), Counter(ngrams(r, n))
        hit = sum(min(c, rc[g]) for g, c in pc.items())
        prec, rec = hit / max(1, sum(pc.values())), hit / max(1, sum(rc.values()))
        scores.append(2 * prec * rec / (prec + rec) if hit else 0.0)
    return float(np.mean(scores))


def distinct_n(rows: list[list], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): distinct n-grams over all n-grams of all rows (1 = no n-gram repeats)."""
    grams = [g for row in rows for g in ngrams(row, n)]
    return len(set(grams)) / max(1, len(grams))


def sequence_metrics(pred: torch.Tensor, true: torch.Tensor, blind: torch.Tensor | None = None) -> dict:
    """Metrics of greedy answers pred against true, (N, A) each, every one 1 for a perfect model:
    - acc: per token; exact: per whole answer (chance 1/V and 1/V^A for uniform targets);
    - bleu2, rouge2: BLEU-2 and ROUGE-2 F1 on the answers as token sequences (chance: what independent
      random answers score, > 0 for a small vocabulary: compare with it, not with 0);
    - distinct2: distinct-2 of the predictions over distinct-2 of the true answers (1 = as diverse as the
      data; a model that repeats one answer scores near 0, one that guesses at random can exceed 1);
    - retention (when `blind`, the answers given the wrong example's source, is passed): how much of the
      accuracy the source explains, (acc - acc_blind) / (1 - acc_blind): 0 when the answer ignores the
      source (a model that learned nothing, or any model on hmu_random), 1 when it is perfect with the right
      source and no better than its blind guess without it. The original's "memory retention" measured
      the similarity of the memory to its own input, which is high for an untrained model."""
    hit = pred == true
    p, t = pred.tolist(), true.tolist()
    out = {"acc": float(hit.float().mean()), "exact": float(hit.all(1).float().mean()), "bleu2": bleu(p, t, 2),
           "rouge2": rouge_n(p, t, 2), "distinct2": distinct_n(p, 2) / max(distinct_n(t, 2), 1e-9)}
    if blind is not None:
        acc_blind = float((blind == true).float().mean())
        out["retention"] = (out["acc"] - acc_blind) / (1 - acc_blind) if acc_blind < 1 else 0.0
    return out
