"""Executing a template notebook with papermill in a quiet kernel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from vgg_transfer.spec.config import PROJECT_ROOT

# How `execute` starts a notebook's kernel: C-level output stays out of the cells (ipykernel
# option), its channels are encrypted when the kernelspec supports it (jupyter_client option),
# and the last lines of its own stderr are shown when the kernel itself fails.
KERNEL_ARGUMENTS = ("--IPKernelApp.capture_fd_output=False",)


KERNEL_TRANSPORT_ENCRYPTION = "auto"


KERNEL_STDERR_LINES = 40


def execute(template: Path, output: Path, parameters: dict, kernel: str | None,
            env: dict | None = None) -> None:
    """Run a template notebook with papermill; its cells' output streams to our log.

    `env`: variables set in the kernel's environment on top of this process's (the Keras
    backend of an experiment's runs). The kernel's ZMQ channels are encrypted and its own
    stderr (where compiled libraries log as they load) goes to a temporary file, so the log
    holds the cells' lines; that stderr is printed only when the kernel itself fails.
    """
    import tempfile

    import papermill
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryFile() as kernel_stderr:
        try:
            papermill.execute_notebook(
                str(template), str(output), parameters=parameters, kernel_name=kernel,
                log_output=True, progress_bar=False, cwd=str(PROJECT_ROOT),
                kernel_manager_class=_quiet_kernel_manager(kernel_stderr, env),
                extra_arguments=list(KERNEL_ARGUMENTS))
        except PapermillExecutionError:
            raise
        except Exception:
            _show_kernel_stderr(kernel_stderr, template)
            raise


def _quiet_kernel_manager(stderr, env: dict | None = None):
    """A kernel manager class whose kernels write their stderr to `stderr`, get `env` in
    their environment and encrypt their channels when the kernelspec allows it (see
    `execute`)."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    encryption = (KERNEL_TRANSPORT_ENCRYPTION if zmq.has("curve")
                  and AsyncKernelManager.class_traits().get("transport_encryption") else None)

    class QuietKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stderr", stderr)  # a Popen argument of the kernel
            if env:
                kw.setdefault("env", {**os.environ, **env})
            if encryption:
                kw.setdefault("transport_encryption", encryption)
            return await super().start_kernel(**kw)

    return QuietKernelManager


def _show_kernel_stderr(stderr, template: Path) -> None:
    """The last lines a failed kernel wrote to its stderr."""
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").splitlines()
    if lines:
        print(f"the kernel's stderr ({template.name}, last lines):\n"
              + "\n".join(lines[-KERNEL_STDERR_LINES:]), file=sys.stderr, flush=True)


def papermill_parameters(notebook: Path) -> set[str]:
    """The names a template's `parameters` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))
