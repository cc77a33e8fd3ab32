"""Writes the keyword arguments of Server, Client and Worker into the type
stubs (framelink/__init__.pyi) from the programs' own flags: their clap
definitions, read through the extension (framelink._framelink._keywords).

    python python/stubs.py           rewrites the stubs' __init__ lines
    python python/stubs.py --check   fails if they differ (the tests run this)

An editor then completes and checks `Server(max_latency_ms=80)`; the
stubs cannot drift from the flags, since CI checks them against the build.
"""

import pathlib
import sys

from framelink import _framelink

STUBS = pathlib.Path(__file__).parent / "framelink" / "__init__.pyi"
BEGIN = "    # __init__ from {program}'s flags: python/stubs.py writes it"
END = "    # end of what python/stubs.py writes"

# Each class: the program whose flags are its keywords, and what comes
# before them (the arguments the class takes itself).
CLASSES = {
    "Server": ("framelink-server", ["*", "display: bool = False"]),
    "Client": ("framelink-client", ["server: str", "*"]),
    "Worker": ("framelink-worker", ["nats: str", "*"]),
}


def init_lines(name):
    program, own = CLASSES[name]
    lines = [BEGIN.format(program=program), "    def __init__(", "        self,"]
    lines += [f"        {a}," for a in own]
    for keyword, annotation, default, help in _framelink._keywords(name):
        comment = f"  # {help}" if help else ""
        lines.append(f"        {keyword}: {annotation} = {default},{comment}")
    lines += ["    ) -> None: ...", END]
    return lines


def generated(text):
    """The stubs' text with every class's __init__ written anew."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith("class "):
            continue
        name = line[len("class ") :].split(":")[0].split("(")[0]
        if name not in CLASSES:
            continue
        # The docstring line stays; what follows it is rewritten.
        if i < len(lines) and lines[i].strip().startswith('"""'):
            out.append(lines[i])
            i += 1
        if i < len(lines) and lines[i].startswith("    # __init__ from "):
            while i < len(lines) and lines[i] != END:
                i += 1
            i += 1
        elif i < len(lines) and lines[i].startswith("    def __init__("):
            while i < len(lines) and not lines[i].rstrip().endswith(": ..."):
                i += 1
            i += 1
        out += init_lines(name)
    return "\n".join(out) + "\n"


def main():
    text = STUBS.read_text()
    new = generated(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            sys.exit(f"{STUBS} is not what the flags give: run python python/stubs.py")
        return
    STUBS.write_text(new)


if __name__ == "__main__":
    main()
