"""bert-predict: raw texts through a SavedModel or a checkpoint, one JSON line per text.

    bert-predict MODEL "The capital of France is [MASK]."        # fill-mask: top tokens
    bert-predict MODEL --input_file texts.txt --output_file out.jsonl --batch_size 64
    echo "some text" | bert-predict MODEL

MODEL is a SavedModel written by `bert_tf.export` (its version directory, or the export
directory: the highest version is used) or anything `bert-export` takes as --checkpoint; a
checkpoint is served in process by the same functions the export writes (`--kind` and the other
export flags apply; default kind: classifier when classifier_config.json is beside it, ner when
only label_list.txt is, else pretrainer when a text holds [MASK], else encoder). For pair
models every text is `text_a<TAB>text_b`.

Each JSON line holds `text` and the model's outputs for it, padding removed:
classifier `label`, `label_id`, `probabilities` {label: p}; regression `score`; ner `words`
[{word, start, end, label, probability}] and `entities` [{type, text, start, end}]; pretrainer
`masks` [{position, predictions: [{token, probability}]}] (one per [MASK], most probable
first; each answer also has `warning` when the checkpoint had no masked-LM head, whose
predictions are then random); encoder `sentence_embedding` and `pooled_output`.
"""

import json
import os
import sys
from typing import Callable, Dict, List, Sequence


BATCH_SIZE = 32


def _decode(value):
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def format_rows(texts: Sequence[str], outputs: Dict[str, "np.ndarray"],
                notes: Sequence[str] = ()) -> List[dict]:
    """One dict per text from a batch of signature outputs (numpy), padding removed; `notes`
    (e.g. the model's masked-LM head was not in its checkpoint) go into every row as
    `warning`."""
    rows = []
    for i, text in enumerate(texts):
        get = lambda name: outputs[name][i]  # noqa: E731
        row = {"text": text}
        if notes:
            row["warning"] = "; ".join(notes)
        if "num_masks" in outputs:
            row["masks"] = [
                {"position": int(get("mask_positions")[m]),
                 "predictions": [{"token": _decode(token), "probability": float(probability)}
                                 for token, probability in zip(get("top_tokens")[m],
                                                               get("top_probabilities")[m])]}
                for m in range(int(get("num_masks")))]
        elif "num_words" in outputs:
            row["words"] = [
                {"word": _decode(get("words")[w]), "start": int(get("word_start")[w]),
                 "end": int(get("word_end")[w]), "label": _decode(get("labels")[w]),
                 "probability": float(get("probabilities")[w])}
                for w in range(int(get("num_words")))]
            row["entities"] = [
                {"type": _decode(get("entity_type")[e]), "text": _decode(get("entity_text")[e]),
                 "start": int(get("entity_start")[e]), "end": int(get("entity_end")[e])}
                for e in range(int(get("num_entities")))]
        elif "label" in outputs:
            row["label"] = _decode(get("label"))
            row["label_id"] = int(get("label_id"))
            row["probabilities"] = {_decode(name): float(p) for name, p in
                                    zip(get("label_names"), get("probabilities"))}
        elif "score" in outputs:
            row["score"] = float(get("score"))
        elif "sentence_embedding" in outputs:
            row["sentence_embedding"] = [float(x) for x in get("sentence_embedding")]
            row["pooled_output"] = [float(x) for x in get("pooled_output")]
        else:
            row.update({name: _plain(value[i]) for name, value in outputs.items()})
        rows.append(row)
    return rows


def _plain(value):
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return _decode(value)


def find_saved_model(path: str):
    """The SavedModel directory `path` names (itself, or its highest version), or None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = [name for name in os.listdir(path) if name.isdigit()
                    and os.path.isfile(os.path.join(path, name, "saved_model.pb"))]
        if versions:
            return os.path.join(path, max(versions, key=int))
    return None


def guess_kind(checkpoint: str, texts: Sequence[str]) -> str:
    from bert_tf import checkpoints, classifier, export, finetuning

    directory = checkpoints.checkpoint_directory(checkpoint)
    if os.path.isfile(os.path.join(directory, classifier.CLASSIFIER_CONFIG_FILE)):
        return "classifier"
    if os.path.isfile(os.path.join(directory, finetuning.LABEL_LIST_FILE)):
        return "ner"
    if any(export.MASK_TOKEN in text for text in texts):
        return "pretrainer"
    return "encoder"


def load_model(model_path: str, args, texts) -> (Callable, Sequence[str]):
    """(predict(list of string columns) -> dict of numpy outputs, the text input names).
    `predict.notes`: warnings each answer must carry (see `format_rows`)."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops exported models use)

    saved_model = find_saved_model(model_path)
    if saved_model:
        loaded = tf.saved_model.load(saved_model)
        signature = loaded.signatures["serving_default"]
        names = list(signature.structured_input_signature[1])
        if len(names) == 2:
            names = sorted(names)  # text_a, text_b

        def predict(columns):
            outputs = signature(**{n: tf.constant(c, tf.string) for n, c in zip(names, columns)})
            return {k: v.numpy() for k, v in outputs.items()}

        predict.keep = loaded  # the functions live as long as the loaded object
        predict.notes = ()
        return predict, names

    from bert_tf import export

    if args.kind is None:
        args.kind = guess_kind(model_path, texts)
    functions = export.load_for_serving(export.settings_from_arguments(args, model_path))
    serve = tf.function(functions.serve_text, autograph=False, input_signature=[
        tf.TensorSpec([None], tf.string) for _ in functions.text_inputs])

    def predict(columns):
        return {k: v.numpy() for k, v in serve(*[tf.constant(c, tf.string) for c in columns]).items()}

    predict.notes = tuple(functions.notes)
    return predict, list(functions.text_inputs)


def _columns(texts, names, source):
    if len(names) == 1:
        return [list(texts)]
    pairs = []
    for number, text in enumerate(texts, 1):
        if "\t" not in text:
            raise ValueError(f"{source}: text {number} has no tab; this model takes "
                             f"{names[0]}<TAB>{names[1]}")
        pairs.append(text.split("\t", 1))
    return [[a for a, _ in pairs], [b for _, b in pairs]]


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled and total > 0

    def update(self, count):
        self.done += count
        if self.enabled:
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                             f"texts")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def write_predictions(model_path: str, texts: Sequence[str], args, out,
                      batch_size: int = BATCH_SIZE, source: str = "texts",
                      show_progress: bool = False):
    """Runs `texts` through the model at `model_path` (`load_model`; `args` carries the
    checkpoint settings' flags: kind, vocab_file, ...) in batches of `batch_size` and writes
    one JSON line per text to the file object `out`. `source` names the texts in errors."""
    predict, names = load_model(model_path, args, texts)
    columns = _columns(texts, names, source)
    progress = _Progress(len(texts), enabled=show_progress)
    for start in range(0, len(texts), batch_size):
        batch = [column[start:start + batch_size] for column in columns]
        for row in format_rows(texts[start:start + batch_size], predict(batch),
                               notes=predict.notes):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        progress.update(len(batch[0]))


def main(argv=None):
    """bert-predict's command line (bert_tf/commands/predict_command.py); `argv` excludes the
    program name."""
    from bert_tf.commands import predict_command

    return predict_command.main(argv)


def run_main():
    main(sys.argv[1:])


if __name__ == "__main__":
    run_main()
