#!/usr/bin/env python3
"""Module contracts of src/, checked (docs/design.md, "Layers").

1. Every module header opens with its contract, whose "It may call:" line
   names the modules the module may use. Each #include "x.h" of a module's
   .c and .h must name one of them (or the module itself, util.h, which every
   layer may include, or the public tidalloc.h).
2. No function in src/*.c is longer than MAX_LINES lines (from its opening
   line to its closing brace).
Usage: check_contracts.py SRC_DIR   (exit 1 listing every violation)."""
import os
import re
import sys

MAX_LINES = 60
ALWAYS = {"util", "tidalloc"}
# Headers of data and inline helpers that say "calls nothing".
NOTHING = re.compile(r"(calls nothing|may call: nothing)", re.I)


def modules(src):
    return sorted({os.path.splitext(f)[0] for f in os.listdir(src) if f.endswith((".c", ".h"))})


def may_call(header_text, known):
    m = re.search(r"It may call:(.*?)(?:\.\s*(?:\n|\*/)|\*/)", header_text, re.S)
    if not m:
        return None if not NOTHING.search(header_text) else set()
    if re.match(r"\s*every module", m.group(1)):
        return set(known)
    text = re.sub(r"\([^)]*\)", " ", m.group(1).replace("*", " "))
    return {w for w in re.findall(r"[a-z_]+", text) if w in known}


def includes(path):
    with open(path, encoding="utf-8") as f:
        return re.findall(r'^\s*#\s*include\s+"([a-z_]+)\.h"', f.read(), re.M)


def strip(text):
    """The text with comments, strings and character literals blanked (lines kept)."""
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(\\.|[^"\\\n])*"', '""', text)
    return re.sub(r"'(\\.|[^'\\\n])'", "' '", text)


def long_functions(path):
    """(name, first line, length) of functions longer than MAX_LINES: a
    top-level brace whose preceding declaration has a parameter list."""
    with open(path, encoding="utf-8") as f:
        text = strip(f.read())
    out, depth, decl_start, opened, name = [], 0, 0, None, None
    line = 1
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        elif ch == "{":
            if depth == 0:
                decl = text[decl_start:i]
                m = re.search(r"(\w+)\s*\([^;{}]*\)\s*$", decl)
                if m and "=" not in decl.split("(")[0]:
                    first = decl_start + len(decl) - len(decl.lstrip())   # the declaration's first line
                    name, opened = m.group(1), text.count("\n", 0, first) + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if name and line - opened + 1 > MAX_LINES:
                    out.append((name, opened, line - opened + 1))
                name, decl_start = None, i + 1
        elif ch in ";" and depth == 0:
            decl_start = i + 1
        elif ch == "#" and depth == 0 and (i == 0 or text[i - 1] == "\n"):
            decl_start = text.find("\n", i) + 1 or i
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    known = set(modules(src))
    errors = []
    for mod in sorted(known):
        h = os.path.join(src, mod + ".h")
        if not os.path.exists(h):
            continue
        with open(h, encoding="utf-8") as f:
            allowed = may_call(f.read(), known)
        if allowed is None:
            errors.append(f"{mod}.h: no 'It may call:' line in its contract")
            continue
        allowed |= ALWAYS | {mod}
        for ext in (".h", ".c"):
            path = os.path.join(src, mod + ext)
            if not os.path.exists(path):
                continue
            for inc in includes(path):
                if inc not in allowed and inc in known | ALWAYS:
                    errors.append(f"{mod}{ext} includes {inc}.h, which its contract's 'It may call' line does not name")
    for f in sorted(os.listdir(src)):
        if f.endswith(".c"):
            for name, line, n in long_functions(os.path.join(src, f)):
                errors.append(f"{f}:{line}: {name}() is {n} lines (at most {MAX_LINES})")
    for e in errors:
        print(e)
    print(f"contracts: {len(known)} modules checked, {len(errors)} violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
