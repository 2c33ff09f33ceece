"""Task metrics (catlib.benchmarks.metrics): hand-computed cases, agreement with scikit-learn and scipy, and clear
errors for inputs that cannot be scored."""

import math
import random

import pytest

from catlib.benchmarks import metrics as M


def test_classification_metrics_by_hand():
    gold = [1, 1, 0, 0, 1, 0]
    pred = [1, 0, 0, 1, 1, 0]
    assert M.accuracy(pred, gold) == pytest.approx(100 * 4 / 6)
    assert M.f1(pred, gold) == pytest.approx(100 * 2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    # binary phi: (tp tn - fp fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (2*2 - 1*1) / sqrt(3*3*3*3)
    assert M.matthews(pred, gold) == pytest.approx(100 * 3 / 9)
    assert M.matthews([1, 1, 1], [0, 1, 0]) == 0.0  # constant prediction: 0, not a division by zero
    assert M.f1([0, 0], [0, 0]) == 0.0


def test_regression_metrics_by_hand():
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(100.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-100.0)
    assert M.ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert M.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(100.0)  # monotone, not linear
    assert M.pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_agrees_with_scikit_learn_and_scipy():
    sk = pytest.importorskip("sklearn.metrics")
    st = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(5, 60)
        gold = [rng.randint(0, 2) for _ in range(n)]
        pred = [g if rng.random() < 0.6 else rng.randint(0, 2) for g in gold]
        assert M.matthews(pred, gold) == pytest.approx(100 * sk.matthews_corrcoef(gold, pred), abs=1e-9)
        b_gold, b_pred = [int(g > 0) for g in gold], [int(p > 0) for p in pred]
        assert M.f1(b_pred, b_gold) == pytest.approx(100 * sk.f1_score(b_gold, b_pred, zero_division=0), abs=1e-9)
        x = [round(rng.gauss(0, 1), 1) for _ in range(n)]  # rounded: ties
        y = [a + rng.gauss(0, 1) for a in x]
        assert M.pearson(x, y) == pytest.approx(100 * st.pearsonr(x, y)[0], abs=1e-9)
        assert M.spearman(x, y) == pytest.approx(100 * st.spearmanr(x, y)[0], abs=1e-9)


def test_glue_metrics_name_what_each_task_reports():
    assert M.GLUE_METRIC["cola"][0] == "Matthews correlation"
    name, fn = M.GLUE_METRIC["mrpc"]
    gold, pred = [1, 1, 0, 0], [1, 0, 0, 0]
    assert name == "mean of accuracy and F1"
    assert fn(pred, gold) == pytest.approx((M.accuracy(pred, gold) + M.f1(pred, gold)) / 2)
    assert M.GLUE_METRIC["stsb"][1]([1, 2, 3], [1, 2, 3]) == pytest.approx(100.0)


def test_cider_d_by_hand():
    # identical two-word captions: unigram and bigram cosines 1 ("a" carries no weight: both items' references
    # have it), no 3- or 4-grams: 10 * (1 + 1 + 0 + 0) / 4
    mean, per = M.cider_d(["A cat.", "a dog"], [["a cat"], ["a dog"]])
    assert per == pytest.approx([5.0, 5.0]) and mean == pytest.approx(5.0)
    # "a cat cat" against "a cat": unigram cosine 1/2, bigram 1/sqrt(2), length penalty for 2 vs 1 bigrams
    mean, per = M.cider_d(["a cat cat", "a dog"], [["a cat"], ["a dog"]])
    expected = 10 * (0.5 + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72)
    assert per[0] == pytest.approx(expected) and per[1] == pytest.approx(5.0)
    assert mean == pytest.approx((expected + 5.0) / 2)
    # no shared n-gram: 0; two references average their similarities
    assert M.cider_d(["red bus", "a dog"], [["a cat"], ["a dog"]])[1][0] == 0.0
    two = M.cider_d(["a cat", "a dog"], [["a cat", "red bus"], ["a dog"]])[1][0]
    assert two == pytest.approx(5.0 / 2)  # 5 against "a cat", 0 against "red bus", averaged


def test_vqa_accuracy_and_normalisation():
    assert M.normalize_answer("The Dog.") == "dog"
    assert M.normalize_answer("1,000") == "1000"
    assert M.normalize_answer("3.5") == "3.5"
    assert M.normalize_answer("yes!") == "yes"
    assert M.normalize_answer("two") == "2" and M.normalize_answer("dont") == "don't"
    # 3 of 10 annotators said 2: leaving out one of them leaves 2 matches (2/3), any other leaves 3 (1)
    mean, per = M.vqa_accuracy(["two"], [["2"] * 3 + ["3"] * 7])
    assert per == pytest.approx([100 * (3 * 2 / 3 + 7 * 1) / 10]) and mean == pytest.approx(90.0)
    assert M.vqa_accuracy(["cat"], [["dog"] * 10])[0] == 0.0
    assert M.vqa_accuracy(["a cat"], [["cat"]])[0] == 100.0  # one answer: exact match after normalisation


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: M.accuracy([1, 0], [1]), "2 predictions for 1 references"),
        (lambda: M.pearson([], []), "no items to score"),
        (lambda: M.cider_d(["a"], [[]]), "at least one reference caption"),
        (lambda: M.vqa_accuracy(["a"], [[]]), "at least one annotator answer"),
        (lambda: M.score("bleu", [1], [1]), "unknown metric 'bleu'"),
    ],
)
def test_inputs_that_cannot_be_scored_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_score_by_name():
    assert M.score("accuracy", [1, 0], [1, 1]) == 50.0
    assert M.score("vqa_accuracy", ["yes"], [["yes"] * 10]) == 100.0


def test_importable_as_catlib_metrics():
    import catlib
    from catlib.metrics import cider_d

    assert catlib.metrics is M and cider_d is M.cider_d
