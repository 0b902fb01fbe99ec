"""Metrics against values computed by hand from their definitions."""

import math

import pytest

from bert_tf import metrics


def test_accuracy_and_binary_f1():
    assert metrics.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    # TP = 2 (positions 0, 3), FP = 1 (1), FN = 1 (2): F1 = 2·2 / (2·2 + 1 + 1).
    assert metrics.f1_score([1, 0, 1, 1, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert metrics.f1_score([0, 0], [0, 0]) == 0.0  # No positives at all: defined as 0.
    group = metrics.task_metrics("accuracy_and_f1", [1, 0, 1, 1, 0], [1, 1, 0, 1, 0])
    assert group == pytest.approx({"accuracy": 0.6, "f1": 2 / 3, "accuracy_and_f1": (0.6 + 2 / 3) / 2})
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.accuracy([1, 2], [1])


def test_matthews_correlation():
    # TP 2, TN 1, FP 1, FN 1: (2·1 − 1·1) / √(3·3·2·2) = 1/6.
    assert metrics.matthews_corrcoef([1, 0, 1, 1, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)
    assert metrics.matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert metrics.matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert metrics.matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # Constant prediction.
    # Three classes, confusion t0→p0 ×2, t1→p2, t2→p2: c = 3, s = 4, t = (2,1,1), p = (2,0,2):
    # (3·4 − 6) / √((16 − 8)(16 − 6)) = 6 / √80.
    assert metrics.matthews_corrcoef([0, 1, 2, 0], [0, 2, 2, 0]) == pytest.approx(6 / math.sqrt(80))
    assert metrics.task_metrics("mcc", [0, 1], [0, 1])["mcc"] == pytest.approx(1.0)


def test_pearson_and_spearman_with_ties():
    # dx = (−1.5, −.5, .5, 1.5), dy = (−3, −1, 0, 4): Σdxdy = 11, Σdx² = 5, Σdy² = 26.
    assert metrics.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert metrics.average_ranks([10, 20, 20, 5, 20]).tolist() == [2, 4, 4, 1, 4]
    # Ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5.
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # Monotone but non-linear: Spearman 1, Pearson below 1.
    assert metrics.spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99
    group = metrics.task_metrics("pearson_and_spearman", [1, 2, 2, 3], [1, 3, 2, 4])
    assert set(group) == {"pearson", "spearmanr", "corr"}
    assert group["corr"] == pytest.approx((group["pearson"] + group["spearmanr"]) / 2)


def test_span_extraction_conlleval_and_strict():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER"]
    assert metrics.extract_spans(tags) == [("PER", 0, 2), ("LOC", 3, 5), ("ORG", 5, 6), ("PER", 6, 7)]
    # Strict: a span must open with B-; a stray I- is no span and an I- of another type ends it.
    assert metrics.extract_spans(tags, mode="strict") == [("PER", 0, 2), ("ORG", 5, 6)]
    iobes = ["S-PER", "B-LOC", "E-LOC", "B-ORG", "I-ORG", "O"]
    assert metrics.extract_spans(iobes) == [("PER", 0, 1), ("LOC", 1, 3), ("ORG", 3, 5)]
    assert metrics.extract_spans(iobes, mode="strict") == [("PER", 0, 1), ("LOC", 1, 3)]
    with pytest.raises(ValueError, match="not O or B-"):
        metrics.extract_spans(["X-PER"])


def test_span_f1_micro_and_per_type():
    truth = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    guess = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    # True spans: PER(0,0-2) LOC(0,3) ORG(1,0); predicted: PER(0,0-2) ORG(0,3) ORG(1,0);
    # 2 correct of 3 each: P = R = F1 = 2/3. PER 1/1, LOC 0, ORG: P 1/2, R 1/1 -> 2/3.
    result = metrics.span_f1(truth, guess)
    assert result == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3,
                                    "LOC_f1": 0.0, "ORG_f1": 2 / 3, "PER_f1": 1.0})
    # A boundary error is a full miss.
    assert metrics.span_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0
    with pytest.raises(ValueError, match="sequence 0: 2 true tags but 1 predicted"):
        metrics.span_f1([["O", "O"]], [["O"]])
