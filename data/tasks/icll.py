"""In-context language learning (RegBench, Akyurek et al. 2024, arXiv 2401.12973): every example has its own
random finite automaton, which the model must infer from the strings it has read. Memory Mosaics' in-context
claim is measured on it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..batch import DECODER, ENCODER_DECODER, IGNORE, Batch
from .base import SYMBOLS, Task


@dataclass
class LegalBatch(Batch):
    """A batch that also carries, for each target, which tokens would have been legal there (icll)."""
    legal: torch.Tensor | None = None  # (B, T, V) bool aligned with y; all False where a target is not scored


class InContextLanguages(Task):
    """In-context language learning in the manner of RegBench (Akyurek et al. 2024, arXiv 2401.12973): every
    example has its own random finite automaton, and the model must infer it from the strings it has read.

    An automaton has 4-8 states (state 0 starts every string) and uses a random subset of 4..task_vocab of the
    letters; each state has 1-3 outgoing letters, each to a random state. Strings are random walks from state
    0 of 1..task_len letters. An example is one walk of exactly task_len letters (the prompt), `<sep>` (the
    end of that string), then STREAM letters of further walks separated by `|` (the answer; the last string is
    cut). The loss is on the answer. The score, `val_legal`, is teacher-forced: at every answer position whose
    true next token is a letter, is the model's greedy letter (its most likely letter, `|` aside: given that
    the string goes on, which letter?) one that this example's automaton allows from the state reached so
    far? (Counting a predicted `|` as legal would let "always end the string" score well; counting it as
    illegal would punish a model for knowing that strings are short.) `val_legal_first` / `val_legal_last`: the same over the first / last third of
    the answer (in-context learning shows as last > first); `val_chance`: what a uniform guess over the
    task_vocab letters scores on the same positions. An oracle that knows the automaton scores 1.0. n_keys
    does not apply."""
    name = "icll"
    scoring = "legal"  # evaluation.task_scores: teacher-forced greedy letters (see `legal_metrics`)
    LETTERS, SEP = SYMBOLS[:26], "|"
    STATES, MIN_LETTERS, MAX_DEGREE, STREAM = (4, 8), 4, 3, 120

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if not self.MIN_LETTERS <= task_vocab <= len(self.LETTERS):
            raise ValueError(f"icll draws each automaton's letters from task_vocab = {task_vocab} letters: need "
                             f"{self.MIN_LETTERS} <= task_vocab <= {len(self.LETTERS)}")
        super().__init__(task_len, task_vocab, n_keys)
        self.sep_symbol = self.tokenizer.encode(self.SEP)[0]

    def alphabet(self) -> str:
        return self.LETTERS[:self.task_vocab] + self.SEP

    def automaton(self, rng: np.random.Generator) -> np.ndarray:
        """(states, task_vocab) next state for each (state, letter), -1 where the letter is not allowed."""
        n = int(rng.integers(self.STATES[0], self.STATES[1] + 1))
        used = rng.choice(self.task_vocab, size=int(rng.integers(self.MIN_LETTERS, self.task_vocab + 1)),
                          replace=False)
        delta = np.full((n, self.task_vocab), -1)
        for s in range(n):
            out = rng.choice(used, size=int(rng.integers(1, min(self.MAX_DEGREE, len(used)) + 1)), replace=False)
            delta[s, out] = rng.integers(n, size=len(out))
        return delta

    def walk(self, delta: np.ndarray, length: int, rng: np.random.Generator) -> list[int]:
        """A string of `length` letters (indices) from state 0."""
        s, out = 0, []
        for _ in range(length):
            a = int(rng.choice(np.flatnonzero(delta[s] >= 0)))
            out.append(a)
            s = int(delta[s, a])
        return out

    def legal_after(self, delta: np.ndarray, answer: np.ndarray) -> np.ndarray:
        """(A, V) bool: the tokens legal as answer[i], given everything before it (the prompt ended a string);
        all False where answer[i] is `|` (not scored)."""
        legal = np.zeros((len(answer), self.tokenizer.vocab_size), dtype=bool)
        s = 0
        for i, tok in enumerate(answer):
            if tok != self.sep_symbol:
                legal[i, self.first + np.flatnonzero(delta[s] >= 0)] = True
                s = int(delta[s, tok - self.first])
            else:
                s = 0
        return legal

    def generate(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
        """(prompts (n, task_len), answers (n, STREAM), legal (n, STREAM, V), automata)."""
        prompts, answers, legal, automata = [], [], [], []
        for _ in range(n):
            delta = self.automaton(rng)
            stream = []
            while len(stream) < self.STREAM:
                stream += self.walk(delta, int(rng.integers(1, self.task_len + 1)), rng) + [-1]
            answer = np.array([self.sep_symbol if a < 0 else self.first + a for a in stream[:self.STREAM]])
            prompts.append(self.first + np.array(self.walk(delta, self.task_len, rng)))
            answers.append(answer)
            legal.append(self.legal_after(delta, answer))
            automata.append(delta)
        return np.stack(prompts), np.stack(answers), np.stack(legal), automata

    def examples(self, n, rng):
        return self.generate(n, rng)[:2]

    def sample(self, n, rng):
        """Examples with their legal letters and automata (held out by their prompt and answer, `Task.keys`)."""
        return self.generate(n, rng)

    def batch(self, batch_size, rng, layout=DECODER, split="train", exclude=None) -> LegalBatch:
        prompts, answers, legal, _ = self.draw(batch_size, rng, split, exclude)
        prompts, answers = (torch.from_numpy(a.astype(np.int64)) for a in (prompts, answers))
        legal = torch.from_numpy(legal)
        if layout == ENCODER_DECODER:
            bos = torch.full((batch_size, 1), self.tokenizer.bos_id)
            return LegalBatch(x=torch.cat([bos, answers[:, :-1]], dim=1), y=answers, src=prompts, legal=legal)
        sep = torch.full((batch_size, 1), self.tokenizer.sep_id)
        seq = torch.cat([prompts, sep, answers], dim=1)
        x, y = seq[:, :-1], seq[:, 1:].clone()
        P = prompts.shape[1]
        y[:, :P] = IGNORE
        full = torch.zeros(*y.shape, legal.shape[-1], dtype=torch.bool)
        full[:, P:] = legal
        return LegalBatch(x, y, legal=full)

    def metrics(self):
        return ["val_legal", "val_legal_first", "val_legal_last", "val_chance"]

    def letters(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, T) the most likely letter at every position of (B, T, V) teacher-forced `logits`, `|` and
        specials aside."""
        return self.first + logits[..., self.first:self.first + self.task_vocab].argmax(-1)

    def bigram_letters(self, batch: LegalBatch) -> torch.Tensor:
        """(B, T) the letters an in-context bigram counter predicts: after token a, the letter that followed a
        most often so far in this example (a string's start, after `<sep>` or `|`, counts as one token; ties: the
        first seen; nothing seen yet: a itself). The simplest learner in context, a yardstick for models
        (notebook 10): it knows which letters follow which, never the automaton's state."""
        bounds = {self.sep_symbol, self.tokenizer.sep_id}
        pred = torch.zeros_like(batch.x)
        for r, row in enumerate(batch.x.tolist()):
            counts: dict = {}
            for t, tok in enumerate(row):
                seen = counts.setdefault("start" if tok in bounds else tok, {})
                pred[r, t] = max(seen, key=seen.get) if seen else tok
                if t + 1 < len(row) and row[t + 1] not in bounds:
                    seen[row[t + 1]] = seen.get(row[t + 1], 0) + 1
        return pred

    def legal_hits(self, batch: LegalBatch, pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hit, scored), (B, T) bool each: the greedy letter `pred` is legal; the position is scored."""
        scored = batch.legal.any(-1)
        return batch.legal.gather(-1, pred.unsqueeze(-1)).squeeze(-1) & scored, scored

    def legal_metrics(self, hits: list, scored: list, batches: list[LegalBatch]) -> dict:
        """`val_legal` and its first and last thirds, and `val_chance`, from each batch's (hit, scored)."""
        hit, mask = torch.cat(hits), torch.cat(scored)
        chance = torch.cat([b.legal.sum(-1) / self.task_vocab for b in batches])
        cols = mask.any(0).nonzero().squeeze(1)                                  # the answer's positions
        third = max(1, len(cols) // 3)

        def rate(c):
            return float(hit[:, c].sum() / mask[:, c].sum().clamp(min=1))
        return {"val_legal": rate(cols), "val_legal_first": rate(cols[:third]), "val_legal_last": rate(cols[-third:]),
                "val_chance": float(chance[mask].mean())}

    def show_legal(self, batch: LegalBatch, pred: torch.Tensor, n: int = 4) -> str:
        """Each example's answer text, and below it the greedy letters `pred`: the letter where it is legal, `!`
        where it is not, ` ` where the position is not scored."""
        hit, scored = self.legal_hits(batch, pred)
        lines = []
        for i in range(min(n, batch.size)):
            cols = batch.y[i] != IGNORE
            text = self.tokenizer.decode(batch.y[i][cols].tolist())
            marks = "".join(" " if not s else self.tokenizer.decode([int(p)]) if h else "!"
                            for p, h, s in zip(pred[i][cols], hit[i][cols], scored[i][cols]))
            lines += [f"answer {text}", f"greedy {marks}"]
        return "\n".join(lines)
