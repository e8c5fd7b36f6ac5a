"""kadapter.statistics on hand-computed cases and against scipy's independent implementations."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kadapter.statistics import compare, comparisons_frame, mcnemar_exact, paired_bootstrap_ci, verdict


def _outcomes(variant_only: int, reference_only: int, both: int, neither: int):
    ref = [0] * variant_only + [1] * reference_only + [1] * both + [0] * neither
    var = [1] * variant_only + [0] * reference_only + [1] * both + [0] * neither
    return np.array(ref), np.array(var)


def test_mcnemar_exact_by_hand():
    # 9 items right only for the variant, 1 only for the reference: p = 2 * (C(10,0) + C(10,1)) / 2^10.
    ref, var = _outcomes(9, 1, both=30, neither=20)
    assert mcnemar_exact(ref, var) == pytest.approx(2 * (1 + 10) / 1024, abs=1e-12)
    # The concordant items carry no evidence: the same p without them.
    assert mcnemar_exact(*_outcomes(9, 1, both=0, neither=0)) == pytest.approx(22 / 1024, abs=1e-12)
    # Symmetric: swapping the systems gives the same p.
    assert mcnemar_exact(var, ref) == pytest.approx(22 / 1024, abs=1e-12)
    # A balanced split, and no discordant item at all, give p = 1.
    assert mcnemar_exact(*_outcomes(5, 5, both=3, neither=3)) == 1.0
    assert mcnemar_exact(*_outcomes(0, 0, both=4, neither=2)) == 1.0


def test_mcnemar_matches_scipy_binomtest_on_large_counts():
    for k, n in [(40, 100), (480, 1000), (3, 2000)]:
        ref, var = _outcomes(k, n - k, both=10, neither=10)
        assert mcnemar_exact(ref, var) == pytest.approx(scipy_stats.binomtest(k, n, 0.5).pvalue, rel=1e-9)


def test_mcnemar_pools_seeds_and_refuses_scores():
    ref, var = _outcomes(3, 0, both=2, neither=2)
    # Two seeds of the variant against a single-run reference: 6 variant-only pairs, 0 the other way.
    p = mcnemar_exact(ref, np.stack([var, var]))
    assert p == pytest.approx(2 / 2 ** 6)
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0.5, 1.0], [1.0, 0.0])


def test_bootstrap_of_a_constant_difference_is_that_difference():
    rng = np.random.default_rng(1)
    ref = rng.random(200)
    delta, low, high = paired_bootstrap_ci(ref, ref + 0.1, n_resamples=500)
    assert delta == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_bootstrap_interval_width_matches_the_normal_approximation():
    # Differences +1 / 0 half and half on 400 items: SE = sqrt(0.25 / 400) = 0.025, 95% half-width ≈ 0.049.
    ref = np.zeros(400)
    var = np.array([1, 0] * 200, dtype=float)
    delta, low, high = paired_bootstrap_ci(ref, var, n_resamples=20_000, seed=3)
    assert delta == pytest.approx(0.5)
    assert (high - low) / 2 == pytest.approx(1.96 * 0.025, abs=0.004)
    assert low == pytest.approx(0.5 - 0.049, abs=0.006)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(7)
    ref = (rng.random(300) < 0.4).astype(float)
    var = np.where(rng.random(300) < 0.2, 1 - ref, ref)
    ours = paired_bootstrap_ci(ref, var, n_resamples=20_000, seed=0)
    theirs = scipy_stats.bootstrap((var - ref,), np.mean, n_resamples=20_000, method="percentile",
                                   random_state=np.random.default_rng(1)).confidence_interval
    assert ours[1] == pytest.approx(theirs.low, abs=0.01) and ours[2] == pytest.approx(theirs.high, abs=0.01)


def test_groups_give_the_macro_mean_and_a_stratified_bootstrap():
    # Relation A: 2 facts, both gained; relation B: 8 facts, none changed. Macro Δ = (1 + 0) / 2 = 0.5 (micro 0.2),
    # and resampling within each relation can never change that: the interval collapses onto 0.5.
    ref = np.zeros(10)
    var = np.array([1, 1] + [0] * 8, dtype=float)
    groups = ["A", "A"] + ["B"] * 8
    delta, low, high = paired_bootstrap_ci(ref, var, groups=groups, n_resamples=500)
    assert (delta, low, high) == pytest.approx((0.5, 0.5, 0.5))
    assert paired_bootstrap_ci(ref, var, n_resamples=500)[0] == pytest.approx(0.2)
    c = compare(ref, var, reference_name="backbone", variant_name="+F", groups=groups, n_resamples=500)
    assert c.reference_score == 0.0 and c.variant_score == pytest.approx(0.5)


def test_seeds_widen_the_interval():
    # The mean over items is the same in every seed row but the rows disagree item by item, so the interval over
    # items and seeds is wider than the one over items of the seed-averaged scores.
    rng = np.random.default_rng(0)
    ref = np.zeros(500)
    var = rng.normal(0.0, 1.0, size=(3, 500)) + np.array([[-0.3], [0.0], [0.3]])
    with_seeds = paired_bootstrap_ci(ref, var, n_resamples=4000)
    averaged = paired_bootstrap_ci(ref, var.mean(0), n_resamples=4000)
    assert with_seeds[0] == pytest.approx(averaged[0])
    assert with_seeds[2] - with_seeds[1] > 1.5 * (averaged[2] - averaged[1])


def test_compare_and_verdict_sentence():
    ref, var = _outcomes(30, 5, both=100, neither=65)
    c = compare(ref, var, reference_name="backbone", variant_name="positive control", n_resamples=2000)
    assert c.delta == pytest.approx(25 / 200) and c.excludes_zero
    assert (c.variant_only, c.reference_only, c.n_items, c.n_seeds) == (30, 5, 200, 1)
    assert c.p_mcnemar == pytest.approx(scipy_stats.binomtest(30, 35, 0.5).pvalue)
    sentence = verdict(c, reference_phrase="the backbone")
    assert sentence.startswith("positive control is above the backbone: ΔP@1 = +0.125 [")
    assert "McNemar p < 0.001" in sentence and "200 items" in sentence

    tie = compare(*_outcomes(4, 4, both=50, neither=42), reference_name="+F twin", variant_name="+F",
                  n_resamples=2000)
    assert not tie.excludes_zero and tie.p_mcnemar == 1.0
    assert verdict(tie, reference_phrase="its random twin").startswith(
        "+F is indistinguishable from its random twin: ΔP@1 = +0.000 [−")
    frame = comparisons_frame([c, tie])
    assert list(frame["variant"]) == ["positive control", "+F"] and bool(frame["excludes_zero"][0])


def test_continuous_scores_get_no_mcnemar_and_bad_input_is_named():
    c = compare([0.2, 0.4, 0.5], [0.3, 0.5, 0.5], reference_name="a", variant_name="b", metric="F1",
                n_resamples=200)
    assert c.p_mcnemar is None and "McNemar" not in verdict(c)
    with pytest.raises(ValueError, match="different numbers of items"):
        compare([1, 0], [1, 0, 1], reference_name="a", variant_name="b")
    with pytest.raises(ValueError, match="NaN"):
        compare([1, math.nan], [1, 0], reference_name="a", variant_name="b")
    with pytest.raises(ValueError, match="one label per item"):
        paired_bootstrap_ci([1, 0], [1, 1], groups=["x"])
