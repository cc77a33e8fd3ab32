"""The type stubs (framelink/__init__.pyi) name exactly what the extension has."""

import ast
import importlib.util
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
        dunder = {"__iter__", "__next__", "__aiter__", "__enter__", "__exit__"} & set(dir(obj))
        assert public | dunder <= stubs[name] | {"__init__"}, f"{name}: no stub for {sorted(public - stubs[name])}"
        missing = {s for s in stubs[name] if s != "__init__" and not hasattr(obj, s)}
        assert not missing, f"{name}: stubs for calls it lacks: {sorted(missing)}"
        assert obj.__doc__, f"{name} has no docstring"
        for attr in public:
            assert getattr(obj, attr).__doc__, f"{name}.{attr} has no docstring"


def test_the_keyword_arguments_are_the_programs_flags():
    """The stubs' __init__ signatures are what python/stubs.py makes of the
    programs' clap definitions (run it after changing a flag)."""
    spec = importlib.util.spec_from_file_location("stubs", pathlib.Path(__file__).parents[1] / "stubs.py")
    stubs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stubs)
    text = STUBS.read_text()
    assert stubs.generated(text) == text, "run: python python/stubs.py"
    # What an editor then shows: the flag's type and its default.
    assert "        max_latency_ms: int = 80," in text
    assert '        adapt: Literal["on", "off"] = "on",' in text
    # Flags a class refuses are not offered.
    server = text[text.index("class Server:") : text.index("class Results:")]
    assert "processor:" not in server and "no_display:" not in server
