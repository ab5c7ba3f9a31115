"""The RMT paper's tasks (Bulatov et al. 2022, arXiv 2207.06881, section 4): copy, reverse, associative
retrieval and quadratic equations with the worked solution. Each is scored by greedy answer accuracy
(`Task.answer_metrics`); each can shrink (`Task.smaller`: quadratic equations by cutting the worked solution
short), which the curriculum over the number of segments uses (`data.tasks.curriculum_stages`).
"""
from __future__ import annotations

import numpy as np

from .base import SYMBOLS, Task


class Copy(Task):
    """`X <sep> X X`: the answer is the prompt twice (RMT paper's copy task, 2n answer tokens)."""
    name = "copy"
    size_field = "task_len"

    def examples(self, n, rng):
        x = rng.integers(self.first, self.first + self.task_vocab, size=(n, self.task_len))
        return x, np.concatenate([x, x], axis=1)


class Reverse(Task):
    """`X <sep> rev(X)`: the prompt backwards (RMT paper's reverse task)."""
    name = "reverse"
    size_field = "task_len"

    def examples(self, n, rng):
        x = rng.integers(self.first, self.first + self.task_vocab, size=(n, self.task_len))
        return x, x[:, ::-1].copy()


class TextTask(Task):
    """A task whose examples are written as strings over its alphabet, then encoded."""

    def texts(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        """(prompts, answers) as text; all prompts of one length, all answers of one length."""
        raise NotImplementedError

    def examples(self, n, rng):
        prompts, answers = self.texts(n, rng)
        encode = self.tokenizer.encode
        return np.array([encode(p) for p in prompts]), np.array([encode(a) for a in answers])


class Retrieval(TextTask):
    """Associative retrieval `k1 v1 ... kK vK ? q <sep> v(q)` (RMT paper, after Ba et al. 2016): n_keys
    distinct keys drawn from the first task_vocab letters, each with a digit as its value; the answer is
    the value of the queried key (chance 0.1)."""
    name = "retrieval"
    size_field = "n_keys"
    LETTERS, DIGITS = SYMBOLS[:26], "0123456789"

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4):
        if not n_keys <= task_vocab <= len(self.LETTERS):
            raise ValueError(f"retrieval draws n_keys = {n_keys} distinct keys from task_vocab = {task_vocab} "
                             f"letters: need n_keys <= task_vocab <= {len(self.LETTERS)}")
        super().__init__(task_len, task_vocab, n_keys)

    def alphabet(self) -> str:
        return self.LETTERS[:self.task_vocab] + self.DIGITS + "?"

    def texts(self, n, rng):
        prompts, answers = [], []
        for _ in range(n):
            keys = rng.choice(list(self.LETTERS[:self.task_vocab]), size=self.n_keys, replace=False)
            values = rng.choice(list(self.DIGITS), size=self.n_keys)
            q = int(rng.integers(self.n_keys))
            prompts.append("".join(k + v for k, v in zip(keys, values)) + "?" + keys[q])
            answers.append(values[q])
        return prompts, answers


class QuadraticEquations(TextTask):
    """Quadratic equations with the worked solution (the RMT paper's `sqeq`): the prompt is an equation
    with terms on both sides, `ax^2+px+q=sx+t`; the answer is the canonical form, the discriminant and both
    integer roots (ascending), each step in a fixed-width field padded with spaces:

        6x^2+260x-561=-4x-9     <sep>  6x^2+264x-552=0    ;D=82944  ;x=-46,2

    Roots are integers in (-100, 100), a in +-1..9, s and t in -9..9, so every example has the same length
    (the paper's 30-token slots, here sized for characters). Only the whole answer counts (`val_exact`).
    task_len, task_vocab and n_keys do not apply. `steps` < 3 cuts the worked solution after its first steps
    (the canonical form; then the discriminant): the smaller tasks of the curriculum over segments."""
    name = "sqeq"
    size_field = "steps"
    WIDTHS = {"equation": 23, "canonical": 19, "discriminant": 9, "roots": 9}  # longest possible texts

    def __init__(self, task_len: int = 8, task_vocab: int = 10, n_keys: int = 4, steps: int = 3):
        if steps not in (1, 2, 3):
            raise ValueError(f"sqeq's steps = {steps} is not valid: 1 (canonical form), 2 (+ discriminant) or 3 "
                             f"(+ roots, the whole solution)")
        super().__init__(task_len, task_vocab, n_keys)
        self.steps = steps

    def alphabet(self) -> str:
        return "0123456789+-x^=D;, "

    @staticmethod
    def field(text: str, width: int) -> str:
        if len(text) > width:
            raise ValueError(f"{text!r} is longer than its field of {width} characters")
        return text.ljust(width)

    def solve(self, a: int, r1: int, r2: int, s: int, t: int) -> tuple[str, str]:
        """The (prompt, answer) of a (x - r1)(x - r2) = 0 written as `ax^2+(b+s)x+(c+t)=sx+t`, r1 <= r2."""
        b, c = -a * (r1 + r2), a * r1 * r2
        w = self.WIDTHS
        prompt = self.field(f"{a}x^2{b + s:+d}x{c + t:+d}={s}x{t:+d}", w["equation"])
        answer = ";".join([self.field(f"{a}x^2{b:+d}x{c:+d}=0", w["canonical"]),
                           self.field(f"D={b * b - 4 * a * c}", w["discriminant"]),
                           self.field(f"x={r1},{r2}", w["roots"])][:self.steps])
        return prompt, answer

    def texts(self, n, rng):
        pairs = []
        for _ in range(n):
            a = int(rng.choice([-1, 1]) * rng.integers(1, 10))
            r1, r2 = sorted(int(r) for r in rng.integers(-99, 100, size=2))
            s, t = (int(v) for v in rng.integers(-9, 10, size=2))
            pairs.append(self.solve(a, r1, r2, s, t))
        return [p for p, _ in pairs], [a for _, a in pairs]
