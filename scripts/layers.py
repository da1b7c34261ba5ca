#!/usr/bin/env python3
"""Checks the crate's layering (docs/architecture.md): every `crate::` import between top-level
modules of src/ must be allowed by LAYERS below, and the graph must have no cycle.
Test modules (`#[cfg(test)]` to the end of a file) are not counted. Exit 1 on a violation."""
import re
import sys
from pathlib import Path

# module -> the top-level modules it may import (keep in step with docs/architecture.md).
LAYERS = {
    "util": set(),
    "media": set(),
    "config": set(),
    "package": {"media"},
    "hub": {"media", "package"},
    "store": {"util", "media", "package"},
    "metrics": set(),
    "cluster": {"util", "config", "hub", "store", "metrics"},
    "ingest": {"util", "media", "config", "hub", "metrics"},
    "transcode": {"util", "media", "config", "package", "hub", "metrics"},
    "live": {"util", "media", "config", "package", "hub", "store", "metrics", "transcode", "cluster"},
    "chat": {"util", "config", "package", "hub", "store", "metrics", "cluster"},
    "origin": {"util", "config", "package", "hub", "store", "metrics", "chat", "cluster"},
}
ROOTS = {"lib", "main", "server"}  # composition roots: may import anything

USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


def imports(text):
    text = text.split("#[cfg(test)]")[0]
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
    found = set(USE.findall(text))
    for group in GROUP.findall(text):
        found.update(re.findall(r"([a-z_][a-z0-9_]*)\s*(?:::|,|$|\})", group + "}"))
    return found


def main(src):
    graph = {}
    for path in sorted(Path(src).rglob("*.rs")):
        top = path.relative_to(src).parts[0].removesuffix(".rs")
        graph.setdefault(top, set()).update(imports(path.read_text()) - {top})
    bad = []
    for module, deps in sorted(graph.items()):
        if module in ROOTS:
            continue
        if module not in LAYERS:
            bad.append(f"{module}: not in the layer table (scripts/layers.py, docs/architecture.md)")
            continue
        for d in sorted(deps - LAYERS[module]):
            bad.append(f"{module} -> {d}: not allowed by the layering")
    # Cycle check over the actual graph (roots excluded).
    state = {}

    def visit(n, stack):
        state[n] = 1
        for d in graph.get(n, ()):
            if d in ROOTS or d not in graph:
                continue
            if state.get(d) == 1:
                bad.append("cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in sorted(graph):
        if n not in ROOTS and n not in state:
            visit(n, [n])
    for module, deps in sorted(graph.items()):
        print(f"{module} -> {' '.join(sorted(deps)) or '-'}")
    for b in bad:
        print("layering:", b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "src"))
