"""The Keras backend: every call that depends on which one runs (TensorFlow, JAX or PyTorch).

Keras fixes its backend when it is first imported, from KERAS_BACKEND (else its own config
file), so a process runs one backend. A run's config names the backend it wants (`backend`,
by default KERAS_BACKEND, else TensorFlow); the runner starts each experiment's kernel, and
the cluster each run's process, with KERAS_BACKEND set to it, and a run whose backend is not
the one Keras loaded stops (`require`). Nothing else in the package imports a backend.

Imports of Keras and of the backends are inside the functions. The names (`NAMES`,
`DEFAULT`, `ENV`) live in `spec.backends`, which the config reads without loading this side.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os

from vgg_transfer.spec.backends import DEFAULT, ENV, NAMES

PACKAGES = {"tensorflow": ("tensorflow",), "jax": ("jax", "jaxlib"), "torch": ("torch",)}

_switched = False  # the active backend's determinism switch has been thrown


class BackendError(RuntimeError):
    """A run that asks for another backend than the one this process loaded."""


def default(env: dict | None = None) -> str:
    """The backend a config gets when it names none: KERAS_BACKEND, else TensorFlow."""
    env = os.environ if env is None else env
    return env.get(ENV) or DEFAULT


def active() -> str:
    """The backend Keras loaded in this process."""
    import keras

    return keras.backend.backend()


def require(name: str) -> None:
    """Stop when the config's backend is not the one Keras loaded (it cannot change)."""
    loaded = active()
    if loaded != name:
        raise BackendError(f"backend: this run asks for {name}, but Keras was loaded with "
                           f"{loaded} in this process; start it with {ENV}={name}")


def installed() -> list[str]:
    """The backends whose packages are installed (found, not imported)."""
    return [name for name in NAMES
            if all(importlib.util.find_spec(package) for package in PACKAGES[name])]


def versions(name: str) -> dict:
    """Version of each package of a backend (None: not installed)."""
    out = {}
    for package in PACKAGES[name]:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


# ---------------------------------------------------------------- seeds and determinism

def quiet() -> None:
    """TensorFlow warns about every retrace, and each run builds fresh models: the warning
    is expected here and would fill the pages' training logs."""
    if active() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def seed(value: int) -> None:
    """Seed Python, NumPy and the backend, and make the backend's ops deterministic."""
    import keras

    keras.utils.set_random_seed(value)
    make_deterministic()


def make_deterministic() -> bool:
    """Switch the active backend's ops to deterministic ones, once; returns `deterministic()`.

    TensorFlow: op determinism. PyTorch: deterministic algorithms (and the cuBLAS workspace
    they need on a GPU). JAX: nothing to switch at run time; on a CPU its ops are
    deterministic, on a GPU only with XLA_FLAGS=--xla_gpu_deterministic_ops=true set before
    it starts.
    """
    global _switched
    if not _switched:
        name = active()
        if name == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        elif name == "torch":
            import torch

            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        _switched = True
    return deterministic()


def deterministic() -> bool:
    """Whether the active backend computes the same numbers from the same seed, as set up."""
    name = active()
    if name == "tensorflow":  # TensorFlow has no public query: whether we switched it on
        return _switched
    if name == "torch":
        import torch

        return torch.are_deterministic_algorithms_enabled()
    import jax

    return (jax.default_backend() == "cpu"
            or "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", ""))


def describe() -> dict:
    """The active backend for a run's provenance: its name, versions, determinism."""
    name = active()
    return {"name": name, "version": versions(name)[PACKAGES[name][0]],
            "packages": versions(name), "deterministic": deterministic()}


# ---------------------------------------------------------------- devices and gradients

def gpu_names() -> list[str]:
    """Names of the GPUs the active backend sees (empty on a CPU-only machine)."""
    name = active()
    if name == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(d).get("device_name", d.name)
                for d in tf.config.list_physical_devices("GPU")]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import jax

    return [d.device_kind for d in jax.devices() if d.platform == "gpu"]


def gradient(fn, x):
    """The gradient of the scalar `fn(x)` with respect to the tensor `x`, as a tensor."""
    name = active()
    if name == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return tape.gradient(y, x)
    if name == "torch":
        import torch

        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x), x)[0]
    import jax

    return jax.grad(fn)(x)


@contextlib.contextmanager
def traces_released():
    """Forget, when the block ends, the gradient functions TensorFlow registered inside it.

    Keras's TensorFlow optimizer sums gradients through a custom gradient in each traced
    train step, and TensorFlow keeps every such function, with the step graph its closure
    holds, in a process-wide registry that `keras.backend.clear_session` leaves alone: each
    run of a sweep would keep its graphs until the kernel exits. Other backends keep none.
    """
    registry = _gradient_registry()
    before = set(registry or ())
    try:
        yield
    finally:
        for name in [name for name in registry or () if name not in before
                     and name.startswith("CustomGradient-")]:
            del registry[name]


def _gradient_registry() -> dict | None:
    if active() != "tensorflow":
        return None
    from tensorflow.python.framework import ops

    return getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
