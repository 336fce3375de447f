#!/usr/bin/env python3
"""Compiles every ```c block of a Markdown document, so that the document cannot name a
function or a field the headers do not have; builds and runs the whole programs of a document
and its PyTorch programs.

    check_doc_snippets.py DOC.md -- CC ARGS...
    check_doc_snippets.py DOC.md --programs [--max-ratio R] -- CC ARGS... [-- LINK ARGS...]
    check_doc_snippets.py DOC.md --python PYTHON
    check_doc_snippets.py --self-test -- CC ARGS...

A block that has an #include line is a whole translation unit and is compiled as it is; any
other block is a function body and is compiled as

    #include <tapegrad.h>
    void snippet_N(void) { <block> }

Each is compiled as CC ARGS FILE (the ARGS come from tests/meson.build: the include dir,
-std=c11 -Wall -Wextra -Werror -fsyntax-only). A failure names the block (number and line in
the document) and prints the compiler's message.

--programs takes only the whole programs (blocks with an #include that define main()), builds each as CC ARGS FILE -o EXE
LINK ARGS and runs it: it must exit with status 0. With --max-ratio R, the non-blank,
non-comment lines of those C programs must be at most R times those of the document's
```python blocks (the README's C model beside its PyTorch twin).

--python runs every ```python block with PYTHON; when PYTHON cannot import torch it prints why
and exits with 77, which meson counts as a skipped test.

--self-test checks that a good block passes, a block calling a function that does not exist
fails, a program that exits 1 fails, and a C program too long beside its Python fails."""
import os
import re
import subprocess
import sys
import tempfile

SKIP = 77  # meson's "skipped" exit status


def fence(language):
    return re.compile(r"^```%s[ \t]*\n(.*?)^```[ \t]*$" % language, re.S | re.M)


def snippets(text, language="c"):
    """(number, first line in the document, source) for each ```<language> block."""
    for n, m in enumerate(fence(language).finditer(text), 1):
        line = text.count("\n", 0, m.start()) + 2
        yield n, line, m.group(1)


def code_lines(source, language):
    """Non-blank lines that are not only comment."""
    if language == "c":
        source = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), source, flags=re.S)
        source = re.sub(r"//[^\n]*", "", source)
        return sum(1 for l in source.splitlines() if l.strip())
    return sum(1 for l in source.splitlines() if l.strip() and not l.strip().startswith("#"))


def is_program(body):
    """A whole program: includes and main() (an excerpt of one has no #include)."""
    return bool(re.search(r"^\s*#\s*include\b", body, re.M) and re.search(r"^int main\(", body, re.M))


def read_blocks(doc, language="c", keep=lambda body: True, what="block"):
    """The document's text and its ```<language> blocks that keep() accepts; the blocks are
    None (and a message printed) when there is none."""
    with open(doc, encoding="utf-8") as f:
        text = f.read()
    blocks = [b for b in snippets(text, language) if keep(b[2])]
    if not blocks:
        print("%s: no ```%s %s" % (doc, language, what))
    return text, blocks or None


def run_block(command, what):
    """Runs command, prints its output; 1 if it failed, else 0."""
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(r.stdout + r.stderr, end="")
    if r.returncode != 0:
        print("FAIL: %s exited with %d" % (what, r.returncode))
        return 1
    print("ok: %s ran" % what)
    return 0


def run_programs(doc, cc, link, max_ratio=None):
    """Builds and runs the C programs of doc; returns the number of failures."""
    text, programs = read_blocks(doc, keep=is_program, what="block with #include and main()")
    if not programs:
        return 1
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, line, body in programs:
            path, exe = os.path.join(tmp, "program_%d.c" % n), os.path.join(tmp, "program_%d" % n)
            with open(path, "w", encoding="utf-8") as f:
                f.write(body)
            r = subprocess.run(cc + [path, "-o", exe] + link, capture_output=True, text=True)
            if r.returncode != 0:
                failed += 1
                print("FAIL: %s program %d (line %d) does not build:\n%s%s" % (
                    doc, n, line, r.stdout, r.stderr))
                continue
            failed += run_block([exe], "%s program %d (line %d)" % (doc, n, line))
    if max_ratio is not None:
        c = sum(code_lines(b[2], "c") for b in programs)
        py = sum(code_lines(b[2], "python") for b in snippets(text, "python"))
        if not py or c > max_ratio * py:
            failed += 1
            print("FAIL: %s: %d lines of C against %d of Python, more than %g times" % (
                doc, c, py, max_ratio))
        else:
            print("ok: %d lines of C against %d of Python (%.2f times, at most %g)" % (
                c, py, c / py, max_ratio))
    return failed


def run_python(doc, python):
    """Runs the ```python blocks of doc; SKIP when python has no torch."""
    if not os.access(python, os.X_OK):
        print("SKIP: no Python at %s (Debian's python3-torch installs into /usr/bin/python3)"
              % python)
        return SKIP
    r = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if r.returncode != 0:
        print("SKIP: %s cannot import torch (Debian's python3-torch is not installed?): %s" % (
            python, (r.stderr.strip().splitlines() or ["?"])[-1]))
        return SKIP
    blocks = read_blocks(doc, "python")[1]
    if not blocks:
        return 1
    failed = sum(run_block([python, "-c", body], "%s python block %d (line %d)" % (doc, n, line))
                 for n, line, body in blocks)
    return 1 if failed else 0


def as_translation_unit(n, body):
    if re.search(r"^\s*#\s*include\b", body, re.M):
        return body
    indented = "".join("    " + l if l.strip() else l for l in body.splitlines(True))
    return "#include <tapegrad.h>\n\nvoid snippet_%d(void);\nvoid snippet_%d(void) {\n%s}\n" % (
        n, n, indented)


def check(doc, cc):
    """Returns the number of failed blocks; prints each failure."""
    blocks = read_blocks(doc)[1]
    if not blocks:
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
    # Programs: built without -fsyntax-only and without the library (they call none of it).
    build = [a for a in cc if a != "-fsyntax-only"]
    program = "```c\n#include <stdio.h>\nint main(void) {\n    puts(\"hi\");\n    return %d;\n}\n```\n"
    python = "```python\nprint(1)\n%s```\n"
    cases = (("exit 0, 5 lines against 2", program % 0 + python % "print(2)\n", 2.5, 0),
             ("exit 1", program % 1 + python % "print(2)\n", 2.5, 1),
             ("5 lines against 1", program % 0 + python % "# a comment\n", 2.5, 1))
    with tempfile.TemporaryDirectory() as tmp:
        for what, text, ratio, want in cases:
            path = os.path.join(tmp, "program.md")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            got = run_programs(path, build, [], ratio)
            if got != want:
                print("FAIL: self-test: %s gave %d failures, want %d" % (what, got, want))
                return 1
    print("self-test: a program that exits 1 fails, and one too long beside its Python")
    return 0


def main(argv):
    usage = ("usage: check_doc_snippets.py DOC.md [--programs [--max-ratio R]] -- CC ARGS... "
             "[-- LINK ARGS...]\n       check_doc_snippets.py DOC.md --python PYTHON\n"
             "       check_doc_snippets.py --self-test -- CC ARGS...")
    args = argv[1:]
    if len(args) == 3 and args[1] == "--python":
        return run_python(args[0], args[2])
    if "--" not in args:
        sys.exit(usage)
    cut = args.index("--")
    opts, rest = args[:cut], args[cut + 1:]
    cc, link = (rest[:rest.index("--")], rest[rest.index("--") + 1:]) if "--" in rest else (rest, [])
    if not cc or not opts:
        sys.exit(usage)
    if opts == ["--self-test"]:
        return self_test(cc)
    doc, opts = opts[0], opts[1:]
    if opts[:1] == ["--programs"]:
        ratio = float(opts[2]) if opts[1:2] == ["--max-ratio"] and len(opts) == 3 else None
        if len(opts) not in (1, 3) or (len(opts) == 3 and ratio is None):
            sys.exit(usage)
        return 1 if run_programs(doc, cc, link, ratio) else 0
    if opts:
        sys.exit(usage)
    return 1 if check(doc, cc) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
