"""`make install` on a machine whose python3 is the OS's (PEP 668 "externally managed",
where `pip install uv` is refused): tools/install_uv.py needs no pip and no venv module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration  # fetches uv's wheel from the package index once


def _uv_version() -> str:
    match = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match is not None
    return match.group(1)


def _os_python() -> str:
    """Debian's own python3 where there is one (externally managed), else this one."""
    debian = Path("/usr/bin/python3")
    return str(debian) if debian.exists() else sys.executable


def test_installs_uv_with_an_os_managed_python_and_no_pip(tmp_path: Path) -> None:
    python = _os_python()
    version = _uv_version()
    # -I -S: no site-packages, so no pip either: the script must not need it.
    subprocess.run(
        [
            python,
            "-I",
            "-S",
            str(REPO / "tools" / "install_uv.py"),
            "--version",
            version,
            "--dest",
            str(tmp_path / "tools"),
            "--cache",
            str(REPO / ".lintas" / "cache" / "uv"),
        ],
        check=True,
        timeout=600,
    )
    shown = subprocess.run(
        [str(tmp_path / "tools" / "bin" / "uv"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.split()[:2] == ["uv", version]


def test_a_wheel_that_does_not_match_its_hash_is_not_installed(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import install_uv
    finally:
        sys.path.pop(0)
    version = _uv_version()
    cache = tmp_path / "cache"
    name, _url, _hash = install_uv.find_wheel(version, install_uv.platform_tag())
    cache.mkdir()
    (cache / name).write_bytes(b"not uv")  # a corrupt copy in the cache is fetched again
    installed = install_uv.install(version, tmp_path / "tools", cache)
    assert install_uv.sha256(cache / name) == install_uv.PINNED[version][install_uv.platform_tag()]
    assert installed.exists()


def test_make_install_uses_the_project_copy_when_uv_is_not_on_the_path() -> None:
    path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if not Path(p, "uv").exists())
    plan = subprocess.run(
        ["make", "-n", "install"],
        cwd=REPO,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"python3 tools/install_uv.py --version {_uv_version()}" in plan
    assert f"{REPO}/.lintas/tools/bin/uv sync --frozen" in plan
    assert "pip install" not in plan
