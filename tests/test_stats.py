"""stats.py: the metrics, resampling tests, t-tests and seed grouping against hand-computed values."""

import numpy as np
import pytest

import stats


def test_classification_metrics_against_a_hand_count():
    y = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    p = np.array([1, 1, 0, 0, 0, 1, 1, 0])  # tp 3, tn 3, fp 1, fn 1
    assert stats.accuracy(y, p) == pytest.approx(6 / 8)
    assert stats.f1(y, p) == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert stats.matthews(y, p) == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    assert stats.matthews(y, np.ones_like(y)) == 0  # an empty marginal: 0, not nan


def test_correlations_against_hand_computed_values():
    x = np.array([1.0, 2.0, 2.0, 4.0])
    # Spearman = Pearson of the ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5)
    assert stats.spearman(x, np.array([10.0, 20.0, 30.0, 40.0])) == pytest.approx(4.5 / np.sqrt(4.5 * 5))
    assert stats.pearson(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0])) == pytest.approx(0.99339927)
    assert stats.pearson(np.ones(4), x) == 0  # a constant prediction: 0, not nan


def test_metrics_vectorise_over_resamples():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, (5, 50)), rng.integers(0, 2, (5, 50))
    a, b = rng.normal(size=(5, 50)), rng.normal(size=(5, 50))
    for i in range(5):
        assert stats.matthews(y, p)[i] == pytest.approx(stats.matthews(y[i], p[i]))
        assert stats.spearman(a, b)[i] == pytest.approx(stats.spearman(a[i], b[i]))


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for s in range(200):
        x = rng.normal(1.0, 2.0, 100)
        _, lo, hi = stats.bootstrap_ci(lambda v: v.mean(-1), x, n_boot=500, seed=s)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def accuracy_figures(y, predictions, n_boot=1000):
    """{(checkpoint, 'acc'): (estimate, replicates, {})} x100, every checkpoint on the same resamples of the
    examples, as probe.score_all builds them for stats.compare."""
    idx = stats.boot_indices(len(y), n_boot, 0)
    return {(c, "acc"): (100 * stats.accuracy(y, p), 100 * stats.accuracy(y[idx], p[idx]), {})
            for c, p in predictions.items()}


def test_paired_tests_small_p_for_different_predictions_one_for_identical():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.9, y, 1 - y)  # ~90% accurate
    bad = np.where(rng.random(300) < 0.55, y, 1 - y)  # ~55%
    assert stats.permutation_test(stats.accuracy, y, good, bad) < 0.01
    # no swap of 300 pairs makes all-right and all-wrong as far apart as they are: p is the floor, 1 / (B + 1),
    # never 0, since the observed labelling is one of the permutations
    assert stats.permutation_test(stats.accuracy, y, y, 1 - y, n_perm=999) == 1 / 1000
    assert stats.permutation_test(stats.accuracy, y, good, good) == 1.0
    figs = accuracy_figures(y, {"bad": bad, "good": good, "same": bad})  # the same examples: a paired test
    _, (good_bad, same_bad) = stats.compare(figs, ["bad", "good", "same"], ("metric",))
    assert good_bad["p"] < 0.01 and good_bad["lo"] > 0
    assert same_bad["p"] == 1.0 and same_bad["diff"] == 0


def test_the_permutation_test_swaps_each_pair_with_probability_one_half():
    """10 discordant examples, all one way, and 90 where both checkpoints agree: p is the exact two-sided sign
    test's, 2 / 2^10, within the Monte Carlo error of 20,000 permutations (sd 0.0003)."""
    y, pa = np.ones(100, dtype=int), np.ones(100, dtype=int)
    pb = np.r_[np.zeros(10, dtype=int), np.ones(90, dtype=int)]
    p = stats.permutation_test(stats.accuracy, y, pa, pb, n_perm=20000, seed=0)
    assert p == pytest.approx(2 / 2 ** 10, abs=0.001)


def test_a_difference_is_resampled_paired_so_agreeing_checkpoints_get_a_narrow_interval():
    """Two checkpoints that differ on 6 of 400 examples, all in the first's favour: each score's interval is
    about ±5 points, their difference's (the same resamples for both) about one point wide, above 0."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    a = np.where(rng.random(400) < 0.7, y, 1 - y)
    wrong = np.flatnonzero(a == y)[:6]
    b = a.copy()
    b[wrong] = 1 - y[wrong]
    rows, (d,) = stats.compare(accuracy_figures(y, {"b": b, "a": a}), ["b", "a"], ("metric",))
    assert d["diff"] == pytest.approx(1.5) and 0 < d["lo"] and d["hi"] - d["lo"] < 2.5
    assert all(r["hi"] - r["lo"] > 7 for r in rows)


def test_benjamini_hochberg_q_values_and_a_family_apart():
    # sorted p 0.01, 0.03, 0.04, 0.2 -> p * 4 / rank = 0.04, 0.06, 0.0533, 0.2 -> running min from the end
    diffs = [{"a": "x", "p": p} for p in (0.01, 0.04, 0.03, 0.2)]
    stats.control_fdr(diffs)
    np.testing.assert_allclose([d["q"] for d in diffs], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert [d["survives"] for d in diffs] == [True, False, False, False]
    diffs = [{"a": "x", "p": 0.01}, {"a": "x", "p": 0.04}, {"a": "random-init", "p": 0.001}]
    stats.control_fdr(diffs, apart={"random-init"})
    assert diffs[0]["q"] == pytest.approx(0.02) and diffs[1]["q"] == pytest.approx(0.04)
    assert diffs[2]["q"] == pytest.approx(0.001)  # alone in its family: q = p


def test_welch_t_against_a_hand_computation():
    # a = (1, 2, 3), b = (4, 5, 6, 7): diff -3.5, var/n 1/3 and (5/3)/4, df by Welch-Satterthwaite
    t = stats.t_test([1, 2, 3], [4, 5, 6, 7], paired=False)
    va, vb = 1 / 3, 5 / 12
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert t["test"] == "welch" and t["diff"] == -3.5 and t["t"] == pytest.approx(-3.5 / np.sqrt(va + vb))
    assert t["df"] == pytest.approx(df) and 0.005 < t["p"] < 0.015  # t -4.04 at df 4.96
    # the CI is diff ± t_0.975(df) se; at df = 4.96 the quantile lies between df 4's 2.776 and df 5's 2.571
    half = (t["hi"] - t["lo"]) / 2
    assert t["lo"] + half == pytest.approx(-3.5) and 2.571 < half / np.sqrt(va + vb) < 2.776


def test_paired_t_against_a_hand_computation():
    # differences -10, -11, -12: mean -11, sd 1, se 1/sqrt(3), df 2; t_0.975(2) = 4.30265 (tables); p of
    # t = -19.05 at df 2 from the t CDF at df 2, 1/2 + t / (2 sqrt(2 + t^2))
    t = stats.t_test([50, 51, 52], [60, 62, 64], paired=True)
    tt = -11 * np.sqrt(3)
    assert t["test"] == "paired" and t["diff"] == pytest.approx(-11.0) and t["t"] == pytest.approx(tt)
    assert t["df"] == 2 and t["p"] == pytest.approx(2 * (0.5 + tt / (2 * np.sqrt(2 + tt * tt))))
    assert t["hi"] - t["diff"] == pytest.approx(4.30265 / np.sqrt(3), abs=1e-4)
    same = stats.t_test([1, 2, 3], [0, 1, 2], paired=True)  # every seed differs by exactly 1: no spread
    assert (same["lo"], same["hi"], same["p"]) == (1.0, 1.0, 0.0)
    assert stats.t_test([1, 2, 3], [1, 2, 3], paired=True)["p"] == 1.0


def test_seed_groups_and_each_checkpoints_reference():
    labels = [f"out-{arm}-s{s}" for arm in ("hybrid", "mlm") for s in (1, 2, 3)] + ["other"]
    assert stats.seed_groups(labels) == {"out-hybrid": labels[:3], "out-mlm": labels[3:6]}
    assert stats.run_groups(labels)["other"] == ["other"] and stats.seed_of("out-mlm-s2") == "2"
    assert list(stats.seed_groups(labels + ["out-flop-s1"])) == ["out-hybrid", "out-mlm"]  # 1 seed: no spread
    labels = ["mlm-s1", "mlm-s2", "hybrid-s1", "hybrid-s2", "other", "random-init"]
    expected = ["mlm-s1", "mlm-s1", "mlm-s2", "mlm-s1", "mlm-s1"]
    assert [stats.reference(label, labels) for label in labels[1:]] == expected
    three = ["mlm-s1", "hybrid-s1", "hybunc-s1"]  # every arm of a seed against its first, not the one before it
    assert [stats.reference(label, three) for label in three[1:]] == ["mlm-s1", "mlm-s1"]


def test_an_undefined_figure_has_no_interval_no_p_and_no_q_and_leaves_the_others_q_alone():
    nan = stats.diff_summary(np.nan, np.full(100, np.nan))
    assert np.isnan([nan["lo"], nan["hi"], nan["p"]]).all()  # not the p of 1/101 its replicates would give
    assert np.isnan(stats.diff_summary(0.5, np.r_[np.nan, np.zeros(99)])["p"])
    diffs = [{"a": "x", "p": 0.01}, {"a": "x", "p": 0.04}, {"a": "x", **nan}]
    stats.control_fdr(diffs)
    assert [d["q"] for d in diffs[:2]] == [pytest.approx(0.02), pytest.approx(0.04)]  # BH over two, not three
    assert np.isnan(diffs[2]["q"]) and diffs[2]["survives"] is False
    y = np.arange(10.0)
    assert np.isnan(stats.permutation_test(lambda y, p: np.full(np.shape(p)[:-1], np.nan), y, y, y))


def test_run_groups_come_in_the_order_their_first_checkpoint_does_and_refuse_a_clash():
    labels = ["base", "out-a-s1", "out-b", "out-a-s2", "random-init"]
    assert list(stats.run_groups(labels).items()) == [
        ("base", ["base"]), ("out-a", ["out-a-s1", "out-a-s2"]), ("out-b", ["out-b"]),
        ("random-init", ["random-init"])]
    for clash in (["out-a", "out-a-s1"], ["out-b", "out-b"]):  # a run named as a group, a label twice
        with pytest.raises(ValueError, match="name a seed group or come twice"):
            stats.run_groups(clash)


def test_across_seeds_mean_sd_and_the_test_it_picks():
    labels = ["out-hybrid-s1", "out-hybrid-s2", "out-hybrid-s3", "out-mlm-s1", "out-mlm-s2", "out-mlm-s3"]
    keys = ("eval", "metric", "pooling")
    scores = [{"eval": "sst2", "metric": "acc", "pooling": "mean", "ckpt": label, "score": v}
              for label, v in zip(labels, [60, 62, 64, 50, 51, 52])]
    row, = stats.across_seeds(scores, labels, keys)
    assert row["groups"]["out-hybrid"] == {"n": 3, "mean": 62.0, "sd": 2.0}
    assert row["groups"]["out-mlm"]["sd"] == pytest.approx(1.0)
    test, = row["tests"]  # seeds 1-3 in both: paired over seeds
    assert test["a"] == "out-mlm" and test["test"] == "paired" and test["n"] == 3
    assert test["p"] == stats.t_test([50, 51, 52], [60, 62, 64], paired=True)["p"]
    # seeds not shared by both groups: Welch's t over the seeds each has
    other = [label.replace("mlm-s", "mlm-s9") for label in labels]
    renamed = [{**s, "ckpt": s["ckpt"].replace("mlm-s", "mlm-s9")} for s in scores]
    row, = stats.across_seeds(renamed, other, keys)
    assert row["tests"][0]["test"] == "welch" and row["tests"][0]["n"] == [3, 3]
    assert row["tests"][0]["p"] == pytest.approx(stats.t_test([50, 51, 52], [60, 62, 64], paired=False)["p"])
    # two seeds a group, not shared: a mean ± sd each, and no test (Welch's t takes >= 3 a side)
    two = [c for c in other if c[-1] != "3"]
    row, = stats.across_seeds([s for s in renamed if s["ckpt"] in two], two, keys)
    assert [g["n"] for g in row["groups"].values()] == [2, 2] and "tests" not in row
