#!/usr/bin/env python3
"""Every error message of the library starts with the public function the program called.

    check_messages.py ROOT          checks the library's sources under ROOT
    check_messages.py --self-test   checks that the checker catches each kind of bad message

A message is made by tg_fail(fmt, ...), tg_status_set(code, fmt, ...), tg_fail_null_argument /
tg_status_null_argument(function, ...), or an entry-check macro (TG_CHECK_ARG, TG_CHECK_INPUT,
..., which name the enclosing function through __func__). The rule, in the sources of
tensor/, autograd/, nn/, models/ and viz/:

  - a format string starts with "tg_<name>: " where tg_<name> is declared in include/; or it
    starts with "%s: " and its first argument is the name of a function (see below);
  - a function name is a string literal naming a public function, __func__ inside a public
    function, or a parameter of the enclosing function that is itself a function name: the
    parameters that carry a name are found from the messages (the first argument of a
    "%s: ..." message is one), and every call of a function that has such a parameter must
    pass a function name in it, so a name passes through helpers unchanged;
  - the entry-check macros may be used in public functions only.

The C is read with regular expressions, which the sources' clang-format layout makes enough:
function definitions start at column 0.
"""
import os
import re
import sys

LAYERS = ("tensor", "autograd", "nn", "models", "viz")
MAKERS = {"tg_fail": 0, "tg_status_set": 1}  # index of the format argument
NAMERS = ("tg_fail_null_argument", "tg_status_null_argument")  # argument 0 is a function name
CHECK_MACROS = ("TG_CHECK_ARG", "TG_CHECK_ARG_STATUS", "TG_CHECK_TENSOR", "TG_CHECK_INDEX",
                "TG_CHECK_INPUT", "TG_CHECK_INPUT_OPT", "TG_CHECK_INDEX_INPUT", "TG_CHECK_INPUTS",
                "TG_CHECK_OP")
PREFIX = re.compile(r"^(tg_[a-z0-9_]+): ")
DEFINITION = re.compile(r"^(?![ \t#/}])[^;=(]*?\b([A-Za-z_]\w*)\s*\(")
STRING = r'"(?:[^"\\]|\\.)*"'


def strip_comments(text):
    """Comments and character literals ('{') become spaces; newlines are kept, so positions
    and line numbers stay."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r"/\*.*?\*/|//[^\n]*|" + STRING + r"|'(?:[^'\\]|\\.)*'",
                  lambda m: m.group(0) if m.group(0)[0] == '"' else blank(m), text, flags=re.S)


def split_args(text, start):
    """The arguments of the call whose '(' is at text[start], as stripped strings."""
    depth, args, cur, i = 0, [], [], start
    while i < len(text):
        c = text[i]
        if c == '"':
            m = re.compile(STRING).match(text, i)
            cur.append(m.group(0))
            i = m.end()
            continue
        if c in "([{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args
        elif c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    return args


def format_text(arg):
    """The leading literal text of a format argument: adjacent literals joined, a macro (such
    as PRId64) read as a conversion."""
    out = ""
    for tok in re.findall(STRING + r"|[A-Za-z_]\w*|\S", arg):
        if tok.startswith('"'):
            out += tok[1:-1]
        elif re.match(r"[A-Za-z_]\w*$", tok):
            out += "%s"
        else:
            break
    return out if arg.lstrip().startswith('"') else None


class Function:
    def __init__(self, name, params, start, body, end):
        self.name, self.params, self.start, self.body, self.end = name, params, start, body, end


def parse_functions(text):
    """Function definitions: name, parameter names, body span."""
    functions = []
    for m in re.finditer(r"^[^\n]*$", text, flags=re.M):
        if not DEFINITION.match(m.group(0)):
            continue
        d = DEFINITION.match(m.group(0))
        open_paren = m.start() + d.end() - 1
        args = split_args(text, open_paren)
        depth, j = 0, open_paren
        while j < len(text):  # the matching ')'
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        after = text[j + 1:j + 200].lstrip()
        after = re.sub(r"^__attribute__\s*\(\(.*?\)\)\s*", "", after)
        if not after.startswith("{"):
            continue
        params = [re.findall(r"\w+", a)[-1] if re.findall(r"\w+", a) else "" for a in args]
        body = text.index("{", j)
        functions.append(Function(d.group(1), params, m.start(), body, block_end(text, body)))
    return functions


def block_end(text, start):
    """The position after the '}' that closes the '{' at text[start]."""
    depth, i = 0, start
    string = re.compile(STRING)
    while i < len(text):
        if text[i] == '"':
            i = string.match(text, i).end()
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return i
    return len(text)


def enclosing(functions, pos):
    for f in functions:
        if f.start <= pos < f.end:
            return f
    return None


def check(sources, public):
    """sources: {path: text}; public: the names declared in include/. Returns the problems."""
    problems = []
    files = {p: strip_comments(t) for p, t in sources.items()}
    funcs = {p: parse_functions(t) for p, t in files.items()}

    def line_of(path, pos):
        return files[path].count("\n", 0, pos) + 1

    def calls(names):
        pat = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\s*\(")
        for path, text in files.items():
            for m in pat.finditer(text):
                f = enclosing(funcs[path], m.start())
                if not f or m.start() < f.body:
                    continue  # a declaration, or the definition itself
                yield path, m, f, split_args(text, m.end() - 1)

    # The parameters that carry a function name: found from the messages, then closed over
    # calls that pass one parameter into another's slot.
    carriers = {}  # function name -> set of parameter indexes

    def mark(f, ident):
        if f and ident in f.params:
            carriers.setdefault(f.name, set()).add(f.params.index(ident))
            return True
        return False

    name_args = []  # (path, pos, enclosing function, argument text, what)
    for path, m, f, args in calls(list(MAKERS)):
        k = MAKERS[m.group(1)]
        if len(args) <= k:
            continue
        fmt = format_text(args[k])
        where = "%s:%d" % (path, line_of(path, m.start()))
        if fmt is None:
            problems.append("%s: the format of %s is not a string literal" % (where, m.group(1)))
        elif PREFIX.match(fmt):
            name = PREFIX.match(fmt).group(1)
            if name not in public:
                problems.append("%s: '%s' is not a public function (not declared in include/)"
                                % (where, name))
        elif fmt.startswith("%s: ") and len(args) > k + 1:
            name_args.append((path, m.start(), f, args[k + 1], "message"))
            mark(f, args[k + 1])
        else:
            problems.append('%s: message "%s..." does not start with "tg_<function>: "'
                            % (where, fmt[:40]))
    for path, m, f, args in calls(list(NAMERS)):
        if args:
            name_args.append((path, m.start(), f, args[0], m.group(1)))
            mark(f, args[0])
    changed = True
    while changed:  # a carrier's argument that is the caller's parameter makes that a carrier
        changed = False
        for path, m, f, args in calls(list(carriers) or ["tg_never_called"]):
            for i in sorted(carriers.get(m.group(1), ())):
                if i < len(args) and f and args[i] in f.params:
                    before = len(carriers.get(f.name, ()))
                    mark(f, args[i])
                    changed = changed or len(carriers[f.name]) != before
    for path, m, f, args in calls(list(carriers) or ["tg_never_called"]):
        for i in sorted(carriers.get(m.group(1), ())):
            if i < len(args):
                name_args.append((path, m.start(), f, args[i], "call of " + m.group(1)))
    for path, pos, f, arg, what in name_args:
        where = "%s:%d" % (path, line_of(path, pos))
        # A local name set from a literal (`const char *fn = "tg_file_read";`) is that literal.
        local = f and re.match(r"[A-Za-z_]\w*$", arg) and re.search(
            r"\b%s\s*(?:\[\s*\])?\s*=\s*(%s)\s*;" % (arg, STRING), files[path][f.body:f.end])
        if local:
            arg = local.group(1)
        # A choice between literals (`upper ? "tg_triu" : "tg_tril"`) is each of them.
        choice = re.fullmatch(r"[^?\"]+\?\s*(%s)\s*:\s*(%s)" % (STRING, STRING), arg)
        literals = [choice.group(1), choice.group(2)] if choice else (
            [arg] if re.fullmatch(STRING, arg) else [])
        if literals:
            for lit in literals:
                if lit[1:-1] not in public:
                    problems.append("%s: %s names '%s', not a public function"
                                    % (where, what, lit[1:-1]))
        elif arg == "__func__":
            if not f or f.name not in public:
                problems.append("%s: %s names __func__ in '%s', not a public function"
                                % (where, what, f.name if f else "?"))
        elif not (f and arg in f.params):
            problems.append("%s: %s takes '%s', neither a public name nor a parameter that "
                            "carries one" % (where, what, arg))
    macro = re.compile(r"\b(" + "|".join(CHECK_MACROS) + r")\s*\(")
    for path, text in files.items():
        if path.endswith(".h"):
            continue
        for m in macro.finditer(text):
            f = enclosing(funcs[path], m.start())
            if f and f.name not in public:
                problems.append("%s:%d: %s in '%s' names it, not a public function"
                                % (path, line_of(path, m.start()), m.group(1), f.name))
    return problems


def public_names(include_dir):
    names = set()
    for dirpath, _, filenames in os.walk(include_dir):
        for fn in filenames:
            if fn.endswith(".h"):
                with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                    names.update(re.findall(r"\b(tg_[a-z0-9_]+)\s*\(", strip_comments(f.read())))
    return names


def read_sources(root):
    sources = {}
    for layer in LAYERS:
        for dirpath, _, filenames in os.walk(os.path.join(root, layer)):
            for fn in sorted(filenames):
                if fn.endswith((".c", ".h")) and fn != "error.c":
                    path = os.path.join(dirpath, fn)
                    with open(path, encoding="utf-8") as f:
                        sources[os.path.relpath(path, root)] = f.read()
    return sources


def self_test():
    public = {"tg_add", "tg_helper_user"}
    good = '''
static void fail_shape(const char *op, int n) { tg_fail("%s: bad %d", op, n); }
static void relay(const char *fn) { fail_shape(fn, 2); }
tg_tensor *tg_add(int n) {
    TG_CHECK_ARG(p);
    if (n) tg_fail("tg_add: n is %d", n);
    if (n > 1) fail_shape("tg_add", n);
    relay(__func__);
    return tg_status_set(TG_ERR_SHAPE, "%s: x", __func__);
}
'''
    bad_cases = {
        "old prefix": 'void tg_add(int n) { tg_fail("add: bad %d", n); }',
        "no prefix": 'void tg_add(int n) { tg_fail("bad %d", n); }',
        "status without prefix": 'void tg_add(void) { tg_status_set(TG_ERR_IO, "SGD: x"); }',
        "private literal": 'void tg_add(int n) { tg_fail("tg_add_impl: bad %d", n); }',
        "private literal passed": 'static void f(const char *op) { tg_fail("%s: x", op); }\n'
                                  'void tg_add(void) { f("additive_core"); }',
        "private literal relayed": 'static void f(const char *op) { tg_fail("%s: x", op); }\n'
                                   'static void g(const char *fn) { f(fn); }\n'
                                   'void tg_add(void) { g("mha_new"); }',
        "private __func__": 'static void helper(int *p) {\n    TG_CHECK_ARG(p);\n}',
        "private __func__ passed": 'static void helper(void) {\n'
                                   '    tg_fail_null_argument(__func__, "p");\n}',
    }
    problems = check({"good.c": good}, public)
    if problems:
        print("self-test: the good source was refused:\n  " + "\n  ".join(problems))
        return 1
    status = 0
    for what, src in bad_cases.items():
        if not check({"bad.c": src}, public):
            print("self-test: not caught: " + what)
            status = 1
    if status == 0:
        print("self-test: %d bad cases caught, the good source accepted" % len(bad_cases))
    return status


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) != 2:
        print(__doc__)
        return 2
    root = argv[1]
    public = public_names(os.path.join(root, "include"))
    problems = check(read_sources(root), public)
    for p in problems:
        print(p)
    print("%d message problems" % len(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
