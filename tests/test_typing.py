"""The public API is typed: annotations on every public function, and the marker that ships them."""

import inspect
from pathlib import Path

import lossvar


def _public_functions():
    for name in lossvar.__all__:
        obj = getattr(lossvar, name)
        if inspect.isfunction(obj):
            yield name, obj


def test_every_public_function_is_annotated():
    missing = []
    for name, fn in _public_functions():
        sig = inspect.signature(fn)
        bare = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
        if bare or sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{name}: {bare or 'return'}")
    assert not missing, "unannotated: " + "; ".join(missing)


def test_py_typed_marker_ships():
    assert (Path(lossvar.__file__).parent / "py.typed").is_file()
