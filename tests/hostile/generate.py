#!/usr/bin/env python3
"""Generates the hostile-input corpus of tests/hostile/ (run once; the output is committed).

    python3 tests/hostile/generate.py

Writes, deterministically (no randomness without a fixed seed):
  gir/err-*.gir     graph files every command must reject: exit 1, one `error:` line;
                    gir/err-at-*.gir also name, in a first line `# expect: LINE:COL FRAGMENT`,
                    the position and a fragment of the message the parser must report
  gir/ok-*.gir      valid graphs (edge cases) every command must accept: exit 0
  gir/grad-*.gir    valid graphs for which `--grad` must fail (exit 1) but plain `run` succeeds
  gir/mem-*.gir     valid graphs too large to evaluate: `run` fails (exit 1), `print` works
  gir/jac-*.gir     valid graphs whose full Jacobian and Hessian are too large: `run` works,
                    `run --jacobian` and `run --hessian` fail (exit 1)
  inputs/err-*.json inputs files `run inputs/graph.gir --inputs FILE` must reject
  inputs/ok-*.json  inputs files it must accept
The test that uses them is tests/it/hostile.rs. Files it finds in tests/hostile/fuzz/ (inputs
the fuzzers once crashed on) are kept there by hand, not by this script.
"""

import os
import random
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

OPS_UNARY = "neg abs exp log sqrt rsqrt sin cos tanh sigmoid relu recip log1p expm1".split()
OPS_BINARY = "add sub mul div pow max min".split()
OPS_CMP = "lt le gt ge eq ne".split()
OPS_REDUCE = "reduce_sum reduce_mean reduce_max reduce_min".split()


def graph(body, name="g"):
    return "graph @%s {\n%s}\n" % (name, "".join("  %s\n" % l for l in body))


def main():
    gdir = os.path.join(HERE, "gir")
    idir = os.path.join(HERE, "inputs")
    for d in (gdir, idir):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
    files = {}

    def put(name, text):
        assert name not in files, name
        files[name] = text.encode() if isinstance(text, str) else text

    # ---- syntax ---------------------------------------------------------------------------
    put("gir/err-empty.gir", "")
    put("gir/err-nul.gir", b"\0\0\0")
    put("gir/err-only-comment.gir", "# nothing here\n")
    put("gir/err-header-only.gir", "graph @g {\n")
    put("gir/err-no-brace.gir", "graph @g\n  %x = input f64[]\n  output %x\n}\n")
    put("gir/err-no-output.gir", graph(["%x = input f64[]"]))
    put("gir/err-empty-graph.gir", "graph @g {\n}\n")
    put("gir/err-two-graphs.gir", graph(["%x = input f64[]", "output %x"]) * 2)
    put("gir/err-after-output.gir", graph(["%x = input f64[]", "output %x", "%y = neg %x"]))
    put("gir/err-output-twice.gir", graph(["%x = input f64[]", "output %x, %x"]))
    put("gir/err-two-outputs.gir", graph(["%x = input f64[]", "output %x", "output %x"]))
    put("gir/err-undefined.gir", graph(["%y = neg %x", "output %y"]))
    put("gir/err-redefined.gir", graph(["%x = input f64[]", "%x = input f64[]", "output %x"]))
    put("gir/err-use-before-def.gir", graph(["%y = neg %x", "%x = input f64[]", "output %y"]))
    put("gir/err-unknown-op.gir", graph(["%x = input f64[]", "%y = frobnicate %x", "output %y"]))
    put("gir/err-input-op-name.gir", graph(["%x = input f64[]", "%y = input %x", "output %y"]))
    put("gir/err-bad-dtype.gir", graph(["%x = input f16[2]", "output %x"]))
    put("gir/err-no-brackets.gir", graph(["%x = input f64", "output %x"]))
    put("gir/err-negative-dim.gir", graph(["%x = input f64[-1]", "output %x"]))
    put("gir/err-zero-dim.gir", graph(["%x = input f64[2,0]", "output %x"]))
    put("gir/err-float-dim.gir", graph(["%x = input f64[2.5]", "output %x"]))
    put("gir/err-non-ascii-name.gir", "graph @g {\n  %é = input f64[]\n  output %é\n}\n")
    put("gir/err-invalid-utf8.gir", b"graph @g {\n  %x = input f64[]\n  # \xff\xfe\n  output %x\n}\n")
    put("gir/err-bom.gir", b"\xef\xbb\xbf" + graph(["%x = input f64[]", "output %x"]).encode())
    put("gir/err-statement-spans-lines.gir",
        "graph @g {\n  %x = input f64[]\n  %y = add %x,\n %x\n  output %y\n}\n")
    put("gir/err-missing-eq.gir", graph(["%x input f64[]", "output %x"]))
    put("gir/err-trailing-junk.gir", graph(["%x = input f64[] junk", "output %x"]))
    put("gir/err-long-line.gir", graph(["%x = input f64[]", "%y = neg %x " + "x" * 200000,
                                        "output %y"]))
    put("gir/err-deep-const.gir",
        graph(["%c = const " + "[" * 100000 + "1" + "]" * 100000 + " : f64[1]", "output %c"]))
    put("gir/err-unbalanced-const.gir", graph(["%c = const [[1,2] : f64[2]", "output %c"]))
    put("gir/err-empty-list-const.gir", graph(["%c = const [] : f64[1]", "output %c"]))
    put("gir/err-const-no-type.gir", graph(["%c = const 1", "output %c"]))
    put("gir/err-const-too-few.gir", graph(["%c = const [1,2] : f64[3]", "output %c"]))
    put("gir/err-const-too-many.gir", graph(["%c = const [1,2,3,4] : f64[3]", "output %c"]))
    put("gir/err-const-nesting.gir", graph(["%c = const [[1,2,3]] : f64[3]", "output %c"]))
    put("gir/err-const-scalar-list.gir", graph(["%c = const [1] : f64[]", "output %c"]))
    put("gir/err-const-bool-number.gir", graph(["%c = const 1 : bool[]", "output %c"]))
    put("gir/err-const-float-bool.gir", graph(["%c = const true : f32[]", "output %c"]))
    put("gir/err-const-1e999.gir", graph(["%c = const 1e999 : f64[]", "output %c"]))
    put("gir/err-const-neg-1e999.gir", graph(["%c = const -1e999 : f64[]", "output %c"]))
    put("gir/err-const-f32-overflow.gir", graph(["%c = const 3.5e38 : f32[]", "output %c"]))
    put("gir/err-const-huge-digits.gir",
        graph(["%c = const 1" + "0" * 400 + " : f64[]", "output %c"]))
    put("gir/err-const-hex.gir", graph(["%c = const 0x10 : f64[]", "output %c"]))
    put("gir/err-const-leading-plus.gir", graph(["%c = const +1 : f64[]", "output %c"]))
    put("gir/err-const-NaN-case.gir", graph(["%c = const NaN : f64[]", "output %c"]))
    put("gir/err-const-type-mismatch.gir", graph(["%c = const [1,2] : f64[2,1]", "output %c"]))
    for cut in range(1, 8):
        src = open(os.path.join(ROOT, "ir", "seed.gir")).read()
        lines = src.split("\n")
        # Drop the closing brace and `cut - 1` more lines from the end (never valid).
        put("gir/err-truncated-seed-%d.gir" % cut, "\n".join(lines[: max(0, len(lines) - 1 - cut)]))
    # Every example program cut in the middle of a token, and with one byte flipped.
    rng = random.Random(5)
    for f in sorted(os.listdir(os.path.join(ROOT, "ir"))):
        if not f.endswith(".gir"):
            continue
        src = open(os.path.join(ROOT, "ir", f), "rb").read()
        stem = f[:-4]
        brace = src.rindex(b"}")
        for k in range(3):
            cut = rng.randrange(1, brace)
            put("gir/err-cut-%s-%d.gir" % (stem, k), src[:cut])
        # Replace the `output` keyword: no graph is valid without it.
        put("gir/err-nooutput-%s.gir" % stem, src.replace(b"output ", b"outptu "))
        # Rename the first use of the first input: an undefined value.
        put("gir/err-typo-%s.gir" % stem, src.replace(b" %", b" %_undefined_", 1)
            if src.count(b" = input") > 0 else src[:1])

    # ---- parse errors at a known position ----------------------------------------------------
    # Each file's first line is `# expect: LINE:COL FRAGMENT`: the parser (and the CLI's `error:`
    # line) must report exactly that position and a message containing FRAGMENT. The positions
    # below are those of the source without the header (graph on line 1, statements from line 2,
    # column 3); `at` adds the header's line. Cases that cannot live in such a file stay in
    # tests/it/text/malformed.rs (an empty file; a lone carriage return).
    def at(slug, src, line, col, frag):
        put("gir/err-at-%s.gir" % slug, "# expect: %d:%d %s\n%s" % (line + 1, col, frag, src))

    def body(stmts):
        return graph(stmts.split("\n"))

    x = "%x = input f64[2,3]\n"
    # -- lexical
    at("bad-char", body("%y = add %x, $x\noutput %y"), 2, 16, "unexpected character `$`")
    at("non-ascii", body("%x = input f64[] # ok é\n%y = neg %x é\noutput %y"), 3, 15, "non-ASCII")
    at("non-ascii-name", body("%é = input f64[]\noutput %é"), 2, 3, "expected a value name")
    at("bad-value-name", body("%1a = input f64[]\noutput %1a"), 2, 3, "invalid value name")
    at("bad-graph-name", "graph @1a {\n}\n", 1, 7, "invalid graph name `@1a`")
    at("leading-zero", body("%c = const 01 : f64[]\noutput %c"), 2, 14, "leading zeros")
    at("dangling-dot", body("%c = const 1. : f64[]\noutput %c"), 2, 14, "digit after `.`")
    at("empty-exponent", body("%c = const 1e : f64[]\noutput %c"), 2, 14, "exponent")
    at("leading-dot", body("%c = const .5 : f64[]\noutput %c"), 2, 14, "unexpected character `.`")
    at("plus-sign", body("%c = const +1 : f64[]\noutput %c"), 2, 14, "unexpected character `+`")
    at("neg-nan", body("%c = const -nan : f64[]\noutput %c"), 2, 14, "after `-`")
    at("hex", body("%c = const 0x10 : f64[]\noutput %c"), 2, 14, "malformed number `0x10`")
    # -- numbers and constants
    at("f64-overflow", body("%c = const 1e309 : f64[]\noutput %c"), 2, 14, "too large for f64")
    at("f32-overflow", body("%c = const [1, 3.5e38] : f32[2]\noutput %c"), 2, 18,
       "too large for f32")
    at("bool-from-number", body("%c = const 1 : bool[]\noutput %c"), 2, 14, "`true` or `false`")
    at("float-from-bool", body("%c = const true : f64[]\noutput %c"), 2, 14, "a number for an f64")
    at("const-needs-type", body("%c = const 1.0\noutput %c"), 2, 17, "the constant's type")
    at("too-few-elements", body("%c = const [[1,2],[3]] : f64[2,2]\noutput %c"), 2, 23,
       "too few elements")
    at("too-many-elements", body("%c = const [1,2,3] : f64[2]\noutput %c"), 2, 19,
       "too many elements")
    at("list-too-shallow", body("%c = const [1,2] : f64[1,2]\noutput %c"), 2, 15, "nesting")
    at("list-too-deep", body("%c = const [[1,2]] : f64[2]\noutput %c"), 2, 15, "nesting")
    at("list-for-scalar", body("%c = const [1] : f64[]\noutput %c"), 2, 14, "single literal")
    at("empty-list", body("%c = const [] : f64[1]\noutput %c"), 2, 15, "lists are never empty")
    at("unclosed-list", body("%c = const [1,2 : f64[2]\noutput %c"), 2, 19, "`,` or `]`")
    at("const-too-large", body("%c = const 0 : f32[4097,4096]\noutput %c"), 2, 18,
       "constant too large")
    # -- types
    at("bad-dtype", body("%x = input f16[2]\noutput %x"), 2, 14,
       "dtype `f32`, `f64`, `bool` or `i32`")
    at("zero-dim", body("%x = input f64[2,0]\noutput %x"), 2, 20, "positive dimension, found 0")
    at("negative-dim", body("%x = input f64[-2]\noutput %x"), 2, 18, "a dimension")
    at("fractional-dim", body("%x = input f64[2.5]\noutput %x"), 2, 18, "a dimension")
    at("huge-shape", body("%x = input f32[1000000000,1000000000]\noutput %x"), 2, 14,
       "more than 2^31 - 1 elements")
    at("just-too-many", body("%x = input f32[65536,32768]\noutput %x"), 2, 14,
       "more than 2^31 - 1 elements")
    at("dim-overflows-usize", body("%x = input f32[99999999999999999999999]\noutput %x"), 2, 18,
       "too large")
    at("missing-bracket", body("%x = input f64\noutput %x"), 2, 17, "`[` after `f64`")
    # -- ops and attributes
    at("unknown-op", body(x + "%y = frobnicate %x\noutput %y"), 3, 8, "unknown op `frobnicate`")
    at("wrong-arity", body(x + "%y = add %x\noutput %y"), 3, 8, "`add` takes 2 operands, found 1")
    at("no-operands", body("%y = concat axis=0\noutput %y"), 2, 8, "one or more operands")
    at("missing-attr", body(x + "%y = powi %x\noutput %y"), 3, 8, "requires the attribute `n`")
    at("unknown-attr", body(x + "%y = powi %x n=2 m=3\noutput %y"), 3, 20, "unknown attribute `m`")
    at("attr-on-plain-op", body(x + "%y = exp %x n=2\noutput %y"), 3, 15,
       "`exp` takes no attributes")
    at("wrong-kind-int", body(x + "%y = powi %x n=[2]\noutput %y"), 3, 18, "an integer for `n`")
    at("wrong-kind-bool", body(x + "%y = reduce_sum %x keepdims=1\noutput %y"), 3, 31,
       "`true` or `false`")
    at("wrong-kind-list", body(x + "%y = reshape %x shape=6\noutput %y"), 3, 25,
       "a list of integers")
    at("wrong-kind-dtype", body(x + "%y = cast %x to=bool\noutput %y"), 3, 19,
       "`f32`, `f64` or `i32`")
    at("powi-out-of-range", body(x + "%y = powi %x n=3000000000\noutput %y"), 3, 18, "out of range")
    at("duplicate-attr", body(x + "%y = powi %x n=2 n=3\noutput %y"), 3, 20, "given twice")
    at("dup-axes", body(x + "%y = reduce_sum %x axes=[1,0,1]\noutput %y"), 3, 27,
       "distinct, found axis 1 twice")
    at("axis-out-of-range", body(x + "%y = reduce_max %x axes=[2]\noutput %y"), 3, 27,
       "out of range for an operand of rank 2")
    at("negative-axis", body(x + "%y = reduce_max %x axes=[-1]\noutput %y"), 3, 28,
       "non-negative integer")
    at("bad-perm", body(x + "%y = transpose %x perm=[0,0]\noutput %y"), 3, 8, "not a permutation")
    at("bad-slice", body(x + "%y = slice %x start=[0,2] stop=[2,2]\noutput %y"), 3, 8,
       "start < stop")
    at("slice-rank", body(x + "%y = slice %x start=[0] stop=[1]\noutput %y"), 3, 8,
       "one entry per axis")
    at("missing-stop", body(x + "%y = slice %x start=[0,0]\noutput %y"), 3, 8,
       "requires the attribute `stop`")
    at("bad-reshape", body(x + "%y = reshape %x shape=[4]\noutput %y"), 3, 8, "cannot reshape")
    at("broadcast-too-big",
       body(x + "%y = broadcast %x shape=[1000000000,1000000000,3]\noutput %y"), 3, 8,
       "invalid target shape")
    at("shape-mismatch", body(x + "%z = input f64[4]\n%y = add %x, %z\noutput %y"), 4, 8,
       "do not broadcast")
    at("matmul-inner", body(x + "%y = matmul %x, %x\noutput %y"), 3, 8, "inner dimensions")
    at("dtype-mixing", body(x + "%z = input f32[2,3]\n%y = mul %x, %z\noutput %y"), 4, 8,
       "same dtype")
    at("bool-arithmetic", body(x + "%b = lt %x, %x\n%y = add %b, %b\noutput %y"), 4, 8, "float")
    at("concat-axis", body(x + "%y = concat %x, %x axis=2\noutput %y"), 3, 8, "out of range")
    at("annotation-mismatch", body(x + "%y = exp %x : f64[3,2]\noutput %y"), 3, 17,
       "does not match the inferred type `f64[2,3]`")
    at("annotation-dtype", body(x + "%y = lt %x, %x : f64[2,3]\noutput %y"), 3, 20,
       "inferred type `bool[2,3]`")
    at("trailing-comma", body(x + "%y = add %x, %x,\noutput %y"), 3, 19, "after `,`")
    at("missing-comma", body(x + "%y = add %x %x\noutput %y"), 3, 15, "`,` between operands")
    at("junk-after-type", body(x + "%y = exp %x : f64[2,3] %x\noutput %y"), 3, 26,
       "end of line after the type")
    # -- names and statements
    at("undefined", body("%y = exp %nope\noutput %y"), 2, 12, "undefined value `%nope`")
    at("use-before-def", body("%y = exp %x\n%x = input f64[]\noutput %y"), 2, 12,
       "undefined value `%x`")
    # Line 2 of the source is line 3 of the file: the message names the file's line.
    at("redefinition", body(x + "%x = input f64[]\noutput %x"), 3, 3, "already defined on line 3")
    at("digit-redefinition", body("%1 = input f64[]\n%1 = neg %1\noutput %1"), 3, 3,
       "already defined")
    at("input-needs-type", body("%x = input\noutput %x"), 2, 13, "a type such as")
    at("input-junk", body("%x = input f64[] : f64[]\noutput %x"), 2, 20,
       "end of line after the input's type")
    at("missing-eq", body("%x input f64[]\noutput %x"), 2, 6, "`=` after the value name")
    at("not-a-statement", body("add %x, %y\noutput %x"), 2, 3, "a statement")
    at("two-per-line", body("%x = input f64[] %y = input f64[]\noutput %x"), 2, 20,
       "end of line after the input's type")
    # -- output
    at("missing-output", body("%x = input f64[]"), 3, 1, "an `output` statement")
    at("output-not-last", body("%x = input f64[]\noutput %x\n%y = neg %x"), 4, 3,
       "must be the last statement")
    at("two-outputs", body("%x = input f64[]\noutput %x\noutput %x"), 4, 3,
       "must be the last statement")
    at("empty-output", body("%x = input f64[]\noutput"), 3, 9, "a value `%name`")
    at("dup-output", body("%x = input f64[]\noutput %x, %x"), 3, 14, "output twice")
    at("output-undefined", body("%x = input f64[]\noutput %x, %z"), 3, 14, "undefined value `%z`")
    at("output-separator", body("%x = input f64[]\noutput %x %x"), 3, 13, "`,` or end of line")
    # -- file structure
    at("comments-only", "# nothing\n\n", 3, 1, "found end of file")
    at("text-before-graph", "hello\ngraph @g {\n}\n", 1, 1, "expected `graph @NAME {`")
    at("no-graph-name", "graph {\n}\n", 1, 7, "a graph name")
    at("brace-on-next-line", "graph @g\n{\n", 1, 9, "`{` after the graph name")
    at("statement-on-header-line", "graph @g { %x = input f64[]\n", 1, 12, "own line")
    at("unclosed-graph", "graph @g {\n  %x = input f64[]\n  output %x\n", 4, 1, "expected `}`")
    at("unclosed-no-output", "graph @g {\n  %x = input f64[]", 2, 19,
       "an `output` statement and `}`")
    at("two-graphs", body("%x = input f64[]\noutput %x") + "graph @h {\n}\n", 5, 1,
       "exactly one graph")
    at("text-after-graph", body("%x = input f64[]\noutput %x") + "%x\n", 5, 1,
       "end of file after the graph's closing `}`")
    at("junk-after-brace", body("%x = input f64[]\noutput %x").replace("}\n", "} x\n"), 4, 3,
       "end of line after `}`")
    # -- loops: `scan` statements and their bodies
    def scan(header, inner, after="output %y", pre="%x = input f64[]"):
        return body("%s\n%s\n%s\n}\n%s" % (pre, header, inner, after))
    one = "%c = input f64[]\noutput %c"
    at("scan-operand-count", scan("%y = scan %x, %x length=2 carry=1 xs=0 {", one), 3, 8,
       "found 2 operands")
    at("scan-operand-type", scan("%y = scan %x length=2 carry=1 xs=0 {",
                                 "%c = input f64[3]\noutput %c"), 3, 8,
       "carry operand 0 is f64[], the body needs f64[3]")
    at("scan-carry-type", scan("%y = scan %x length=2 carry=1 xs=0 {",
                               "%c = input f64[]\n%b = broadcast %c shape=[2]\noutput %b"), 3, 8,
       "carry 0 enters the body as f64[] but leaves it as f64[2]")
    at("scan-result-count", scan("%a, %b = scan %x length=1 carry=1 xs=0 {", one), 3, 3,
       "names 2 results but its body has 1 outputs")
    at("scan-all-underscore", scan("_ = scan %x length=1 carry=1 xs=0 {", one), 3, 3,
       "names at least one result")
    at("scan-underscore-not-scan", body("%x = input f64[]\n_, %b = add %x, %x\noutput %b"), 3, 11,
       "expected `scan`")
    at("scan-dup-result", scan("%y, %y = scan %x length=1 carry=1 xs=0 {", one), 3, 7,
       "named twice")
    at("scan-result-redefined", scan("%x, %y = scan %x length=1 carry=1 xs=0 {", one), 3, 3,
       "is already defined on line")
    at("scan-missing-length", scan("%y = scan %x carry=1 xs=0 {", one), 3, 8,
       "requires the attribute `length`")
    at("scan-unknown-attr", scan("%y = scan %x length=1 steps=2 {", one), 3, 25,
       "unknown attribute `steps`")
    at("scan-reverse-not-bool", scan("%y = scan %x length=1 carry=1 reverse=1 {", one), 3, 41,
       "`true` or `false` for `reverse`")
    at("scan-length-huge", scan("%y = scan %x length=3000000000 carry=1 {", one), 3, 23,
       "too large")
    at("scan-split-too-big", scan("%y = scan %x length=1 carry=1 xs=1 {", one), 3, 8,
       "need 2 operands, found 1")
    at("scan-no-operands", scan("%y = scan length=1 {", one), 3, 8, "one or more operands")
    at("scan-no-brace", scan("%y = scan %x length=1 carry=1 xs=0", one), 3, 37,
       "`{` opening the loop body")
    at("scan-annotation", scan("%y = scan %x length=1 carry=1 xs=0 : f64[] {", one), 3, 38,
       "`{` opening the loop body")
    at("scan-brace-then-junk", scan("%y = scan %x length=1 carry=1 xs=0 { %c", one), 3, 40,
       "each statement of the body goes on its own line")
    at("scan-body-no-output", scan("%y = scan %x length=1 carry=1 xs=0 {", "%c = input f64[]"),
       5, 3, "every loop body ends with `output")
    at("scan-extra-brace", scan("%y = scan %x length=1 carry=1 xs=0 {", one + "\n}"), 7, 3,
       "every graph ends with `output")
    at("scan-outer-value", scan("%y = scan %x length=1 carry=1 xs=0 {",
                                "%c = input f64[]\n%d = mul %c, %w\noutput %d",
                                pre="%x = input f64[]\n%w = input f64[]"), 6, 16,
       "`%w` is not defined in this region")
    at("scan-result-in-body", scan("%y = scan %x length=1 carry=1 xs=0 {",
                                   "%c = input f64[]\n%d = mul %c, %y\noutput %d"), 5, 16,
       "undefined value `%y`")
    at("scan-body-value-outside", scan("%y = scan %x length=1 carry=1 xs=0 {", one,
                                       after="output %c"), 7, 10, "undefined value `%c`")
    at("scan-unclosed", "graph @g {\n  %x = input f64[]\n  %y = scan %x length=1 carry=1 xs=0 {"
       "\n    %c = input f64[]\n    output %c\n", 6, 1,
       "expected `}` closing the body of the `scan` on line")
    at("scan-unclosed-no-output", "graph @g {\n  %x = input f64[]\n"
       "  %y = scan %x length=1 carry=1 xs=0 {\n    %c = input f64[]\n", 5, 1,
       "an `output` statement and `}` closing the body")
    at("scan-recompute-no-forward", scan("%y = scan %x length=1 carry=1 xs=0 recompute=1 {", one),
       4, 3, "`forward ... {`")
    at("scan-forward-misplaced", scan("%y = scan %x length=1 carry=1 xs=0 {",
                                      "forward length=1 carry=1 {\n%c = input f64[]\noutput %c\n}"
                                      "\n" + one), 4, 3, "`forward` only opens the forward loop")
    fwd = "forward length=LEN carry=1 xs=0 {\n%f = input f64[]\noutput %f\n}\n"
    bwd = "%cb = input f64[]\n%c = input f64[]\noutput %cb"
    at("scan-forward-length", scan("%y = scan %x, %x length=2 carry=1 xs=1 recompute=1 {",
                                   fwd.replace("LEN", "3") + bwd), 3, 8, "the forward loop runs 3 steps")
    at("scan-forward-types", scan("%y = scan %x, %x length=2 carry=1 xs=1 recompute=1 {",
                                  fwd.replace("%f = input f64[]", "%f = input f32[]").replace("LEN", "2") + bwd),
       3, 8, "invalid forward loop")
    deep = 65
    at("scan-nesting-too-deep",
       body("%x = input f64[]\n"
            + "%y = scan %x length=1 carry=1 xs=0 {\n%x = input f64[]\n" * deep
            + "output %x\n}\n" + "output %y\n}\n" * (deep - 1) + "output %y"),
       2 + 2 * deep - 1, 38, "nest more than 64 deep")

    # ---- resource limits -------------------------------------------------------------------
    put("gir/err-huge-2d.gir", graph(["%x = input f32[1000000000,1000000000]", "output %x"]))
    put("gir/err-huge-2pow31.gir", graph(["%x = input f32[2147483648]", "output %x"]))
    put("gir/err-huge-digits-dim.gir", graph(["%x = input f64[99999999999999999999999]", "output %x"]))
    put("gir/err-huge-usize-wrap.gir",
        graph(["%x = input f64[4294967296,4294967296]", "output %x"]))
    put("gir/err-huge-many-dims.gir",
        graph(["%x = input f64[" + ",".join(["2"] * 64) + "]", "output %x"]))
    put("gir/err-huge-const.gir", graph(["%c = const 1 : f32[1000000000,1000000000]", "output %c"]))
    put("gir/err-huge-const-limit.gir", graph(["%c = const 1 : f32[16777217]", "output %c"]))
    put("gir/err-huge-reshape.gir", graph(["%x = input f32[2]",
                                           "%y = reshape %x shape=[1000000000,1000000000]",
                                           "output %y"]))
    put("gir/err-huge-broadcast.gir", graph(["%x = input f32[1]",
                                             "%y = broadcast %x shape=[1000000000,1000000000]",
                                             "output %y"]))
    put("gir/err-huge-broadcast-binary.gir", graph(["%x = input f32[65536,1]",
                                                    "%y = input f32[1,65536]",
                                                    "%z = add %x, %y", "output %z"]))
    put("gir/err-huge-matmul.gir", graph(["%x = input f32[65536,1]", "%y = input f32[1,65536]",
                                          "%z = matmul %x, %y", "output %z"]))
    put("gir/err-huge-concat.gir", graph(["%x = input f32[1073741824]",
                                          "%z = concat %x, %x, %x axis=0", "output %z"]))
    put("gir/err-huge-select.gir", graph(["%c = input bool[65536,1,1]", "%a = input f32[1,65536,1]",
                                          "%b = input f32[1,1,2]", "%z = select %c, %a, %b",
                                          "output %z"]))
    # Valid per the format (2^31 - 1 elements), but over the CLI's memory limit when evaluated.
    put("gir/mem-max-elements.gir", graph(["%x = input f32[2147483647]",
                                               "%y = reduce_sum %x", "output %y"]))
    put("gir/mem-many-big.gir", graph(["%x = input f64[200000000]", "%a = exp %x",
                                           "%b = sin %a", "%c = cos %b", "%y = reduce_sum %c",
                                           "output %y"]))
    put("gir/mem-matmul.gir", graph(["%x = input f32[40000,1]", "%y = input f32[1,40000]",
                                         "%z = matmul %x, %y", "%s = reduce_sum %z",
                                         "output %s"]))
    put("gir/err-powi-huge.gir", graph(["%x = input f64[]", "%y = powi %x n=99999999999999",
                                        "output %y"]))
    put("gir/err-powi-min.gir", graph(["%x = input f64[]", "%y = powi %x n=-2147483648",
                                       "output %y"]))
    put("gir/err-axis-huge.gir", graph(["%x = input f64[2]",
                                        "%y = concat %x axis=18446744073709551616", "output %y"]))
    put("gir/err-slice-huge.gir", graph(["%x = input f64[2]",
                                         "%y = slice %x start=[0] stop=[18446744073709551615]",
                                         "output %y"]))

    # ---- type errors: every op, several ways ------------------------------------------------
    base = ["%x = input f64[2,3]", "%f = input f32[2,3]", "%b = input bool[2,3]",
            "%s = input f64[]", "%v = input f64[4]"]
    for op in OPS_UNARY:
        put("gir/err-%s-bool.gir" % op, graph(base + ["%%y = %s %%b" % op, "output %y"]))
        put("gir/err-%s-arity.gir" % op, graph(base + ["%%y = %s %%x, %%x" % op, "output %y"]))
        put("gir/err-%s-annot.gir" % op, graph(base + ["%%y = %s %%x : f32[2,3]" % op,
                                                       "output %y"]))
        put("gir/err-%s-attr.gir" % op, graph(base + ["%%y = %s %%x n=2" % op, "output %y"]))
    for op in OPS_BINARY + OPS_CMP:
        put("gir/err-%s-mixed.gir" % op, graph(base + ["%%y = %s %%x, %%f" % op, "output %y"]))
        put("gir/err-%s-shape.gir" % op, graph(base + ["%%y = %s %%x, %%v" % op, "output %y"]))
        put("gir/err-%s-unary.gir" % op, graph(base + ["%%y = %s %%x" % op, "output %y"]))
        put("gir/err-%s-bool.gir" % op, graph(base + ["%%y = %s %%b, %%b" % op, "output %y"]))
    for op in OPS_REDUCE:
        put("gir/err-%s-axis.gir" % op, graph(base + ["%%y = %s %%x axes=[2]" % op, "output %y"]))
        put("gir/err-%s-dup.gir" % op, graph(base + ["%%y = %s %%x axes=[1,1]" % op, "output %y"]))
        put("gir/err-%s-neg.gir" % op, graph(base + ["%%y = %s %%x axes=[-1]" % op, "output %y"]))
        put("gir/err-%s-keep.gir" % op, graph(base + ["%%y = %s %%x keepdims=1" % op, "output %y"]))
    for name, line in [
        ("select-cond", "%y = select %x, %x, %x"),
        ("select-mixed", "%y = select %b, %x, %f"),
        ("select-arity", "%y = select %b, %x"),
        ("select-shape", "%y = select %b, %v, %x"),
        ("cast-none", "%y = cast %x"),
        ("cast-bool", "%y = cast %x to=bool"),
        ("cast-junk", "%y = cast %x to=f16"),
        ("powi-none", "%y = powi %x"),
        ("powi-float", "%y = powi %x n=2.5"),
        ("reshape-count", "%y = reshape %x shape=[5]"),
        ("reshape-zero", "%y = reshape %x shape=[0,6]"),
        ("reshape-none", "%y = reshape %x"),
        ("transpose-dup", "%y = transpose %x perm=[0,0]"),
        ("transpose-short", "%y = transpose %x perm=[0]"),
        ("transpose-range", "%y = transpose %x perm=[0,5]"),
        ("broadcast-shrink", "%y = broadcast %x shape=[3]"),
        ("broadcast-mismatch", "%y = broadcast %x shape=[2,4]"),
        ("slice-empty", "%y = slice %x start=[1,0] stop=[1,3]"),
        ("slice-oob", "%y = slice %x start=[0,0] stop=[3,3]"),
        ("slice-rank", "%y = slice %x start=[0] stop=[1]"),
        ("slice-missing", "%y = slice %x start=[0,0]"),
        ("concat-axis", "%y = concat %x, %x axis=9"),
        ("concat-scalar", "%y = concat %s, %s axis=0"),
        ("concat-mixed", "%y = concat %x, %f axis=0"),
        ("concat-shape", "%y = concat %x, %v axis=0"),
        ("concat-none", "%y = concat axis=0"),
        ("matmul-rank", "%y = matmul %v, %v"),
        ("matmul-inner", "%y = matmul %x, %x"),
        ("matmul-mixed", "%y = matmul %x, %f"),
        ("unknown-attr", "%y = neg %x foo=1"),
        ("dup-attr", "%y = reduce_sum %x axes=[0] axes=[1]"),
        ("attr-no-value", "%y = reduce_sum %x axes="),
        ("annot-garbage", "%y = neg %x : banana"),
    ]:
        put("gir/err-%s.gir" % name, graph(base + [line, "output %y"]))
    # Integer indexing: bad index dtypes, axes, shapes, attribute kinds and i32 literals.
    ibase = base + ["%i = input i32[4]", "%k = input i32[]"]
    for name, line in [
        ("gather-float-index", "%y = gather %x, %v axis=0"),
        ("gather-axis", "%y = gather %x, %i axis=2"),
        ("gather-no-axis", "%y = gather %x, %i"),
        ("scatter-shape", "%y = scatter_add %x, %i axis=0 size=3"),
        ("scatter-size-zero", "%y = scatter_add %v, %i axis=0 size=0"),
        ("scatter-int-updates", "%y = scatter_add %i, %i axis=0 size=3"),
        ("iota-bool", "%y = iota type=bool[3] axis=0"),
        ("iota-axis", "%y = iota type=i32[3] axis=1"),
        ("iota-operand", "%y = iota %x type=i32[3] axis=0"),
        ("iota-type-junk", "%y = iota type=i32 axis=0"),
        ("argmax-bool", "%y = argmax %b axis=0"),
        ("argmin-axis", "%y = argmin %x axis=2"),
        ("random-seed-f64", "%y = random_uniform %s, %k type=f32[2]"),
        ("random-seed-vector", "%y = random_uniform %i, %k type=f32[2]"),
        ("random-int-type", "%y = random_uniform %k, %k type=i32[2]"),
        ("const-i32-float", "%y = const 1.5 : i32[]"),
        ("const-i32-overflow", "%y = const 2147483648 : i32[]"),
        ("eq-i32-float", "%y = eq %i, %v"),
    ]:
        put("gir/err-%s.gir" % name, graph(ibase + [line, "output %y"]))

    # ---- valid edge cases (every command must succeed) -------------------------------------
    put("gir/ok-minimal.gir", graph(["%x = input f64[]", "output %x"]))
    indexing = ["%x = input f64[4,3]", "%idx = input i32[5]", "%seed = input i32[]",
                "%g = gather %x, %idx axis=0", "%s = scatter_add %g, %idx axis=0 size=4",
                "%a = argmax %s axis=1", "%ga = gather %x, %a axis=0",
                "%i = iota type=f64[4,3] axis=1", "%r = random_uniform %seed, %seed type=f64[4,3]",
                "%m = mul %ga, %r", "%t = add %m, %i", "%u = add %t, %s", "%y = reduce_sum %u"]
    put("gir/ok-indexing.gir", graph(indexing + ["output %y, %a"]))
    # Out-of-range constant indices are clamped, not an error.
    put("gir/ok-gather-clamped.gir", graph(["%x = input f32[3]",
                                            "%i = const [-7, 3, 2147483647] : i32[3]",
                                            "%y = gather %x, %i axis=0", "output %y"]))
    # An integer first output has no gradient.
    put("gir/grad-int-output.gir", graph(indexing + ["output %a, %y"]))
    put("gir/ok-const-only.gir", graph(["%c = const 1.5 : f64[]", "output %c"]))
    put("gir/ok-crlf.gir", graph(["%x = input f64[]", "output %x"]).replace("\n", "\r\n"))
    put("gir/ok-tabs-compact.gir", "graph @g {\n\t%x=input f64[2]\n\t%y=mul %x,%x\n\toutput %y\n}\n")
    put("gir/ok-comments.gir", "# hi\n\n" + graph(["# inner", "%x = input f64[] # trailing",
                                                   "output %x"]) + "# bye\n")
    put("gir/ok-nan-const.gir", graph(["%c = const nan : f64[]", "%x = input f64[]",
                                       "%y = add %x, %c", "output %y"]))
    put("gir/ok-inf-const.gir", graph(["%c = const [inf, -inf] : f32[2]", "output %c"]))
    put("gir/ok-log-neg.gir", graph(["%x = input f64[]", "%c = const -1 : f64[]",
                                     "%m = sub %c, %x", "%a = abs %m", "%n = neg %a",
                                     "%s = sub %n, %c", "%t = sub %s, %c",
                                     "%l = log %c", "%y = add %t, %l", "output %y"]))
    put("gir/ok-div-zero.gir", graph(["%x = input f64[]", "%z = const 0 : f64[]",
                                      "%y = div %x, %z", "output %y"]))
    put("gir/ok-exp-overflow.gir", graph(["%x = input f32[]", "%c = const 1000 : f32[]",
                                          "%m = add %x, %c", "%y = exp %m", "output %y"]))
    put("gir/ok-powi-extremes.gir", graph(["%x = input f64[]", "%a = powi %x n=1073741824",
                                           "%b = powi %x n=-1073741824", "%c = powi %x n=0",
                                           "%y = add %a, %b", "%z = add %y, %c", "output %z"]))
    put("gir/ok-subnormal.gir", graph(["%c = const 4.9e-324 : f64[]", "%d = const 1e-45 : f32[]",
                                       "output %c, %d"]))
    put("gir/ok-tiny-literal.gir", graph(["%c = const 1e-999 : f64[]", "output %c"]))
    put("gir/ok-digit-names.gir", graph(["%0 = input f64[]", "%1 = neg %0", "output %1"]))
    put("gir/ok-input-output.gir", graph(["%x = input f64[2]", "%y = input bool[]",
                                          "output %y, %x"]))
    put("gir/ok-bool-only.gir", graph(["%x = input f64[3]", "%y = input f64[3]",
                                       "%b = lt %x, %y", "output %b"]))
    put("gir/ok-rank4.gir", graph(["%x = input f64[2,1,3,1]", "%y = input f64[1,2,1,2]",
                                   "%z = mul %x, %y", "%t = transpose %z perm=[3,2,1,0]",
                                   "%s = reduce_sum %t axes=[0,2] keepdims=true", "output %s"]))
    put("gir/ok-reduce-nothing.gir", graph(["%x = input f64[2,3]",
                                            "%y = reduce_max %x axes=[]", "output %y"]))
    put("gir/ok-many-outputs.gir", graph(["%x = input f64[]"] +
                                         ["%%o%d = powi %%x n=%d" % (i, i) for i in range(50)] +
                                         ["output " + ", ".join("%%o%d" % i for i in range(50))]))
    put("gir/ok-unused-input.gir", graph(["%x = input f64[]", "%u = input f32[1000]",
                                          "%y = neg %x", "output %y"]))
    chain = ["%v0 = input f64[]"] + ["%%v%d = sin %%v%d" % (i, i - 1) for i in range(1, 5000)]
    put("gir/ok-long-chain.gir", graph(chain + ["output %v4999"]))
    wide = ["%x = input f64[]"] + ["%%a%d = add %%x, %%x" % i for i in range(2000)]
    acc = ["%s0 = add %a0, %a1"] + ["%%s%d = add %%s%d, %%a%d" % (i, i - 1, i + 1)
                                    for i in range(1, 1999)]
    put("gir/ok-wide.gir", graph(wide + acc + ["output %s1998"]))
    put("gir/ok-zero-size-comment.gir", "graph @g { # comment after brace\n  %x = input f64[]\n  "
        "output %x # done\n} # end\n")
    put("gir/ok-max-const.gir", graph(["%c = const 0.5 : f32[4096,4096]",
                                       "%y = reduce_sum %c", "output %y"]))
    # --grad must be refused on these (non-scalar or bool first output, no float input).
    put("gir/grad-vector-output.gir", graph(["%x = input f64[3]", "%y = exp %x", "output %y"]))
    put("gir/grad-bool-output.gir", graph(["%x = input f64[]", "%y = input f64[]",
                                           "%b = lt %x, %y", "output %b"]))
    put("gir/grad-bool-input.gir", graph(["%b = input bool[]", "%c = cast %b to=f64",
                                          "%z = neg %c", "output %b, %z"]))

    # --jacobian / --hessian must be refused on these (the result would be absurdly large).
    put("gir/jac-huge.gir", graph(["%x = input f64[100000]", "%y = sin %x", "%s = reduce_sum %y",
                                   "output %s, %y"]))
    put("gir/jac-huge-hessian.gir", graph(["%x = input f32[200000]", "%y = mul %x, %x",
                                           "%s = reduce_sum %y", "output %s, %y"]))

    # Under the element limit (46000^2 < 2^31), but 17 GB of f64: the CLI's memory limit.
    put("gir/jac-memory.gir", graph(["%x = input f64[46000]", "%y = sin %x",
                                     "%s = reduce_sum %y", "output %s, %y"]))

    # ---- inputs JSON (for inputs/graph.gir) --------------------------------------------------
    put("inputs/graph.gir", graph(["%x = input f64[]", "%v = input f32[2,3]", "%b = input bool[2]",
                                   "%m = mul %v, %v", "%s = reduce_sum %m", "%c = cast %s to=f64",
                                   "%y = add %x, %c", "output %y, %b"], name="inputs"))
    good_v = "[[1, 2, 3], [4, 5, 6]]"
    def inp(x="1.5", v=good_v, b="[true, false]"):
        return '{"x": %s, "v": %s, "b": %s}' % (x, v, b)
    put("inputs/ok-plain.json", inp())
    put("inputs/ok-nonfinite.json", inp(x='"nan"', v='[["inf", "-inf", 0], [-0, 1e-45, 3.4e38]]'))
    put("inputs/ok-exponents.json", inp(x="1E+2", v="[[1e-400, 2E-3, -0.0], [4, 5, 6e0]]"))
    put("inputs/ok-order.json", '{"b": [false, false], "v": %s, "x": -0}' % good_v)
    put("inputs/ok-whitespace.json", "\n\t " + inp() + " \n\n")
    put("inputs/ok-long-digits.json", inp(x="0." + "3" * 5000))
    for name, text in [
        ("empty", ""),
        ("null", "null"),
        ("array", "[1, 2]"),
        ("string", '"x"'),
        ("number", "1"),
        ("truncated", inp()[:-5]),
        ("trailing-comma", inp()[:-1] + ",}"),
        ("trailing-junk", inp() + "}"),
        ("nul", inp() + "\0"),
        ("bom", "\ufeff" + inp()),
        ("missing", '{"x": 1, "v": %s}' % good_v),
        ("extra", inp()[:-1] + ', "w": 1}'),
        ("duplicate", '{"x": 1, "x": 2, "v": %s, "b": [true, true]}' % good_v),
        ("empty-key", inp()[:-1] + ', "": 1}'),
        ("x-list", inp(x="[1]")),
        ("x-string", inp(x='"1"')),
        ("x-NaN", inp(x='"NaN"')),
        ("x-Infinity", inp(x='"Infinity"')),
        ("x-bare-nan", inp(x="NaN")),
        ("x-bool", inp(x="true")),
        ("x-null", inp(x="null")),
        ("x-object", inp(x='{"a": 1}')),
        ("x-1e999", inp(x="1e999")),
        ("x-neg-1e999", inp(x="-1e999")),
        ("x-huge-digits", inp(x="9" * 400)),
        ("x-hex", inp(x="0x10")),
        ("x-plus", inp(x="+1")),
        ("x-leading-zero", inp(x="01")),
        ("x-dot", inp(x="1.")),
        ("v-f32-overflow", inp(v="[[1, 2, 3], [4, 5, 3.5e38]]")),
        ("v-flat", inp(v="[1, 2, 3, 4, 5, 6]")),
        ("v-short-row", inp(v="[[1, 2, 3], [4, 5]]")),
        ("v-long-row", inp(v="[[1, 2, 3], [4, 5, 6, 7]]")),
        ("v-extra-row", inp(v="[[1, 2, 3], [4, 5, 6], [7, 8, 9]]")),
        ("v-transposed", inp(v="[[1, 2], [3, 4], [5, 6]]")),
        ("v-too-deep", inp(v="[[[1], [2], [3]], [[4], [5], [6]]]")),
        ("v-scalar", inp(v="1")),
        ("v-empty", inp(v="[]")),
        ("v-empty-rows", inp(v="[[], []]")),
        ("v-bools", inp(v="[[true, 2, 3], [4, 5, 6]]")),
        ("v-strings", inp(v='[["1", 2, 3], [4, 5, 6]]')),
        ("v-null", inp(v="[[null, 2, 3], [4, 5, 6]]")),
        ("v-deep", inp(v="[" * 100000 + "1" + "]" * 100000)),
        ("v-open", inp(v="[" * 100000)),
        ("b-numbers", inp(b="[1, 0]")),
        ("b-strings", inp(b='["true", "false"]')),
        ("b-short", inp(b="[true]")),
        ("b-scalar", inp(b="true")),
        ("b-nan", inp(b='["nan", true]')),
        ("key-surrogate", '{"\\ud800": 1}'),
        ("key-case", '{"X": 1, "v": %s, "b": [true, true]}' % good_v),
        ("single-quotes", "{'x': 1}"),
        ("comment", "// c\n" + inp()),
        ("nested-object", '{"inputs": %s}' % inp()),
        ("huge-array", inp(v="[" + ", ".join(["1"] * 200000) + "]")),
    ]:
        put("inputs/err-%s.json" % name, text)
    noise = random.Random(7)
    for k in range(20):
        put("inputs/err-noise-%02d.json" % k, bytes(noise.randrange(256) for _ in range(64)))

    for name, data in sorted(files.items()):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print("wrote %d files" % len(files))


if __name__ == "__main__":
    main()
