"""Build the Lambda zip: the handler, the part of mani's core it imports, and the wheels.

    python cloud_workers/aws/package.py --deps DIR --out cloud_workers/aws/dist/mani-lambda.zip

mani's modules are the ones the handler really imports (found by importing it in a fresh
interpreter), with the data files of their packages (email templates, certificate templates
and fonts), so the zip follows the code when modules move. `--deps` is a folder that `pip
install --target` filled with the wheels Lambda's python3.11 runtime lacks (deploy.sh does it).
Files go in sorted, with fixed dates: the same sources give the same zip, byte for byte.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HANDLER = Path(__file__).resolve().parent / "lambda_handler.py"
OWN_PACKAGES = ("backend", "certificates")
DATA_SUFFIXES = (".j2", ".toml", ".ttf", ".otf", ".txt", ".json", ".png", ".jpg")
# Never needed at run time in Lambda: scripts, docs, tests, the runtime's own boto3.
PRUNE_DIRS = {"__pycache__", "bin", "share", "tests", "test"}
PRUNE_TOP = {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "six.py", "pip", "setuptools", "_distutils_hack"}
# Sources and stubs shipped in wheels, and fontTools' optional Cython speed-ups (it falls back to
# the same code in pure Python; certificate subsetting does not use them): ~14 MB unpacked.
PRUNE_SUFFIXES = (".c", ".pyx", ".pxd", ".pyi", ".h")
OPTIONAL_EXTENSIONS = ("fontTools/",)
FIXED_DATE = (2024, 1, 1, 0, 0, 0)


def imported_modules() -> list[Path]:
    """The files of mani's modules that `import lambda_handler` loads."""
    probe = (
        "import json, sys; sys.path[:0] = [sys.argv[2], sys.argv[1]]; import lambda_handler;"
        "print(json.dumps(sorted({getattr(v, '__file__', None) or '' for k, v in sys.modules.items()"
        f" if k.split('.')[0] in {OWN_PACKAGES!r}}})))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANI_")}
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT), str(HANDLER.parent)], check=True, capture_output=True,
                         text=True, cwd=tempfile.gettempdir(), env=env).stdout
    return [Path(p) for p in json.loads(out) if p]


def own_files() -> dict[str, Path]:
    """Archive name -> source file for mani's part: modules, package __init__s, data files."""
    files: dict[str, Path] = {}
    packages: set[Path] = set()
    modules = set(imported_modules())
    # The renderer is self-contained and loads parts of itself lazily: ship all of it.
    modules |= set((ROOT / "certificates").rglob("*.py"))
    for module in sorted(modules):
        files[module.relative_to(ROOT).as_posix()] = module
        packages.add(module.parent)
    for package in packages:
        # Data folders beside a package's modules (no __init__.py): templates, fonts.
        for path in sorted(package.iterdir()):
            if path.is_file() and path.suffix in DATA_SUFFIXES:
                files[path.relative_to(ROOT).as_posix()] = path
            elif path.is_dir() and not (path / "__init__.py").exists() and path.name not in PRUNE_DIRS:
                for data in sorted(path.rglob("*")):
                    if data.is_file() and (data.suffix in DATA_SUFFIXES or data.name.startswith("LICENSE")):
                        files[data.relative_to(ROOT).as_posix()] = data
    files["lambda_handler.py"] = HANDLER
    return files


def dependency_files(deps: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(deps.rglob("*")):
        relative = path.relative_to(deps)
        if not path.is_file() or relative.parts[0] in PRUNE_TOP or set(relative.parts) & PRUNE_DIRS:
            continue
        if path.suffix in PRUNE_SUFFIXES or (path.suffix == ".so" and relative.as_posix().startswith(OPTIONAL_EXTENSIONS)):
            continue
        if relative.parts[0].endswith(".dist-info") and path.name not in ("METADATA", "entry_points.txt"):
            continue  # importlib.metadata reads METADATA; RECORD, licences and the rest are not needed
        files[relative.as_posix()] = path
    return files


def build(*, deps: Path, out: Path, compiled: bool = True) -> dict:
    files = {**dependency_files(deps), **own_files()}
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging)
        for name, source in files.items():
            target = stage / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if compiled:
            # Lambda's /var/task is read-only: without .pyc files every cold start compiles.
            compileall.compile_dir(stage, quiet=1, workers=0, invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in sorted(p for p in stage.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(stage).as_posix(), FIXED_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes(), compresslevel=9)
        os.replace(partial, out)
        unpacked = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
    return {"zip": str(out), "zip_bytes": out.stat().st_size, "unpacked_bytes": unpacked,
            "mani_files": sum(1 for name in files if name.split("/")[0] in OWN_PACKAGES) + 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deps", type=Path, required=True, help="folder filled by pip install --target")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-compile", action="store_true", help="leave out .pyc files (smaller, slower cold start)")
    args = parser.parse_args()
    print(json.dumps(build(deps=args.deps, out=args.out, compiled=not args.no_compile)))


if __name__ == "__main__":
    main()
