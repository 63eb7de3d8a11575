"""Generate the Python gRPC API from ``proto/settlement/v1/*.proto``.

One command makes every generated file (``make proto`` runs it), and
``tests/unit/test_proto_stubs_fresh.py`` fails when the committed files differ
from what it makes. Run from anywhere::

    python scripts/gen_proto.py              # into the work tree
    python scripts/gen_proto.py --out DIR    # into DIR/settlement/v1/

The compiler is the one bundled with ``grpcio-tools`` (run in-process), with
the ``google/protobuf/*.proto`` files it ships, and the ``mypy-protobuf``
plugins for the ``.pyi`` stubs. Output depends only on the .proto files and
those tool versions, so regeneration is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_PATH = Path("settlement") / "v1"
BUNDLED_PROTO_ROOT = Path(grpc_tools.__file__).resolve().parent / "_proto"

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
"""Files the compiler writes per .proto; older ones are removed before a run."""

PACKAGE_INIT = "__init__.py"
PACKAGE_INIT_TEXT = (
    '"""Generated gRPC API of the settlement hub (package settlement.v1).\n'
    "\n"
    "Do not edit: change proto/settlement/v1/*.proto and run `make proto`.\n"
    '"""\n'
)


def proto_files() -> list[Path]:
    """The .proto files of the package, in a fixed order."""
    return sorted((PROTO_ROOT / PACKAGE_PATH).glob("*.proto"))


def is_generated(path: Path) -> bool:
    """Whether a file in the package directory is written by :func:`generate`."""
    return path.name == PACKAGE_INIT or path.name.endswith(GENERATED_SUFFIXES)


def find_plugin(name: str) -> Path:
    """A protoc plugin installed beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return Path(found)


def generate(out_root: Path) -> list[Path]:
    """Write the generated package into ``out_root/settlement/v1``; return its files."""
    sources = proto_files()
    if not sources:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE_PATH}")
    package_dir = out_root / PACKAGE_PATH
    package_dir.mkdir(parents=True, exist_ok=True)
    # A .proto that was removed or renamed must not leave its stubs behind.
    for old in package_dir.iterdir():
        if old.is_file() and old.name.endswith(GENERATED_SUFFIXES):
            old.unlink()
    arguments = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={BUNDLED_PROTO_ROOT}",
        f"--plugin=protoc-gen-mypy={find_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={find_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out=quiet:{out_root}",
        f"--mypy_grpc_out=quiet:{out_root}",
        *(str(source) for source in sources),
    ]
    status = protoc.main(arguments)
    if status != 0:
        raise SystemExit(f"protoc failed with exit status {status}")
    (package_dir / PACKAGE_INIT).write_text(PACKAGE_INIT_TEXT, encoding="utf-8")
    return sorted(path for path in package_dir.iterdir() if path.is_file() and is_generated(path))


def main(argv: list[str] | None = None) -> int:
    """Command line: generate into the work tree or into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT,
        help="root to write settlement/v1/ under (default: the work tree)",
    )
    arguments = parser.parse_args(argv)
    for path in generate(arguments.out.resolve()):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
