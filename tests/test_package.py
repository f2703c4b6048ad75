"""Packaging facts users rely on: the native module, the kernels package, a light import."""
import subprocess
import sys

import fastsynth as fs


def test_import_is_light_and_torch_free():
    code = ("import sys, fastsynth\n"
            "heavy = [m for m in ('torch', 'triton', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


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
