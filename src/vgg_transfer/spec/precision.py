"""The compute precision a run asks for, and what `auto` resolves to on this machine.

`auto` is mixed bfloat16 where the CPU has bf16 units (it reports `avx512_bf16` or
`amx_bf16`) and the backend runs bfloat16 convolutions on them, float32 elsewhere. The
choice is made when the config is resolved, so the run's config, key and provenance hold the
policy that ran, never `auto`. `float32` gives the same numbers on every machine; a mixed
policy gives the same numbers on machines whose CPUs share the bf16 instructions.

Which backends `auto` trusts with bfloat16 is what `make bench` measured on such a CPU
(images/s in both precisions per backend, and the test accuracy of a long fine-tune in both):
see the README's "Precision" section.
"""

from __future__ import annotations

from pathlib import Path

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
AUTO = "auto"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with bf16 units
# Backends whose bfloat16 convolutions use those units (oneDNN): TensorFlow and PyTorch, both
# faster in mixed bfloat16 here (`make bench`). JAX's CPU backend (XLA) is the slowest here
# already in float32, and its bfloat16 measurement did not finish, so it stays in float32.
BF16_BACKENDS = ("tensorflow", "torch")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first CPU's feature flags (empty where the file is missing, as off Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def bf16_units(flags: set[str] | None = None) -> str | None:
    """The flag that shows the CPU's bf16 units, or None."""
    flags = cpu_flags() if flags is None else flags
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def resolve(requested: str | None, backend: str, flags: set[str] | None = None) -> str:
    """The policy a run uses: `requested` itself, or for `auto` (and None) the choice above."""
    if requested not in (None, AUTO):
        return requested
    if backend in BF16_BACKENDS and bf16_units(flags):
        return "mixed_bfloat16"
    return "float32"


def describe(policy: str, flags: set[str] | None = None) -> dict:
    """For a run's provenance: the policy it ran and whether the CPU has bf16 units."""
    return {"policy": policy, "cpu_bf16_units": bf16_units(flags)}
