"""Code-size evidence for issue 15's "Done when": the largest functions (lines, via ast) of the package,
of gansr_ext/train/ and of the evaluation, the largest modules, and the duplicated blocks in the tree.

    python python/code_metrics.py [--root DIR] [--top N]

Duplicates come from the `duplicates` tool over the whole tree (`duplicates --most 200 --seconds 120`
in the root); without it on PATH the line says so.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
from pathlib import Path


def functions(path: Path, root: Path) -> list[tuple[int, str]]:
    """(lines, 'file:qualified.name') of every function and method in a file."""
    out = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    out.append((child.end_lineno - child.lineno + 1, f"{path.relative_to(root)}:{name}"))
                walk(child, name + ".")

    walk(ast.parse(path.read_text()), "")
    return out


def largest(rows, top):
    return sorted(rows, key=lambda r: (-r[0], r[1]))[:top]


def duplicated_blocks(root: Path) -> str:
    tool = shutil.which("duplicates")
    if tool is None:
        return "n/a (`duplicates` not on PATH)"
    text = subprocess.run([tool, "--most", "200", "--seconds", "120"], cwd=root, capture_output=True,
                          text=True).stdout
    m = re.search(r"(\d+) pairs? of places", text)
    return m.group(1) if m else ("0" if "no duplicates" in text else "? " + text.splitlines()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    root = args.root.resolve()
    files = sorted((root / "gansr_ext").rglob("*.py"))
    fns = [f for p in files for f in functions(p, root)]
    areas = {"package": fns,
             "train/": [f for f in fns if f[1].startswith("gansr_ext/train/")],
             "evaluation": [f for f in fns if re.match(r"gansr_ext/evaluate", f[1])]}
    for area, rows in areas.items():
        print(f"largest functions, {area}: " + "; ".join(f"{n} {name}" for n, name in largest(rows, args.top)))
    modules = [(len(p.read_text().splitlines()), str(p.relative_to(root))) for p in files]
    print("largest modules: " + "; ".join(f"{n} {name}" for n, name in largest(modules, args.top)))
    print(f"modules over 400 lines: {sum(n > 400 for n, _ in modules)}; functions over 60 lines in train/ and "
          f"the evaluation: {sum(n > 60 for n, _ in areas['train/'] + areas['evaluation'])}")
    print(f"duplicated blocks (pairs, whole tree): {duplicated_blocks(root)}")


if __name__ == "__main__":
    main()
