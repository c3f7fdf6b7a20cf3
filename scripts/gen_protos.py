"""Generate Python code and .pyi stubs for every proto under protos/ (make protos).

`--check` generates into a temporary folder and fails when the result differs
from the committed tree, so CI catches protos changed without regenerating.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "libs" / "protos" / "src"


def generate(out: Path) -> None:
    """Regenerate `out`/northstar from protos/, from scratch."""
    target = out / "northstar"
    if target.exists():
        shutil.rmtree(target)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Regular packages (not namespace packages) so mypy and hatch see one tree.
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    (target / "py.typed").touch()


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    found = [f"only in the tree: {n}" for n in cmp.left_only]
    found += [f"missing from the tree: {n}" for n in cmp.right_only]
    found += [f"differs: {n}" for n in cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        found += [f"{name}/{d}" for d in _differences(a / name, b / name)] if sub else []
    return found


def main() -> int:
    """Generate, or with --check compare a fresh generation with the tree."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not args.check:
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        problems = _differences(OUT / "northstar", Path(tmp) / "northstar")
    if problems:
        sys.stderr.write(
            "generated code is stale; run `make protos`:\n  " + "\n  ".join(problems) + "\n"
        )
        return 1
    sys.stdout.write("generated code is up to date\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
