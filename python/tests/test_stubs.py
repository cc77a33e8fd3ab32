"""The type stubs (framelink/__init__.pyi) name exactly what the extension has."""

import ast
import pathlib

import framelink

STUBS = pathlib.Path(framelink.__file__).with_name("__init__.pyi")


def stub_classes():
    tree = ast.parse(STUBS.read_text())
    return {
        node.name: {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def test_every_class_and_call_has_a_stub_and_every_stub_exists():
    stubs = stub_classes()
    for name in framelink.__all__:
        obj = getattr(framelink, name)
        if not isinstance(obj, type) or issubclass(obj, Exception):
            continue
        assert name in stubs, f"{name} has no stub"
        public = {a for a in dir(obj) if not a.startswith("_")}
        dunder = {"__iter__", "__next__", "__enter__", "__exit__"} & set(dir(obj))
        assert public | dunder <= stubs[name] | {"__init__"}, f"{name}: no stub for {sorted(public - stubs[name])}"
        missing = {s for s in stubs[name] if s != "__init__" and not hasattr(obj, s)}
        assert not missing, f"{name}: stubs for calls it lacks: {sorted(missing)}"
        assert obj.__doc__, f"{name} has no docstring"
        for attr in public:
            assert getattr(obj, attr).__doc__, f"{name}.{attr} has no docstring"
