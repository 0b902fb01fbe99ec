"""Private TensorFlow / Keras / keras-hub APIs bert_tf still relies on, one test each.

Each has no public equivalent (the public ones it could use were moved to: a per-device
variable's slots are found through `strategy.experimental_local_results`, summary metadata is
`tf.compat.v1.SummaryMetadata`). A test here fails, naming the API, when an upgrade removes or
changes it, instead of bert_tf silently misbehaving in a user's run.
"""

import keras
import numpy as np
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.models import BertEncoder


def tiny_encoder(seed=0):
    keras.utils.set_random_seed(seed)
    return BertEncoder(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=16))


def test_maybe_merge_call_runs_the_update_with_the_strategy():
    """bert_tf.optimization: `tf.__internal__.distribute.interim.maybe_merge_call`."""
    maybe_merge_call = tf.__internal__.distribute.interim.maybe_merge_call
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        variable = tf.Variable(1.0)

    def update(distribution, value):
        assert isinstance(distribution, tf.distribute.Strategy)
        return distribution.extended.update(variable, lambda v, x: v.assign_add(x),
                                            args=(value,), group=False)

    @tf.function
    def step():
        return strategy.run(lambda: maybe_merge_call(update, strategy, tf.constant(2.0)))

    step()
    assert float(variable.numpy()) == 3.0


def test_keras_list_attributes_reach_tf_checkpoints(tmp_path):
    """bert_tf.models: `Layer._tracked`, the `_trackable_children` override and
    `tf.__internal__.tracking.wrap` put the transformer blocks into tf.train.Checkpoint."""
    encoder = tiny_encoder()
    assert "transformer_layers" in getattr(encoder, "_tracked", ()), (
        "keras.Layer._tracked no longer names the list attribute transformer_layers")
    assert isinstance(tf.__internal__.tracking.wrap([encoder]), tf.__internal__.tracking.Trackable)
    path = tf.train.Checkpoint(model=encoder).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if "transformer_layers" in name]
    assert len(saved) == sum("transformer" in v.path for v in encoder.weights) > 0, (
        "the transformer blocks did not reach the checkpoint: the _trackable_children "
        "override no longer works")
    fresh = tiny_encoder(seed=1)
    tf.train.Checkpoint(model=fresh).read(path).assert_existing_objects_matched()
    for a, b in zip(encoder.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_export_archive_tf_trackable_saves_an_asset(tmp_path):
    """bert_tf.export: `keras.export.ExportArchive._tf_trackable` carries the vocabulary asset."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\nhello\n", encoding="utf-8")
    archive = keras.export.ExportArchive()
    archive.add_endpoint("double", lambda x: x * 2.0,
                         input_signature=[tf.TensorSpec([None], tf.float32)])
    archive._tf_trackable.vocab_file = tf.saved_model.Asset(str(vocab))  # pylint: disable=protected-access
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    assert (tmp_path / "saved" / "assets" / "vocab.txt").read_text() == "[PAD]\nhello\n"
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    assert loaded.vocab_file.asset_path.numpy().decode().endswith("vocab.txt")


def test_trackable_object_graph_proto_reads_a_checkpoint(tmp_path):
    """bert_tf.checkpoints: `tensorflow.core.protobuf.trackable_object_graph_pb2`."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    module = tf.Module()
    module.weight = tf.Variable([1.0, 2.0])
    path = tf.train.Checkpoint(model=module).write(str(tmp_path / "ckpt"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    names = [child.local_name for node in graph.nodes for child in node.children]
    assert "model" in names and "weight" in names
    keys = [a.checkpoint_key for node in graph.nodes for a in node.attributes
            if a.name == "VARIABLE_VALUE"]
    assert keys == ["model/weight/.ATTRIBUTES/VARIABLE_VALUE"]


def test_keras_hub_private_layers_and_preset_utils():
    """bert_tf.checkpoints: keras-hub's `TransformerEncoder._feedforward_intermediate_dense`,
    `MaskedLMHead._intermediate_dense` / `._intermediate_layer_norm` (replaced to compute
    BERT's activation and epsilon) and `keras_hub.src.utils.preset_utils`."""
    import keras_hub  # an install requirement
    from keras_hub.src.utils import preset_utils

    assert callable(preset_utils.check_config_class) and callable(preset_utils.get_preset_loader)
    keras.utils.set_random_seed(0)
    block = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    x = tf.random.normal([1, 3, 4])
    before = block(x).numpy()
    assert isinstance(block._feedforward_intermediate_dense, keras.layers.Dense)
    block._feedforward_intermediate_dense.activation = keras.activations.tanh
    assert not np.allclose(block(x).numpy(), before), (
        "TransformerEncoder no longer calls _feedforward_intermediate_dense's activation")

    head = keras_hub.layers.MaskedLMHead(vocabulary_size=10, activation="softmax")
    positions = tf.constant([[0, 2]])
    before = head(x, positions).numpy()
    assert isinstance(head._intermediate_dense, keras.layers.Dense)
    assert isinstance(head._intermediate_layer_norm, keras.layers.LayerNormalization)
    head._intermediate_dense.activation = keras.activations.tanh
    changed = head(x, positions).numpy()
    assert not np.allclose(changed, before), "MaskedLMHead ignores _intermediate_dense"
    head._intermediate_layer_norm.epsilon = 10.0
    assert not np.allclose(head(x, positions).numpy(), changed), (
        "MaskedLMHead ignores _intermediate_layer_norm.epsilon")


def test_convert_variables_to_constants_v2_freezes_a_concrete_function():
    """bert_tf.inference: `tensorflow.python.framework.convert_to_constants.
    convert_variables_to_constants_v2` turns a function's variables into constants."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    weight = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def matmul(x):
        return tf.matmul(x, weight)

    frozen = convert_variables_to_constants_v2(matmul.get_concrete_function())
    assert not frozen.graph.variables
    assert any(node.op == "Const" and node.attr["dtype"].type == tf.float32.as_datatype_enum
               for node in frozen.graph.as_graph_def().node)
    weight.assign(tf.zeros([2, 2]))
    np.testing.assert_array_equal(frozen(tf.constant([[1.0, 1.0]]))[0].numpy(), [[4.0, 6.0]])


def test_inference_function_call_flat_runs_a_concrete_function_with_its_captures():
    """bert_tf.inference.FlatCall: `ConcreteFunction._inference_function.call_flat(*inputs,
    *captured_inputs)` runs the traced graph, and `tensorflow.python.eager.record.
    could_possibly_record()` tells whether a gradient tape is recording."""
    from tensorflow.python.eager import record

    weight = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def matmul(x):
        return {"y": tf.matmul(x, weight)}

    concrete = matmul.get_concrete_function()
    flat = concrete._inference_function.call_flat(tf.constant([[1.0, 1.0]]),
                                                  *concrete.captured_inputs)
    np.testing.assert_array_equal(flat[0].numpy(), [[4.0, 6.0]])
    weight.assign(tf.ones([2, 2]))  # the captured handle reads the variable's current value
    flat = concrete._inference_function.call_flat(tf.constant([[1.0, 1.0]]),
                                                  *concrete.captured_inputs)
    np.testing.assert_array_equal(flat[0].numpy(), [[2.0, 2.0]])
    assert not record.could_possibly_record()
    with tf.GradientTape():
        assert record.could_possibly_record()
