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


def test_conlleval_report_boundary_type_errors_and_per_type():
    truth = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"], ["B-ORG", "O", "B-PER"]]
    guess = [["B-PER", "O", "O", "B-ORG", "I-ORG", "O"], ["B-ORG", "O", "B-PER"]]
    # True chunks PER(0:0-2) LOC(0:3-5) ORG(1:0) PER(1:2); predicted PER(0:0-1) (boundary
    # error), ORG(0:3-5) (type error), ORG(1:0), PER(1:2): 2 of 4 correct -> P = R = F1 = 1/2.
    # Tags equal at 0, 2, 5 of sentence 0 and all 3 of sentence 1: accuracy 6/9.
    # PER: 2 true, 2 found, 1 correct. LOC: 1 true, 0 found. ORG: 1 true, 2 found, 1 correct
    # -> P 1/2, R 1, F1 2·(1/2)·1 / (3/2) = 2/3.
    report = metrics.conlleval_report(truth, guess)
    assert report == pytest.approx({
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 6 / 9, "num_tokens": 9,
        "num_true_entities": 4, "num_predicted_entities": 4, "num_correct": 2,
        "PER_precision": 0.5, "PER_recall": 0.5, "PER_f1": 0.5, "PER_support": 2, "PER_found": 2,
        "LOC_precision": 0.0, "LOC_recall": 0.0, "LOC_f1": 0.0, "LOC_support": 1, "LOC_found": 0,
        "ORG_precision": 0.5, "ORG_recall": 1.0, "ORG_f1": 2 / 3, "ORG_support": 1,
        "ORG_found": 2})
    # span_f1 (the older entry point) agrees on the shared numbers.
    assert metrics.span_f1(truth, guess) == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "PER_f1": 0.5, "LOC_f1": 0.0, "ORG_f1": 2 / 3})
    table = metrics.format_conlleval_table(report)
    lines = table.splitlines()
    assert lines[0] == "processed 9 tokens with 4 phrases; found: 4 phrases; correct: 2."
    assert lines[1].split() == ["type", "precision", "recall", "F1", "support", "found"]
    assert [line.split() for line in lines[2:6]] == [
        ["LOC", "0.00%", "0.00%", "0.00", "1", "0"],
        ["ORG", "50.00%", "100.00%", "66.67", "1", "2"],
        ["PER", "50.00%", "50.00%", "50.00", "2", "2"],
        ["overall", "50.00%", "50.00%", "50.00", "4", "4"]]
    assert lines[6] == "accuracy: 66.67% of 9 tokens"


def test_conlleval_quirks():
    # An I- after O (or at the start) opens a chunk, as conlleval reads it.
    assert metrics.extract_spans(["O", "I-PER", "I-PER", "O"]) == [("PER", 1, 3)]
    # B-X I-Y: the type change ends X and opens Y.
    assert metrics.extract_spans(["B-X", "I-Y"]) == [("X", 0, 1), ("Y", 1, 2)]
    # E- without B- is a one-token chunk; E- after E- opens a new one; I- after S- too.
    assert metrics.extract_spans(["O", "E-X", "O"]) == [("X", 1, 2)]
    assert metrics.extract_spans(["B-X", "E-X", "E-X"]) == [("X", 0, 2), ("X", 2, 3)]
    assert metrics.extract_spans(["S-X", "I-X"]) == [("X", 0, 1), ("X", 1, 2)]
    # I- without B- in the truth and B- in the guess: the same chunk PER(1-3), so F1 = 1, but
    # token 1 differs (I-PER vs B-PER): accuracy 3/4.
    report = metrics.conlleval_report([["O", "I-PER", "I-PER", "O"]],
                                      [["O", "B-PER", "I-PER", "O"]])
    assert report["f1"] == 1.0 and report["num_correct"] == 1
    assert report["accuracy"] == pytest.approx(3 / 4)
    # Nothing predicted, nothing true: conlleval prints 0 for the undefined ratios.
    empty = metrics.conlleval_report([["O", "O"]], [["O", "O"]])
    assert (empty["precision"], empty["recall"], empty["f1"], empty["accuracy"]) == (0, 0, 0, 1)
    with pytest.raises(ValueError, match="sequence 0: 2 true tags but 1 predicted"):
        metrics.conlleval_report([["O", "O"]], [["O"]])


def test_conlleval_report_same_for_iob1_bio_bioes():
    # Entities [PER PER] [LOC] [LOC LOC] O [ORG]: two adjacent LOC chunks, so IOB1 needs its B-.
    iob1 = ["I-PER", "I-PER", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"]
    bio = ["B-PER", "I-PER", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    bioes = ["B-PER", "E-PER", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"]
    spans = [("PER", 0, 2), ("LOC", 2, 3), ("LOC", 3, 5), ("ORG", 6, 7)]
    assert metrics.extract_spans(iob1) == metrics.extract_spans(bio) == spans
    assert metrics.extract_spans(bioes) == spans
    # Across schemes the chunks all match (F1 1); only I-LOC/B-LOC (3) and O (5) are equal
    # tags between IOB1 and BIOES: accuracy 2/7.
    cross = metrics.conlleval_report([iob1], [bioes])
    assert cross["f1"] == 1.0 and cross["accuracy"] == pytest.approx(2 / 7)
    # One prediction (PER(0-2) right, LOC(2-5) merged wrongly, ORG missed) written in each
    # scheme: P 1/2, R 1/4, F1 2·(1/2)(1/4)/(3/4) = 1/3 whatever the scheme.
    guesses = {"IOB1": ["I-PER", "I-PER", "I-LOC", "I-LOC", "I-LOC", "O", "O"],
               "BIO": ["B-PER", "I-PER", "B-LOC", "I-LOC", "I-LOC", "O", "O"],
               "BIOES": ["B-PER", "E-PER", "B-LOC", "I-LOC", "E-LOC", "O", "O"]}
    truths = {"IOB1": iob1, "BIO": bio, "BIOES": bioes}
    chunk_keys = ["precision", "recall", "f1", "num_true_entities", "num_predicted_entities",
                  "num_correct", "PER_f1", "LOC_precision", "LOC_support", "LOC_found",
                  "ORG_recall", "ORG_support"]
    expected = [0.5, 0.25, 1 / 3, 4, 2, 1, 1.0, 0.0, 2, 1, 0.0, 1]
    # Token accuracy is per tag, so it does depend on the scheme: IOB1 and BIO differ from
    # the truth at tokens 3 and 6 (5/7); BIOES also at 2 (S-LOC vs B-LOC): 4/7.
    accuracies = {"IOB1": 5 / 7, "BIO": 5 / 7, "BIOES": 4 / 7}
    for scheme in truths:
        report = metrics.conlleval_report([truths[scheme]], [guesses[scheme]])
        assert [report[k] for k in chunk_keys] == pytest.approx(expected), scheme
        assert report["accuracy"] == pytest.approx(accuracies[scheme]), scheme
