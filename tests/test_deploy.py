"""The deployment: one layout everywhere (deploy/, docs/, README), units systemd accepts, an
environment file that systemd and a shell read alike, and deploy/install.sh run twice in a
scratch root (MANI_PREFIX) without changing what the first run made."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
VENV_BIN = "/opt/mani/.venv/bin"
ENV_FILE = "/etc/mani/mani.env"
# Every file that tells an admin where mani lives.
LAYOUT_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *UNITS, DEPLOY / "mani.env.example",
                DEPLOY / "install.sh"]


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section] then Key=value lines; # and ; start comment lines only."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_two_units_with_the_one_layout():
    assert [unit.name for unit in UNITS] == ["mani-serve.service", "mani-worker.service"]
    for path in UNITS:
        service = _unit(path)["Service"]
        assert service["EnvironmentFile"] == [ENV_FILE], path.name
        assert service["User"] == ["mani"] and service["Group"] == ["mani"]
        assert service["ExecStart"][0].startswith(f"{VENV_BIN}/mani "), path.name
        assert "/var/lib/mani" in service["ReadWritePaths"][0]


def test_one_venv_and_one_env_file_everywhere():
    """No other venv path, env file name, or a comment after EnvironmentFile= (systemd would read
    it as part of the file name)."""
    for path in LAYOUT_FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"/opt/mani[^\s`'\",)]*", text):
            assert match.group() in ("/opt/mani", "/opt/mani/") or match.group().startswith("/opt/mani/.venv"), \
                f"{path.name}: {match.group()}"
        for match in re.finditer(r"/etc/mani/[\w.-]+", text):
            assert match.group() in (ENV_FILE, "/etc/mani/secret.key", "/etc/mani/mani.toml"), \
                f"{path.name}: {match.group()}"
        for line in text.splitlines():
            if line.lstrip().startswith("EnvironmentFile="):
                assert re.fullmatch(r"\s*EnvironmentFile=-?\S+\s*", line), f"{path.name}: {line!r}"


def test_the_env_example_reads_the_same_in_a_shell_and_in_systemd():
    example = DEPLOY / "mani.env.example"
    pairs = {}
    for line in example.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        # Single quotes: systemd takes the text between them as it is, and so does a shell.
        assert re.fullmatch(r"MANI_[A-Z0-9_]+", key) and re.fullmatch(r"'[^']*'", value), line
        pairs[key] = value[1:-1]
    shell = subprocess.run(["bash", "-c", f"set -a; . {example}; env -0"], capture_output=True, check=True,
                           env={"PATH": os.environ["PATH"]})
    seen = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if item.startswith("MANI_"))
    assert seen == pairs
    assert seen["MANI_SENDER"] == "Moodle <noreply@moodle.example.com>"


def test_install_script_parses():
    subprocess.run(["bash", "-n", str(DEPLOY / "install.sh")], check=True)
    assert os.access(DEPLOY / "install.sh", os.X_OK)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(DEPLOY / "install.sh")], check=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_install_sh_twice_in_a_scratch_root(tmp_path):
    root = tmp_path / "root"
    wheels = tmp_path / "wheels"
    # One build of mani for the three runs; its dependencies come from this test's environment
    # through a .pth line, so nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True)
    [wheel] = wheels.glob("mani-*.whl")
    venv = root / "opt/mani/.venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # This test's pip, run inside the scratch venv's interpreter.
    (venv / "bin/pip").write_text(f"#!/bin/sh\nexec {sys.executable} -m pip --python {venv}/bin/python \"$@\"\n")
    (venv / "bin/pip").chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MANI_")}
    env.update(MANI_PREFIX=str(root), MANI_PACKAGE=str(wheel), MANI_PIP_ARGS="--no-deps --force-reinstall",
               MANI_PYTHON=sys.executable)

    def install() -> str:
        run = subprocess.run(["bash", str(DEPLOY / "install.sh")], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    first = install()
    env_file, key_file = root / "etc/mani/mani.env", root / "etc/mani/secret.key"
    assert "from deploy/mani.env.example" in first and "db upgrade" in first
    assert env_file.read_text() == (DEPLOY / "mani.env.example").read_text()
    assert not (root / "var/lib/mani/mani.db").exists()  # not before the admin has set the database

    database = root / "var/lib/mani/mani.db"
    env_file.write_text(f"MANI_DATABASE_URL='sqlite:///{database}'\nMANI_SENDER='Moodle <noreply@example.org>'\n")
    key = key_file.read_bytes()
    second = install()
    assert "database schema up to date" in second and database.exists()
    state = {path: (_mode(path), path.read_bytes() if path.is_file() else None)
             for path in (env_file, key_file, root / "etc/mani", root / "var/lib/mani")}
    third = install()
    assert "wrote a new key" not in third and "database schema up to date" in third
    assert {path: (_mode(path), path.read_bytes() if path.is_file() else None) for path in state} == state
    assert key_file.read_bytes() == key and len(key.strip()) == 44  # one Fernet key, never replaced

    assert _mode(key_file) == 0o640 and _mode(env_file) == 0o640
    assert _mode(root / "etc/mani") == 0o750 and _mode(root / "var/lib/mani") == 0o750
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit.name).read_text() == unit.read_text()
    mani = root / "usr/local/bin/mani"
    assert mani.resolve() == (venv / "bin/mani").resolve()
    current = subprocess.run([str(mani), "db", "current", "--json"], capture_output=True, text=True,
                             env={**env, "MANI_DATABASE_URL": f"sqlite:///{database}"})
    assert current.returncode == 0 and '"database"' in current.stdout, current.stderr

    if shutil.which("systemd-analyze"):
        # The units as installed, their paths moved into the scratch root so that ExecStart exists.
        checked = tmp_path / "units"
        checked.mkdir()
        for unit in UNITS:
            text = unit.read_text().replace("/opt/mani/.venv", str(venv)).replace(ENV_FILE, str(env_file))
            (checked / unit.name).write_text(text)
        verify = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(checked.iterdir()))],
                                capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr
