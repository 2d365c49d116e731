"""The run side: one run from data to record (`pipeline`), and everything it computes with.

Every module here is part of a run's key (`fingerprint`): a change to this folder's code
re-runs the runs it could change; nothing outside it computes a run.
"""

import os

# Before TensorFlow loads: this TensorFlow build leaves oneDNN off on these CPUs, and turning it
# on measured about 3x faster VGG16 training steps here. Quiet TensorFlow's C++ logs too: its
# "errors" here are a missing CUDA driver and graph attributes it ignores; real failures
# surface as Python exceptions. The runner's kernels inherit both. TF_CPP_MIN_LOG_LEVEL is read
# by an initialiser of libtensorflow_framework (absl::SetMinLogLevel), so it governs every line
# logged after the library has loaded, not the few its other initialisers log while it loads
# ("oneDNN custom operations are on", "Could not find cuda drivers"): no variable reaches
# those (TF 2.21 reads no GLOG_* or ABSL_* variable), and the runner keeps them out of the log
# instead (`runner.papermill.execute`).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
