#!/usr/bin/env python3
"""Compiles every ```c block of a Markdown document, so that the document cannot name a
function or a field the headers do not have.

    check_doc_snippets.py DOC.md -- CC ARGS...

A block that has an #include line is a whole translation unit and is compiled as it is; any
other block is a function body and is compiled as

    #include <tapegrad.h>
    void snippet_N(void) { <block> }

Each is compiled as CC ARGS FILE (the ARGS come from tests/meson.build: the include dir,
-std=c11 -Wall -Wextra -Werror -fsyntax-only). A failure names the block (number and line in
the document) and prints the compiler's message. With --self-test, checks that a good block
passes and a block calling a function that does not exist fails."""
import os
import re
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```c[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def snippets(text):
    """(number, first line in the document, source) for each ```c block."""
    for n, m in enumerate(FENCE.finditer(text), 1):
        line = text.count("\n", 0, m.start()) + 2
        yield n, line, m.group(1)


def as_translation_unit(n, body):
    if re.search(r"^\s*#\s*include\b", body, re.M):
        return body
    indented = "".join("    " + l if l.strip() else l for l in body.splitlines(True))
    return "#include <tapegrad.h>\n\nvoid snippet_%d(void);\nvoid snippet_%d(void) {\n%s}\n" % (
        n, n, indented)


def check(doc, cc):
    """Returns the number of failed blocks; prints each failure."""
    with open(doc, encoding="utf-8") as f:
        blocks = list(snippets(f.read()))
    if not blocks:
        print("%s: no ```c block" % doc)
        return 1
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, line, body in blocks:
            path = os.path.join(tmp, "snippet_%d.c" % n)
            with open(path, "w", encoding="utf-8") as f:
                f.write(as_translation_unit(n, body))
            r = subprocess.run(cc + [path], capture_output=True, text=True)
            if r.returncode != 0:
                failed += 1
                print("FAIL: %s snippet %d (line %d) does not compile:\n%s%s" % (
                    doc, n, line, r.stdout, r.stderr))
            else:
                print("ok: %s snippet %d (line %d)" % (doc, n, line))
    print("%d of %d snippets compile" % (len(blocks) - failed, len(blocks)))
    return failed


def self_test(cc):
    good = "```c\ntg_tape *t = tg_tape_new();\ntg_tape_free(t);\n```\n"
    bad = "```c\ntg_tape *t = tg_tape_new();\ntg_tape_frobnicate(t);\n```\n"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("good", good), ("bad", bad)):
            path = os.path.join(tmp, name + ".md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            results.append(check(path, cc))
    if results[0] != 0 or results[1] != 1:
        print("FAIL: self-test: the good block gave %d failures, the bad one %d" % tuple(results))
        return 1
    print("self-test: a good block passes, a call to a missing function fails")
    return 0


def main(argv):
    if "--" not in argv:
        sys.exit("usage: check_doc_snippets.py DOC.md|--self-test -- CC ARGS...")
    cut = argv.index("--")
    args, cc = argv[1:cut], argv[cut + 1:]
    if not cc or len(args) != 1:
        sys.exit("usage: check_doc_snippets.py DOC.md|--self-test -- CC ARGS...")
    if args[0] == "--self-test":
        return self_test(cc)
    return 1 if check(args[0], cc) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
