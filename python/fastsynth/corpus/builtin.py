"""``builtin:python-docs``: real documents from the running Python's own documentation.

Every machine with Python has this corpus, so examples and tests need no download. It is
assembled at run time, streamed, and never cached on disk:

1. every topic of ``pydoc_data.topics.topics`` (the text ``help("if")`` shows), sorted by
   name, id ``python-docs/topic/<name>``;
2. one document per public standard-library module found as source under
   ``sysconfig.get_paths()["stdlib"]``, sorted by dotted name, id
   ``python-docs/module/<dotted.name>``. Its text is the module docstring, then each public
   top-level function and class as a signature line with its docstring, and each public
   method of a class the same way, indented. Sources are parsed with :mod:`ast`; no module
   is ever imported (imports run code).

Skipped: test suites (``test``/``tests`` folders), ``site-packages``/``dist-packages``,
``idlelib``, ``__pycache__``, private modules (a name part starting with ``_``), files that
do not parse, and documents shorter than ``MIN_CHARS`` characters.
Records carry one extra field, ``kind``: ``"topic"`` or ``"module"``.
"""
from __future__ import annotations

import ast
import gc
import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NAME = "builtin:python-docs"
#: Shorter documents are mostly a one-line docstring: too little text to score or learn from.
MIN_CHARS = 200
_SKIP_DIRS = {"test", "tests", "site-packages", "dist-packages", "idlelib", "__pycache__"}


def python_docs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(id, text, extra_fields)`` for every document, in a deterministic order."""
    from pydoc_data.topics import topics  # shipped with CPython; data only

    for name in sorted(topics):
        text = topics[name].strip()
        if len(text) >= MIN_CHARS:
            yield f"python-docs/topic/{name}", text, {"kind": "topic"}
    for dotted, path in stdlib_modules():
        text = module_document(dotted, path)
        if text is not None and len(text) >= MIN_CHARS:
            yield f"python-docs/module/{dotted}", text, {"kind": "module"}


def stdlib_modules(root: str | None = None) -> list[tuple[str, Path]]:
    """``(dotted_name, source_path)`` of the public standard-library modules, sorted."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        rel = Path(dirpath).relative_to(base).parts
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and d.isidentifier()
                             and not d.startswith("_"))
        if rel and not (Path(dirpath) / "__init__.py").is_file():
            continue  # a folder that is not a package (data, demos without __init__)
        for fname in filenames:
            stem, ext = os.path.splitext(fname)
            if ext != ".py" or not stem.isidentifier():
                continue
            if stem == "__init__":
                parts = rel
            elif stem.startswith("_"):
                continue
            else:
                parts = (*rel, stem)
            if parts:
                found.append((".".join(parts), Path(dirpath, fname)))
    found.sort()
    return found


def module_document(dotted: str, path: Path) -> str | None:
    """The document for one module: docstrings and signatures, or ``None`` if unparsable."""
    try:
        source = path.read_bytes()
    except OSError:
        return None
    # Parsing allocates ~10^5 nodes per large module; with the collector on, every few
    # hundred allocations trigger a pass over all live objects (the caller's too), which
    # made parsing 2-3x slower here. The tree has no reference cycles: refcounting frees it.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        tree = ast.parse(source, filename=str(path))
    except (SyntaxError, ValueError):
        return None
    finally:
        if was_enabled:
            gc.enable()
    parts = [f"Module {dotted}"]
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(doc)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(node.name):
            parts.append(_entry(node, ""))
        elif isinstance(node, ast.ClassDef) and _public(node.name):
            lines = [_entry(node, "")]
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(sub.name):
                    lines.append(_entry(sub, "    "))
            parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def _public(name: str) -> bool:
    return not name.startswith("_")


def _entry(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, indent: str) -> str:
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in node.bases]
        head = f"class {node.name}" + (f"({', '.join(bases)})" if bases else "") + ":"
    else:
        prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
        ret = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
        head = f"{prefix} {node.name}({ast.unparse(node.args)}){ret}:"
    doc = ast.get_docstring(node)
    body_indent = indent + "    "
    if not doc:
        return indent + head
    body = "\n".join(body_indent + ln if ln else "" for ln in doc.splitlines())
    return f"{indent}{head}\n{body}"
