"""The code that computes a run, as one hash: every module under `run/` and `core/` (the
data and the measures a run records), as syntax.

A run's key (`runner.sweep.run_key`) and the frozen blocks' cache (`run.features`) both hold
this hash, so the same change of code re-runs both. Everything that computes a run lives in
this folder; what it reads from elsewhere enters the key as data: the resolved config
(`spec.config`), the regime's training fields (`spec.regimes`), the record's schema version
(`record`). Comments, docstrings, layout and log messages are not part of it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

FOLDER = Path(__file__).resolve().parent  # the installed run/ folder, wherever it is


class _Quiet(ast.NodeTransformer):
    """Drops what cannot change a result: docstrings, and the arguments of print() calls."""

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id == "print":
            return ast.Call(func=node.func, args=[], keywords=[])
        return self.generic_visit(node)

    def generic_visit(self, node):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return super().generic_visit(node)


def code_fingerprint(source: str) -> str:
    """The code of a module as it computes: its syntax tree without comments, docstrings,
    layout or log messages."""
    return ast.dump(_Quiet().visit(ast.parse(source)))


def code_hash(folder: Path | None = None) -> str:
    """The fingerprint of every module under `folder` (default: run/ and core/), with its
    path."""
    folders = [Path(folder)] if folder else [FOLDER, FOLDER.parent / "core"]
    root = folders[0] if folder else FOLDER.parent
    modules = [p for f in folders for p in _modules(f)]
    return _folder_hash(root, tuple((p, p.stat().st_mtime_ns) for p in modules))


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@functools.lru_cache(maxsize=8)
def _folder_hash(folder: Path, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for path, _ in stamps:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(code_fingerprint(path.read_text()).encode())
    return digest.hexdigest()
