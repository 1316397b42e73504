"""Rewrite a .cu file for cudasim: `k<<<grid, block[, shared[, stream]]>>>(args)` becomes
`::cudasim::launch("k", k, grid, block, shared, stream, args)`, and each `__shared__ T name[...];`
declaration is followed (on its line) by `::cudasim::shared_region(&name, sizeof(name));`, which lets
cudasim poison shared memory before every block; nothing else changes.

Usage: python rewrite_launches.py IN.cu OUT.cpp [NAME]

The output starts with `#line 1 "NAME"` (default IN.cu) and keeps every newline where it was, so
compiler errors and cudasim's messages (__FILE__ / __LINE__) point at the .cu file's own lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_OPEN, _CLOSE = "([{", ")]}"


def _kernel_start(text: str, end: int) -> int:
    """Start of the kernel expression that ends right before `end` (an id, maybe qualified, maybe templated)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: find the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            depth += {">": 1, "<": -1}.get(text[i], 0)
            if depth == 0:
                break
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def _split_config(config: str) -> list[str]:
    """The launch configuration's top-level comma-separated parts."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(config):
        depth += (ch in _OPEN) - (ch in _CLOSE)
        if ch == "," and depth == 0:
            parts.append(config[start:i])
            start = i + 1
    parts.append(config[start:])
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"launch configuration <<<{config}>>> needs 2 to 4 parts")
    return parts + ["0", "nullptr"][len(parts) - 2:]


_SHARED = re.compile(r"(\b__shared__\b[^;]*?(\w+)\s*(?:\[[^;]*\])?\s*;)")


def _register_shared(text: str) -> str:
    if re.search(r"\bextern\s+__shared__", text):
        raise ValueError("extern (dynamic) __shared__ memory is not supported by cudasim")
    return _SHARED.sub(r"\1 ::cudasim::shared_region(&\2, sizeof(\2));", text)


def rewrite(text: str) -> str:
    text = _register_shared(text)
    out, pos = [], 0
    while (open_at := text.find("<<<", pos)) >= 0:
        close_at = text.index(">>>", open_at)
        paren = close_at + 3
        while text[paren].isspace():
            paren += 1
        if text[paren] != "(":
            raise ValueError(f"no argument list after the launch at offset {close_at}")
        start = _kernel_start(text, open_at)
        kernel = text[start:open_at]
        config = _split_config(text[open_at + 3:close_at])
        has_args = text[paren + 1:].lstrip()[:1] != ")"
        name = " ".join(kernel.split())
        out.append(text[pos:start])
        out.append(f'::cudasim::launch("{name}", {kernel}, {",".join(config)}{"," if has_args else ""}')
        pos = paren + 1
    out.append(text[pos:])
    return "".join(out)


def main(argv: list[str]) -> None:
    src, dst = Path(argv[1]), Path(argv[2])
    name = argv[3] if len(argv) > 3 else str(src)
    dst.write_text(f'#line 1 "{name}"\n' + rewrite(src.read_text()))


if __name__ == "__main__":
    main(sys.argv)
