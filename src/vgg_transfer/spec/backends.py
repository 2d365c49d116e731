"""The Keras backends a config may name, and how the environment names one (no backend is
imported here: `run.backend` does that)."""

NAMES = ("tensorflow", "jax", "torch")
DEFAULT = "tensorflow"
ENV = "KERAS_BACKEND"  # the variable Keras reads; a config's `backend` sets it for a run
