"""The command lines of bert-export, bert-predict and bert-convert.

Like the scripts beside setup.cfg (run_classifier.py, ...), each module here defines its flags,
checks them before TensorFlow is imported (so --help and a wrong flag answer at once), and calls
library functions that take arguments. Each command keeps its flags in a `flags.FlagValues` of
its own rather than absl's global FLAGS, so that commands and scripts can run in one process.
"""
