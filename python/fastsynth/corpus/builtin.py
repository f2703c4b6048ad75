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

``builtin:python-stdlib`` (:func:`python_stdlib`, below) is the larger corpus to train on:
the standard library's full source plus the same topics, ~32 MB, split by a hash of each
document's id into a training part (the plain name) and a held-out part (``:eval``).
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


# ---------------------------------------------------------------- builtin:python-stdlib
STDLIB_NAME = "builtin:python-stdlib"
#: The three names: the training split (the plain name), the same spelled out, the held-out split.
STDLIB_NAMES = (STDLIB_NAME, f"{STDLIB_NAME}:train", f"{STDLIB_NAME}:eval")
#: Share of documents held out for evaluation (by hash of the id, see :func:`stdlib_split`).
EVAL_FRACTION = 0.02
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


def stdlib_split(doc_id: str) -> str:
    """``"eval"`` or ``"train"`` for a document id: ``"eval"`` when the first 8 bytes of the
    id's SHA-256, read as a big-endian integer over 2**64, fall below :data:`EVAL_FRACTION`.
    Depends on the id only, so the split is the same on every machine and run."""
    import hashlib

    h = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return "eval" if h < EVAL_FRACTION * 2**64 else "train"


def python_stdlib(name: str = STDLIB_NAME) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(id, text, extra_fields)`` of ``builtin:python-stdlib`` (``name`` picks the
    split: the plain name and ``:train`` give the training split, ``:eval`` the held-out one).

    Documents, in this order: every ``pydoc_data.topics`` topic (id
    ``python-stdlib/topic/<name>``, the text ``help()`` shows), then the source of every
    ``.py`` file of the running Python's standard library — tests and private modules
    included, ``site-packages``/``dist-packages``/``__pycache__`` and hidden folders not —
    sorted by path (id ``python-stdlib/<relative/path.py>``, text = the file as UTF-8; files
    that do not decode are left out). On CPython 3.11 that is ~1,800 documents, ~32 MB.
    Extra fields: ``kind`` (``"topic"`` or ``"source"``) and ``split``. The corpus is the
    same for the same Python installation; another Python version gives another corpus.
    """
    if name not in STDLIB_NAMES:
        raise ValueError(f"unknown stdlib corpus name {name!r}")
    want = "eval" if name.endswith(":eval") else "train"
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        ident = f"python-stdlib/topic/{topic}"
        if stdlib_split(ident) == want:
            yield ident, topics[topic].strip(), {"kind": "topic", "split": want}
    for rel, path in stdlib_sources():
        ident = f"python-stdlib/{rel}"
        if stdlib_split(ident) != want:
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            yield ident, text, {"kind": "source", "split": want}


def stdlib_sources(root: str | None = None) -> list[tuple[str, Path]]:
    """``(relative/path.py, path)`` of every standard-library source file, sorted by path."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS and not d.startswith(".")]
        for fname in filenames:
            if fname.endswith(".py") and not fname.startswith("."):
                p = Path(dirpath, fname)
                found.append((p.relative_to(base).as_posix(), p))
    found.sort()
    return found


def builtin_documents(name: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The documents of the builtin corpus ``name`` (``builtin:python-docs`` or one of
    :data:`STDLIB_NAMES`)."""
    if name in STDLIB_NAMES:
        return python_stdlib(name)
    return python_docs()
