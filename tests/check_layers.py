#!/usr/bin/env python3
"""tests/check_layers.py — every file includes only headers of its own layer or below.

The library is built in layers (arrows point down only):

    models -> nn -> autograd -> tensor        viz -> tensor        dist -> nn

A source or internal header belongs to the layer of its folder (tensor/, autograd/, ...);
a public header (include/tapegrad/*.h) says its layer in its opening comment, in a line
"Layer: <name>." The build links each layer only against the ones below it, which catches a
call that runs back up; this script catches the #include that would let one compile.

    check_layers.py ROOT          check the tree at ROOT (exit 1 and list every violation)
    check_layers.py --self-test   show that a violation is caught and a clean tree passes
"""
import os
import re
import sys
import tempfile

# What each layer may include, itself included.
ALLOWED = {
    "tensor": {"tensor"},
    "autograd": {"tensor", "autograd"},
    "viz": {"tensor", "viz"},
    "nn": {"tensor", "autograd", "nn"},
    "dist": {"tensor", "autograd", "nn", "dist"},
    "models": {"tensor", "autograd", "nn", "models"},
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
MARKER = re.compile(r"\bLayer:\s*([a-z]+)\.")


def header_layers(root, problems):
    """Layer of every public header, read from its "Layer: <name>." line."""
    layers = {}
    folder = os.path.join(root, "include", "tapegrad")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".h"):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            m = MARKER.search(f.read(4000))
        if not m or m.group(1) not in ALLOWED:
            problems.append(f"include/tapegrad/{name}: no 'Layer: <{'|'.join(ALLOWED)}>.' line "
                            "in its opening comment")
            continue
        layers["tapegrad/" + name] = m.group(1)
    return layers


def files_to_check(root, headers):
    """(path relative to root, its layer) for every C file of a layer and every public header."""
    for layer in ALLOWED:
        base = os.path.join(root, layer)
        for dirpath, _, names in os.walk(base):
            for name in sorted(names):
                if name.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, name), root), layer
    for header, layer in sorted(headers.items()):
        yield os.path.join("include", header), layer


def included_layer(spec, includer_layer, headers):
    """The layer of an #include "spec", or None when it is not one of the library's."""
    if spec in headers:
        return headers[spec]
    if spec == "tapegrad.h":
        return "umbrella"  # everything: no layer may include it
    top = spec.split("/")[0]
    if "/" in spec and top in ALLOWED:
        return top
    if "/" not in spec:
        return includer_layer  # a header beside the file, in its own folder
    return None


def check(root):
    problems = []
    headers = header_layers(root, problems)
    for path, layer in files_to_check(root, headers):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            spec = m.group(1)
            target = included_layer(spec, layer, headers)
            if spec.startswith("tapegrad/") and spec not in headers:
                target = "unknown"
            if target is not None and target not in ALLOWED[layer]:
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{path}:{line}: layer {layer} includes \"{spec}\" "
                                f"(layer {target}); {layer} may include only "
                                f"{', '.join(sorted(ALLOWED[layer]))}")
    return problems


def self_test():
    """A tree with one upward include must fail, the same tree without it must pass."""
    with tempfile.TemporaryDirectory() as root:
        def write(rel, text):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text)
        write("include/tapegrad/low.h", "/* low.h. Layer: tensor. */\n")
        write("include/tapegrad/high.h", "/* high.h. Layer: nn. */\n#include \"tapegrad/low.h\"\n")
        write("nn/module.c", '#include "tapegrad/high.h"\n#include "tapegrad/low.h"\n')
        write("tensor/kernel.c", '#include "tapegrad/low.h"\n#include <math.h>\n')
        clean = check(root)
        write("tensor/kernel.c", '#include "tapegrad/low.h"\n#include "tapegrad/high.h"\n')
        broken = check(root)
        write("include/tapegrad/nomarker.h", "/* no marker */\n")
        unmarked = check(root)
    ok = (clean == [] and len(broken) == 1 and "tensor/kernel.c:2" in broken[0]
          and any("nomarker.h" in p for p in unmarked))
    print("clean tree:", clean or "no violation")
    print("tree with an upward include:", broken)
    print("header without a marker:", [p for p in unmarked if "nomarker" in p])
    return 0 if ok else 1


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(sys.argv[1])
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
