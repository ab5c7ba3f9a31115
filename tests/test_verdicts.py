"""Tests of the verdict rule (evaluation.judge, issue 20): the rule table by table with its boundaries, the t
critical values against the Student-t density integrated here independently, and the margins pinned to the runs
that measured them."""
import math
import statistics
from pathlib import Path

import pytest

import tools
from evaluation import MARGINS, T_975, judge, margin_for, t_critical, t_interval
from experiments import margins, reproduce

ROOT = Path(__file__).resolve().parent.parent


# --- Student's t, checked against its density -------------------------------------------------------
def t_cdf(x: float, df: int, steps: int = 20000) -> float:
    """P(T <= x) for x >= 0: 1/2 plus the density integrated from 0 to x by Simpson's rule."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    f = lambda t: math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df))  # noqa: E731
    h = x / steps
    inner = sum((4 if i % 2 else 2) * f(i * h) for i in range(1, steps))
    return 0.5 + h / 3 * (f(0) + inner + f(x))


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 20, 30])
def test_the_table_values_are_the_975_quantiles(df):
    assert t_critical(df) == T_975[df - 1]
    assert t_cdf(t_critical(df), df) == pytest.approx(0.975, abs=1e-3)


@pytest.mark.parametrize("df", [31, 40, 60, 120, 1000])
def test_beyond_the_table_the_expansion_is_the_975_quantile(df):
    assert t_cdf(t_critical(df), df) == pytest.approx(0.975, abs=1e-4)
    assert t_critical(df) < t_critical(df - 1)


def test_the_table_runs_to_30_and_no_degrees_of_freedom_is_refused():
    assert len(T_975) == 30 and list(T_975) == sorted(T_975, reverse=True)
    with pytest.raises(ValueError, match="degree of freedom"):
        t_critical(0)


def test_the_t_interval_of_paired_differences():
    mean, low, high = t_interval([1.0, 2.0, 3.0])                  # sd 1, n 3: half-width 4.303 / sqrt(3)
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / math.sqrt(3)) and mean - low == high - mean
    assert t_interval([0.5, 0.5]) == (0.5, 0.5, 0.5)               # agreeing seeds: no width
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


# --- the rule ------------------------------------------------------------------------------------------
# (claimed winner, baseline, lower is better, margin, claim) -> outcome. Scores chosen exact in binary, so
# "exactly at the margin" is exact.
RULE = [
    # better: ahead on every seed beyond the margin
    ([1.0, 1.25, 1.5], [1.5, 1.75, 2.0], True, 0.25, "better", "reproduced"),
    # better: ahead on every seed, mean exactly the margin (beyond is strict); agreeing seeds: no difference
    ([1.0, 1.5], [1.25, 1.75], True, 0.25, "better", "not reproduced: no difference"),
    # better: ahead on every seed, mean exactly the margin, seeds disagree
    ([1.0, 1.0], [1.125, 1.375], True, 0.25, "better", "inconclusive"),
    # better: ahead on every seed but the mean below the margin, the interval beyond it
    ([1.0, 1.0, 1.0], [1.0625, 1.125, 1.5], True, 0.25, "better", "inconclusive"),
    # better: ahead on every seed, the mean below the margin and the interval within: no difference
    ([1.0, 1.0, 1.0], [1.0625, 1.0625, 1.0625], True, 0.25, "better", "not reproduced: no difference"),
    # better: behind on every seed beyond the margin
    ([2.0, 2.5], [1.0, 1.5], True, 0.25, "better", "not reproduced: behind"),
    # better: behind on every seed within the margin
    ([1.0625, 1.0625], [1.0, 1.0], True, 0.25, "better", "not reproduced: no difference"),
    # better: mixed seeds, mean beyond the margin
    ([1.0, 2.0, 1.0], [2.0, 1.5, 2.0], True, 0.25, "better", "inconclusive"),
    # matches: within the margin, not behind on every seed
    ([1.0, 1.0625, 1.0], [1.0625, 1.0, 1.0], True, 0.25, "matches", "reproduced"),
    # matches: the interval exactly at the margin (within is inclusive)
    ([1.0, 1.0], [1.25, 1.25], True, 0.25, "matches", "reproduced"),
    ([1.25, 1.25], [1.0, 1.0], True, 0.25, "matches", "not reproduced: behind on every seed"),
    # matches: behind on every seed within the margin: never reproduced
    ([1.0625, 1.0625, 1.125], [1.0, 1.0, 1.0], True, 0.25, "matches", "not reproduced: behind on every seed"),
    # matches: ahead on every seed beyond the margin
    ([1.0, 1.0], [2.0, 2.5], True, 0.25, "matches", "not reproduced: ahead (better than a match)"),
    # matches: behind on every seed beyond the margin
    ([2.0, 2.5], [1.0, 1.0], True, 0.25, "matches", "not reproduced: behind"),
    # matches: seeds disagree too much to say
    ([1.0, 2.0], [1.5, 1.5], True, 0.25, "matches", "inconclusive"),
]


@pytest.mark.parametrize("a, b, lower, margin, claim, outcome", RULE)
def test_the_rule(a, b, lower, margin, claim, outcome):
    v = judge(a, b, lower, margin, claim)
    assert v.outcome == outcome
    assert (v.claim, v.margin, v.seeds) == (claim, margin, len(a))
    assert v.ahead == sum((y - x) > 0 for x, y in zip(a, b))
    assert v.low <= v.mean <= v.high


@pytest.mark.parametrize("a, b, lower, margin, claim, outcome", RULE)
def test_higher_is_better_is_the_mirror_of_lower_is_better(a, b, lower, margin, claim, outcome):
    mirrored = judge([-x for x in a], [-y for y in b], not lower, margin, claim)
    assert mirrored == judge(a, b, lower, margin, claim)


def test_behind_on_every_seed_is_never_reproduced():
    for claim in ("better", "matches"):
        for margin in (0.0, 0.01, 0.1, 1.0, 10.0):
            for gap in (0.001, 0.05, 0.5):
                v = judge([1.0 + gap, 1.0 + 2 * gap, 1.0 + gap], [1.0, 1.0, 1.0], True, margin, claim)
                assert v.ahead == 0 and not v.outcome.startswith("reproduced"), (claim, margin, gap, v)


def test_an_interval_endpoint_exactly_at_the_margin_is_within():
    a, b = [0.5, 0.625, 0.5625], [0.5, 0.5, 0.5]                # higher is better: gains 0, 0.125, 0.0625
    _, low, high = t_interval([0.0, 0.125, 0.0625])
    assert judge(a, b, False, high, "matches").outcome == "reproduced"
    assert judge(a, b, False, max(-low, high) * (1 - 1e-9), "matches").outcome == "inconclusive"


def test_the_numbers_of_a_verdict():
    v = judge([0.75, 0.5, 0.625], [0.5, 0.5, 0.5], False, 0.02, "better")   # higher is better
    assert v.mean == pytest.approx(0.125) and v.ahead == 2 and v.seeds == 3
    half = 4.303 * 0.125 / math.sqrt(3)                                    # t(2) * sd / sqrt(n)
    assert (v.low, v.high) == pytest.approx((0.125 - half, 0.125 + half))


def test_one_seed_is_not_judged():
    v = judge([0.9], [0.5], False, 0.02)
    assert v.outcome == "one seed: not judged" and v.seeds == 1 and v.ahead == 1
    assert v.mean == pytest.approx(0.4) and math.isnan(v.low) and math.isnan(v.high)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="paired"):
        judge([1.0, 2.0], [1.0], True, 0.1)
    with pytest.raises(ValueError, match="claim must be"):
        judge([1.0, 2.0], [1.0, 2.0], True, 0.1, claim="beats")


# --- the margins ---------------------------------------------------------------------------------------
def test_a_metric_without_a_margin_is_refused_by_name():
    assert margin_for("bpc") == MARGINS["bpc"]
    with pytest.raises(ValueError, match=r"'top1'.*known: bpc, stream_bpc"):
        margin_for("top1")


def test_every_comparison_has_a_margin_and_every_margin_its_reason_on_the_page():
    assert {c.metric for claim in reproduce.CLAIMS for c in claim.comparisons} <= MARGINS.keys()
    assert sorted(m for metrics in reproduce.MARGIN_REASONS for m in metrics) == sorted(MARGINS)
    text = "\n".join(reproduce.rule())
    assert all(f"`{m}` {MARGINS[m]:.3f}" in text for m in MARGINS)


SPREAD = ROOT / "trained" / "spread" / "reference"


def test_the_bpc_margins_are_the_spread_of_the_spare_seed_runs():
    """MARGINS["bpc"] and MARGINS["stream_bpc"] are the sample standard deviations, to 3 decimals, of the GPT's
    stored bits per character (random windows; the text read in order) over the spare seeds
    (experiments/margins.py), read from the runs' evaluation.json."""
    if not SPREAD.exists():
        pytest.skip(f"{SPREAD.relative_to(ROOT)}/ is not in this checkout: train it with python experiments/margins.py")
    folders = [SPREAD / s.name for s in margins.specs()]
    missing = [f.name for f in folders if not (f / "evaluation.json").exists()]
    assert not missing, f"spread runs without evaluation.json: {missing}; run python experiments/margins.py"
    for metric in ("bpc", "stream_bpc"):
        values = [tools.load_json(f / "evaluation.json")[metric] for f in folders]
        assert MARGINS[metric] == round(statistics.stdev(values), 3), metric


def test_where_the_verdict_changes_with_the_scale_or_the_baseline_the_page_says_so():
    c = lambda label, group: reproduce.Comparison(label, "a", "b", "bpc", True, "", group=group)
    ahead, level = ([3.0, 3.1, 3.2], [3.5, 3.6, 3.7]), ([3.0, 3.1, 3.2], [3.0, 3.1, 3.2])
    judged = [(c(f"{scale}: X vs {base}, bpc", "X, bpc"), judge(*scores, True, 0.03))
              for scale, base, scores in (("small", "GPT", ahead), ("large", "GPT", level), ("large", "nanoGPT", ahead))]
    judged += [(c("small: Y vs GPT, bpc", "Y, bpc"), judge(*ahead, True, 0.03)),
               (c("large: Y vs GPT, bpc", "Y, bpc"), judge(*ahead, True, 0.03))]
    lines = reproduce.changes(judged)
    assert lines[1].startswith("**Where the verdict changes**") and len(lines) == 3  # X flips, Y does not
    assert lines[2] == ("- X, bpc: reproduced against GPT on small; not reproduced: no difference against GPT on "
                        "large; reproduced against nanoGPT on large.")
    assert reproduce.changes(judged[3:]) == []
