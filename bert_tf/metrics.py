"""Evaluation metrics as GLUE and CoNLL report them, in plain NumPy.

bert_tf computes these itself (no scikit-learn / SciPy / seqeval dependency); each follows the
textbook definition and is tested against hand-computed values:

- `accuracy`, `f1_score` (binary, positive class 1), `matthews_corrcoef` (multi-class
  generalisation; the usual MCC for two classes), `pearson`, `spearman` (ties get the average
  of their ranks), and the GLUE groups `TASK_METRICS` used by run_classifier.
- `span_f1` for BIO/IOBES tagging: entity spans are extracted with the rules of the CoNLL
  `conlleval` script (what seqeval's default mode reproduces), or with `mode="strict"`,
  where a span must begin with B- (or S-) and continue with I- (E-) of the same type.
- `conlleval_report` / `format_conlleval_table`: everything the conlleval script prints
  (token accuracy, overall and per-type precision / recall / F1, chunk counts) for IOB1, BIO
  or BIOES sequences. bert_tf keeps its own copy instead of seqeval because seqeval's token
  accuracy and its handling of IOB1 input differ from the script the CoNLL numbers come from.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np


def _as_arrays(labels, predictions):
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    if labels.size == 0:
        raise ValueError("metrics need at least one example")
    return labels, predictions


def accuracy(labels, predictions) -> float:
    labels, predictions = _as_arrays(labels, predictions)
    return float(np.mean(labels == predictions))


def f1_score(labels, predictions, positive=1) -> float:
    """Binary F1 of the `positive` class: 2·TP / (2·TP + FP + FN); 0.0 when undefined."""
    labels, predictions = _as_arrays(labels, predictions)
    true_positive = np.sum((predictions == positive) & (labels == positive))
    false_positive = np.sum((predictions == positive) & (labels != positive))
    false_negative = np.sum((predictions != positive) & (labels == positive))
    denominator = 2 * true_positive + false_positive + false_negative
    return float(2 * true_positive / denominator) if denominator else 0.0


def matthews_corrcoef(labels, predictions) -> float:
    """Matthews correlation (Gorodkin's K-class form; for 2 classes
    (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN))); 0.0 when a marginal is constant."""
    labels, predictions = _as_arrays(labels, predictions)
    classes = np.unique(np.concatenate([labels, predictions]))
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), np.float64)
    for truth, guess in zip(labels.tolist(), predictions.tolist()):
        confusion[index[truth], index[guess]] += 1
    true_totals = confusion.sum(axis=1)
    predicted_totals = confusion.sum(axis=0)
    correct = np.trace(confusion)
    samples = confusion.sum()
    covariance = correct * samples - np.dot(true_totals, predicted_totals)
    variance_predicted = samples ** 2 - np.dot(predicted_totals, predicted_totals)
    variance_true = samples ** 2 - np.dot(true_totals, true_totals)
    if variance_predicted == 0 or variance_true == 0:
        return 0.0
    return float(covariance / np.sqrt(variance_predicted * variance_true))


def pearson(x, y) -> float:
    x, y = _as_arrays(x, y)
    x = x.astype(np.float64) - np.mean(x, dtype=np.float64)
    y = y.astype(np.float64) - np.mean(y, dtype=np.float64)
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def average_ranks(values) -> np.ndarray:
    """1-based ranks; tied values all get the mean of the ranks they span."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values), np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of the average ranks."""
    x, y = _as_arrays(x, y)
    return pearson(average_ranks(x), average_ranks(y))


# GLUE's metric groups: name -> f(labels, predictions) -> {metric: value}. For regression
# tasks the predictions are scores, otherwise class ids.
def _accuracy_metrics(labels, predictions):
    return {"accuracy": accuracy(labels, predictions)}


def _accuracy_and_f1(labels, predictions):
    acc, f1 = accuracy(labels, predictions), f1_score(labels, predictions)
    return {"accuracy": acc, "f1": f1, "accuracy_and_f1": (acc + f1) / 2}


def _mcc(labels, predictions):
    return {"accuracy": accuracy(labels, predictions), "mcc": matthews_corrcoef(labels, predictions)}


def _pearson_and_spearman(labels, predictions):
    p, s = pearson(labels, predictions), spearman(labels, predictions)
    return {"pearson": p, "spearmanr": s, "corr": (p + s) / 2}


TASK_METRICS = {
    "accuracy": _accuracy_metrics,
    "accuracy_and_f1": _accuracy_and_f1,
    "mcc": _mcc,
    "pearson_and_spearman": _pearson_and_spearman,
}


def task_metrics(metric: str, labels, predictions) -> Dict[str, float]:
    if metric not in TASK_METRICS:
        raise ValueError(f"unknown metric group {metric!r}; expected one of {sorted(TASK_METRICS)}")
    return TASK_METRICS[metric](labels, predictions)


# ---------------------------------------------------------------------------------------------
# Span F1 for BIO / IOBES tags
# ---------------------------------------------------------------------------------------------


def _split_tag(tag: str) -> Tuple[str, str]:
    if tag in ("O", ""):
        return "O", ""
    prefix, _, entity = tag.partition("-")
    if not entity or prefix not in ("B", "I", "E", "S"):
        raise ValueError(f"tag {tag!r} is not O or B-/I-/E-/S-<type>")
    return prefix, entity


def _chunk_ends(prev_prefix, prev_type, prefix, entity):
    """conlleval's endOfChunk: does the chunk open at the previous tag end before this one?"""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I"):
        return prefix in ("B", "S", "O") or entity != prev_type
    return False


def _chunk_starts(prev_prefix, prev_type, prefix, entity):
    """conlleval's startOfChunk."""
    if prefix in ("B", "S"):
        return True
    if prefix in ("I", "E"):
        return prev_prefix in ("E", "S", "O") or entity != prev_type
    return False


def extract_spans(tags: Sequence[str], mode: str = "conlleval") -> List[Tuple[str, int, int]]:
    """Entity spans `(type, start, end_exclusive)` of one tag sequence.

    mode "conlleval": the CoNLL script's rules (an I- after O or after another type opens a
    new span). mode "strict": only B-(I-)* or S- / B-(I-)*E- of one type form a span; a
    stray I-/E- is ignored.
    """
    if mode not in ("conlleval", "strict"):
        raise ValueError(f"mode must be 'conlleval' or 'strict', not {mode!r}")
    parsed = [_split_tag(t) for t in tags] + [("O", "")]
    spans = []
    if mode == "conlleval":
        prev_prefix, prev_type, start = "O", "", None
        for i, (prefix, entity) in enumerate(parsed):
            if start is not None and _chunk_ends(prev_prefix, prev_type, prefix, entity):
                spans.append((prev_type, start, i))
                start = None
            if _chunk_starts(prev_prefix, prev_type, prefix, entity):
                start = i
            prev_prefix, prev_type = prefix, entity
        return spans
    iobes = any(prefix in ("E", "S") for prefix, _ in parsed)
    start, current = None, None
    for i, (prefix, entity) in enumerate(parsed):
        if start is not None and prefix in ("I", "E") and entity == current:
            if prefix == "E":
                spans.append((current, start, i + 1))
                start = None
            continue
        if start is not None:
            # The open span ends here; an IOBES span must have closed with E-, a BIO one may not.
            if not iobes:
                spans.append((current, start, i))
            start = None
        if prefix == "B":
            start, current = i, entity
        elif prefix == "S":
            spans.append((entity, i, i + 1))
    return spans


def span_f1(true_sequences: Sequence[Sequence[str]], predicted_sequences: Sequence[Sequence[str]],
            mode: str = "conlleval") -> Dict[str, float]:
    """Micro precision / recall / F1 over exact entity spans (type and boundaries), plus
    `<type>_f1` per entity type, like seqeval's report. Sequences must pair up in length."""
    if len(true_sequences) != len(predicted_sequences):
        raise ValueError(f"{len(true_sequences)} true sequences but {len(predicted_sequences)} "
                         f"predicted ones")
    true_spans, predicted_spans = set(), set()
    for n, (truth, guess) in enumerate(zip(true_sequences, predicted_sequences)):
        if len(truth) != len(guess):
            raise ValueError(f"sequence {n}: {len(truth)} true tags but {len(guess)} predicted")
        true_spans.update((n,) + s for s in extract_spans(truth, mode))
        predicted_spans.update((n,) + s for s in extract_spans(guess, mode))

    def prf(truth, guess):
        correct = len(truth & guess)
        precision = correct / len(guess) if guess else 0.0
        recall = correct / len(truth) if truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1

    precision, recall, f1 = prf(true_spans, predicted_spans)
    result = {"precision": precision, "recall": recall, "f1": f1}
    for entity in sorted({s[1] for s in true_spans | predicted_spans}):
        _, _, type_f1 = prf({s for s in true_spans if s[1] == entity},
                            {s for s in predicted_spans if s[1] == entity})
        result[f"{entity}_f1"] = type_f1
    return result


def conlleval_report(true_sequences: Sequence[Sequence[str]],
                     predicted_sequences: Sequence[Sequence[str]]) -> Dict[str, float]:
    """The numbers the CoNLL `conlleval` script prints, as one flat dict.

    Chunks are read with conlleval's rules (`extract_spans(mode="conlleval")`), which read IOB1,
    BIO and BIOES alike: the same entities tagged in any of the three give the same chunks. A
    chunk is correct when type, first and last token all match.

    Keys (fractions in [0, 1], not percent):
      `precision`, `recall`, `f1` — micro over chunks (0.0 when undefined, as conlleval);
      `accuracy` — tokens whose predicted tag equals the true tag, over all tokens
        (O tokens included, as conlleval);
      `num_tokens`, `num_true_entities`, `num_predicted_entities`, `num_correct` — counts;
      per entity type T (every type that is true or predicted somewhere): `T_precision`,
        `T_recall`, `T_f1`, `T_support` (true chunks of T) and `T_found` (predicted chunks).
    The per-type keys are flat (not nested) so the dict can be written as `key = value` lines.
    """
    if len(true_sequences) != len(predicted_sequences):
        raise ValueError(f"{len(true_sequences)} true sequences but {len(predicted_sequences)} "
                         f"predicted ones")
    true_spans, predicted_spans = set(), set()
    num_tokens = correct_tags = 0
    for n, (truth, guess) in enumerate(zip(true_sequences, predicted_sequences)):
        if len(truth) != len(guess):
            raise ValueError(f"sequence {n}: {len(truth)} true tags but {len(guess)} predicted")
        num_tokens += len(truth)
        correct_tags += sum(1 for t, g in zip(truth, guess) if _split_tag(t) == _split_tag(g))
        true_spans.update((n,) + s for s in extract_spans(truth))
        predicted_spans.update((n,) + s for s in extract_spans(guess))

    def counts(truth, guess):
        correct = len(truth & guess)
        precision = correct / len(guess) if guess else 0.0
        recall = correct / len(truth) if truth else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1, correct

    precision, recall, f1, correct = counts(true_spans, predicted_spans)
    report = {"precision": precision, "recall": recall, "f1": f1,
              "accuracy": correct_tags / num_tokens if num_tokens else 0.0,
              "num_tokens": num_tokens, "num_true_entities": len(true_spans),
              "num_predicted_entities": len(predicted_spans), "num_correct": correct}
    for entity in sorted({s[1] for s in true_spans | predicted_spans}):
        truth = {s for s in true_spans if s[1] == entity}
        guess = {s for s in predicted_spans if s[1] == entity}
        type_precision, type_recall, type_f1, _ = counts(truth, guess)
        report.update({f"{entity}_precision": type_precision, f"{entity}_recall": type_recall,
                       f"{entity}_f1": type_f1, f"{entity}_support": len(truth),
                       f"{entity}_found": len(guess)})
    return report


def format_conlleval_table(report: Dict[str, float]) -> str:
    """A `conlleval_report` as text: conlleval's summary line, then one row per entity type
    (precision, recall, F1 in percent, support = true chunks, found = predicted chunks) and
    an `overall` row, then the token accuracy."""
    types = sorted(key[:-len("_support")] for key in report if key.endswith("_support"))
    width = max([len("overall"), len("type")] + [len(t) for t in types])
    lines = [f"processed {report['num_tokens']} tokens with {report['num_true_entities']} phrases; "
             f"found: {report['num_predicted_entities']} phrases; "
             f"correct: {report['num_correct']}.",
             f"{'type':<{width}}  {'precision':>9}  {'recall':>7}  {'F1':>6}  {'support':>7}  "
             f"{'found':>7}"]

    def row(name, precision, recall, f1, support, found):
        return (f"{name:<{width}}  {100 * precision:>8.2f}%  {100 * recall:>6.2f}%  "
                f"{100 * f1:>6.2f}  {support:>7d}  {found:>7d}")

    for t in types:
        lines.append(row(t, report[f"{t}_precision"], report[f"{t}_recall"], report[f"{t}_f1"],
                         report[f"{t}_support"], report[f"{t}_found"]))
    lines.append(row("overall", report["precision"], report["recall"], report["f1"],
                     report["num_true_entities"], report["num_predicted_entities"]))
    lines.append(f"accuracy: {100 * report['accuracy']:.2f}% of {report['num_tokens']} tokens")
    return "\n".join(lines) + "\n"
