"""Build script: metadata lives in setup.cfg; this only declares the optional C accelerator.

`bert_tf.data._pretraining_accel` speeds up the serial part of create_pretraining_data's parallel
mode. It is optional: without a C compiler the build skips it and the pure-Python path (same
output, slower) is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("bert_tf.data._pretraining_accel", ["bert_tf/data/_pretraining_accel.c"],
                  extra_compile_args=["-O2"], optional=True),
    ],
)
