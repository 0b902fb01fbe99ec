"""Time of one AdamWeightDecay update (clipping + apply) on a BertPretrainer's variables.

The update is elementwise over every parameter, so on CPU it is bound by memory traffic; this
isolates it from the forward and backward passes that benchmarks/pretraining_speed.py includes.

    python benchmarks/optimizer_step.py [--preset base] [--runs 5]
"""

import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="base")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from bert_tf import optimization
    from bert_tf.config import BertConfig
    from bert_tf.models import BertPretrainer

    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")  # variables stay float32
    model = BertPretrainer(BertConfig.preset(args.preset))
    optimizer = optimization.create_optimizer(1e-4, 10000, 100)
    variables = model.trainable_variables
    optimizer.build(variables)
    grads = [tf.random.normal(v.shape, stddev=1e-3) for v in variables]

    @tf.function
    def step():
        return optimizer.apply_gradients(zip(grads, variables))

    step()  # tracing and compilation are not timed
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    params = sum(int(np.prod(v.shape)) for v in variables)
    print(f"{args.preset}: {len(variables)} variables, {params / 1e6:.1f}M parameters, "
          f"median update {np.median(times) * 1e3:.0f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
