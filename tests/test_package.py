"""Packaging facts users rely on: the native module, the kernels package, a light import,
and the floors of docs/architecture.md (no package imports one above it)."""
import ast
import pathlib
import re
import subprocess
import sys

import fastsynth as fs


def test_import_is_light_and_torch_free():
    code = ("import sys, fastsynth\n"
            "heavy = [m for m in ('torch', 'triton', 'matplotlib', 'scipy', 'numpy', 'pyarrow',\n"
            "         'fastsynth._native', 'fastsynth.quality', 'fastsynth.corpus') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_load_on_first_use():
    code = ("import sys, fastsynth as fs\n"
            "assert 'fastsynth.quality' not in sys.modules\n"
            "print(fs.gzip_ratio(['aaaa' * 50])[0] < 0.2, 'fastsynth.quality' in sys.modules,\n"
            "      fs.minhash is sys.modules['fastsynth.dedup'].minhash)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_version_matches_pyproject():
    root = pathlib.Path(__file__).resolve().parents[1]
    declared = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    assert declared and fs.__version__ == declared.group(1)


# docs/architecture.md, "Floors": a package may import its own floor and the ones below.
FLOORS = {
    "_version": 0, "errors": 0, "progress": 0, "atomic": 0, "report": 0, "_native": 0, "partstore": 0,
    "_texts": 0, "kernels": 0,
    "corpus": 1, "plan": 1,
    "quality": 2, "dedup": 2, "model": 2, "llm": 2,
    "synth": 3, "train": 3,
    "run": 4,
    "cli": 5,
}


def test_no_package_imports_a_higher_floor():
    root = pathlib.Path(fs.__file__).parent
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).parts
        if rel == ("__init__.py",):
            continue
        own = rel[0].removesuffix(".py")
        assert own in FLOORS, f"{own} has no floor in docs/architecture.md"
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ([f"fastsynth.{a.name}" for a in node.names]
                                         if node.module == "fastsynth" else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "fastsynth" and len(parts) > 1 and parts[1] in FLOORS:
                    if FLOORS[parts[1]] > FLOORS[own]:
                        bad.append(f"{path.relative_to(root)} imports fastsynth.{parts[1]}")
    assert bad == []


def test_kernels_ship_inside_the_package():
    import fastsynth.kernels as kernels

    assert kernels.__name__ == "fastsynth.kernels"
    assert fs.kernels is kernels


def test_native_module_and_version():
    from fastsynth import _native

    assert fs.__version__
    assert "n_chars" in _native.heuristic_names
    assert fs.quality.zlib_version().count(".") >= 2


def test_unknown_attribute_is_an_attribute_error():
    try:
        fs.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")
