"""Task metrics with names, for benchmarks whose tables report more than accuracy: the GLUE metrics of the paper's
Table 3 (RoBERTa) and the captioning / VQA metrics of its Table 4 (BLIP). Plain Python and torch-free, every value
in points (× 100) except CIDEr-D, which the paper reports as a fraction (0.86, not 86).

* classification: :func:`accuracy`, :func:`f1` (binary, the positive class 1), :func:`matthews` (multi-class
  Matthews correlation, Gorodkin's R_K; the binary φ for two classes);
* regression: :func:`pearson`, :func:`spearman` (Pearson on average ranks, ties shared);
* GLUE's reported numbers (:data:`GLUE_METRIC`): CoLA Matthews, MRPC and QQP the mean of accuracy and F1, STS-B the
  mean of Pearson and Spearman, the others accuracy;
* captions: :func:`cider_d` (Vedantam et al., CVPR 2015, as the COCO caption evaluation computes it: n-grams 1-4,
  document frequencies from the references of the evaluated set, clipped candidate counts, Gaussian length penalty
  σ = 6, × 10; "length" counts bigrams, as that code does);
* VQA: :func:`vqa_accuracy` (Antol et al., ICCV 2015: min(#annotators who gave the answer / 3, 1), averaged over the
  ten leave-one-annotator-out subsets, after :func:`normalize_answer`).

Each metric in points carries the values it can take as ``points_range`` (:func:`points_range`: [0, 100], or
[-100, 100] for a correlation), which the result cache uses to refuse a damaged stored number.

Each metric checks its inputs (equal lengths, at least one item) and raises a ValueError naming the problem.
scikit-learn's ``matthews_corrcoef`` / ``f1_score`` and scipy's ``pearsonr`` / ``spearmanr`` compute the same numbers
(the tests compare); they are not used here so that a metric does not change with an unpinned package.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable, Dict, List, Mapping, Sequence, Tuple


def in_points(low: float, high: float) -> Callable[[Callable], Callable]:
    """Declare the values (points) a metric can take: ``@in_points(-100, 100)`` on a correlation."""

    def mark(fn: Callable) -> Callable:
        fn.points_range = (float(low), float(high))
        return fn

    return mark


def points_range(metric: Callable) -> Tuple[float, float]:
    """The values ``metric`` can take, in points: its ``points_range``, [0, 100] (a percentage) when it has none."""
    return getattr(metric, "points_range", (0.0, 100.0))


def _pair(pred: Sequence, gold: Sequence, name: str) -> Tuple[list, list]:
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"{name}: {len(pred)} predictions for {len(gold)} references; give one per item")
    if not pred:
        raise ValueError(f"{name}: no items to score")
    return pred, gold


# ---------------------------------------------------------------------------------------------------------------
# classification and regression (GLUE)
# ---------------------------------------------------------------------------------------------------------------
def accuracy(pred: Sequence, gold: Sequence) -> float:
    """Percentage of items with ``pred == gold``."""
    pred, gold = _pair(pred, gold, "accuracy")
    return 100.0 * sum(p == g for p, g in zip(pred, gold)) / len(gold)


def f1(pred: Sequence[int], gold: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class, in points (0 when there is no true positive)."""
    pred, gold = _pair(pred, gold, "f1")
    tp = sum(p == positive and g == positive for p, g in zip(pred, gold))
    fp = sum(p == positive and g != positive for p, g in zip(pred, gold))
    fn = sum(p != positive and g == positive for p, g in zip(pred, gold))
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


@in_points(-100, 100)
def matthews(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Matthews correlation in points (Gorodkin's multi-class form; 0 when a prediction or the truth is constant)."""
    pred, gold = _pair(pred, gold, "matthews")
    n = len(gold)
    correct = sum(p == g for p, g in zip(pred, gold))
    cp, cg = Counter(pred), Counter(gold)
    classes = set(cp) | set(cg)
    cov_pg = correct * n - sum(cp[k] * cg[k] for k in classes)
    cov_pp = n * n - sum(v * v for v in cp.values())
    cov_gg = n * n - sum(v * v for v in cg.values())
    if cov_pp == 0 or cov_gg == 0:
        return 0.0
    return 100.0 * cov_pg / math.sqrt(cov_pp * cov_gg)


@in_points(-100, 100)
def pearson(pred: Sequence[float], gold: Sequence[float]) -> float:
    """Pearson correlation in points (0 when either side is constant)."""
    x, y = _pair([float(v) for v in pred], [float(v) for v in gold], "pearson")
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return 100.0 * sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def ranks(values: Sequence[float]) -> List[float]:
    """1-based ranks, ties sharing their average rank (scipy's ``rankdata(method="average")``)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


@in_points(-100, 100)
def spearman(pred: Sequence[float], gold: Sequence[float]) -> float:
    """Spearman's rank correlation in points: Pearson on average ranks."""
    pred, gold = _pair([float(v) for v in pred], [float(v) for v in gold], "spearman")
    return pearson(ranks(pred), ranks(gold))


def mean_of(*metrics: Callable[[Sequence, Sequence], float]) -> Callable[[Sequence, Sequence], float]:
    """A metric that averages ``metrics`` (GLUE's MRPC/QQP: accuracy and F1; STS-B: Pearson and Spearman)."""

    def combined(pred, gold):
        return sum(m(pred, gold) for m in metrics) / len(metrics)

    combined.__name__ = "_".join(m.__name__ for m in metrics)
    ranges = [points_range(m) for m in metrics]
    return in_points(min(r[0] for r in ranges), max(r[1] for r in ranges))(combined)


# The number each GLUE task reports (the paper's Table 3, after the Twin-Merging / MergeLM evaluation), with its name.
GLUE_METRIC: Dict[str, Tuple[str, Callable]] = {
    "cola": ("Matthews correlation", matthews),
    "sst2": ("accuracy", accuracy),
    "mrpc": ("mean of accuracy and F1", mean_of(accuracy, f1)),
    "qqp": ("mean of accuracy and F1", mean_of(accuracy, f1)),
    "stsb": ("mean of Pearson and Spearman", mean_of(pearson, spearman)),
    "mnli": ("accuracy", accuracy),
    "qnli": ("accuracy", accuracy),
    "rte": ("accuracy", accuracy),
}


# ---------------------------------------------------------------------------------------------------------------
# captions: CIDEr-D
# ---------------------------------------------------------------------------------------------------------------
_PUNCT = re.compile(r"[^\w\s]|_")


def tokenize_caption(text: str) -> List[str]:
    """Lower case, punctuation removed, split on white space (what the COCO evaluation's PTB tokenizer leaves of
    plain captions; it also splits clitics such as "'s", which this keeps attached)."""
    return _PUNCT.sub(" ", text.lower()).split()


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> Tuple[float, List[float]]:
    """CIDEr-D of each candidate caption against its references, and their mean (a fraction: the paper's 0.86).

    For n-gram g of length k, its weight in a caption is tf(g) · (log N − log max(1, df(g))), N the number of
    evaluated items and df(g) the number of items whose references contain g; per k, the candidate's clipped vector
    min(c, r) is compared with each reference's by cosine, times exp(−(ℓ_c − ℓ_r)² / 2σ²); the mean over k and over
    the references, × 10. ``references[i]``: the reference captions of item i (at least one)."""
    candidates, references = _pair(candidates, references, "cider_d")
    if any(not refs for refs in references):
        raise ValueError("cider_d: every item needs at least one reference caption")
    cand = [_ngrams(tokenize_caption(c), n) for c in candidates]
    refs = [[_ngrams(tokenize_caption(r), n) for r in rs] for rs in references]
    df: Counter = Counter()
    for rs in refs:
        df.update({g for r in rs for g in r})
    log_n = math.log(float(len(refs)))

    def vec(counts: Counter):
        v: List[Dict[tuple, float]] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for g, tf in counts.items():
            k = len(g) - 1
            w = tf * (log_n - math.log(max(1.0, df[g])))
            v[k][g] = w
            norm[k] += w * w
            if k == 1:  # the COCO code's "length": the number of bigrams
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    scores = []
    for c, rs in zip(cand, refs):
        vc, nc, lc = vec(c)
        total = [0.0] * n
        for r in rs:
            vr, nr, lr = vec(r)
            penalty = math.exp(-((lc - lr) ** 2) / (2 * sigma**2))
            for k in range(n):
                s = sum(min(w, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0) for g, w in vc[k].items())
                if nc[k] != 0 and nr[k] != 0:
                    s /= nc[k] * nr[k]
                total[k] += s * penalty
        scores.append(10.0 * (sum(total) / n) / len(rs))
    return sum(scores) / len(scores), scores


# ---------------------------------------------------------------------------------------------------------------
# VQA accuracy
# ---------------------------------------------------------------------------------------------------------------
_NUMBERS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't", "hes": "he's", "im": "i'm",
    "isnt": "isn't", "itll": "it'll", "ive": "i've", "shouldnt": "shouldn't", "thats": "that's",
    "theres": "there's", "theyre": "they're", "wasnt": "wasn't", "werent": "weren't", "whats": "what's",
    "wont": "won't", "wouldnt": "wouldn't", "youre": "you're",
}  # fmt: skip
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_VQA_PUNCT = ";/[]\"{}()=+\\_-><@`,?!*#%^&$|~:'"


def normalize_answer(answer: str) -> str:
    """The VQA evaluation's answer normalisation: lower case; punctuation removed (a comma between digits and a
    period not inside a number dropped, other marks removed or made spaces as that code does); number words to
    digits; articles dropped; common contractions restored (a subset of its list)."""
    original = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    text = original
    for p in _VQA_PUNCT:  # each mark decided on the original text, as that code does
        if (p + " " in original or " " + p in original) or _COMMA_STRIP.search(original) is not None:
            text = text.replace(p, "")
        else:
            text = text.replace(p, " ")
    text = _PERIOD_STRIP.sub("", text)
    words = []
    for w in text.split():
        w = _NUMBERS.get(w, w)
        if w not in _ARTICLES:
            words.append(_CONTRACTIONS.get(w, w))
    return " ".join(words)


def vqa_accuracy(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> Tuple[float, List[float]]:
    """VQA accuracy in points, and per question: min(#matching annotators / 3, 1), averaged over the subsets that
    leave out one annotator each (ten for VQA's ten answers; with one answer, that answer). Answers are normalised
    (:func:`normalize_answer`) on both sides."""
    predictions, answers = _pair(predictions, answers, "vqa_accuracy")
    per = []
    for pred, gts in zip(predictions, answers):
        if not gts:
            raise ValueError("vqa_accuracy: every question needs at least one annotator answer")
        p = normalize_answer(pred)
        gts = [normalize_answer(a) for a in gts]
        if len(gts) == 1:
            per.append(100.0 * float(p == gts[0]))
            continue
        accs = []
        for i in range(len(gts)):
            others = gts[:i] + gts[i + 1 :]
            accs.append(min(1.0, sum(a == p for a in others) / 3.0))
        per.append(100.0 * sum(accs) / len(accs))
    return sum(per) / len(per), per


def score(metric: str, pred: Sequence, gold: Sequence) -> float:
    """One metric by name (:data:`METRICS`), for benchmark code that names its metric in data."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(sorted(METRICS))}")
    out = METRICS[metric](pred, gold)
    return out[0] if isinstance(out, tuple) else out


METRICS: Mapping[str, Callable] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
    "accuracy_f1": mean_of(accuracy, f1),
    "pearson_spearman": mean_of(pearson, spearman),
    "cider_d": cider_d,
    "vqa_accuracy": vqa_accuracy,
}
