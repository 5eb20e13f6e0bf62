"""Install the uv binary into the project (`make install` runs this when uv is missing).

Standard library only, and no pip: on Debian and Ubuntu the OS's python3 is "externally
managed" (PEP 668), so `pip install uv` is refused there, and python3-venv or python3-pip
may not be installed at all. This fetches uv's wheel from the package index, checks its
SHA-256 (pinned below for the platforms we know; otherwise the index's own hash, over
TLS), and unpacks the one `uv` executable from it into `<dest>/bin/uv`. Nothing outside
the project is touched. Run it with any python3 >= 3.8:

    python3 tools/install_uv.py --version 0.13.8 --dest .lintas/tools
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import stat
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

#: Wheels of the pinned version and their SHA-256, by platform tag (from the index).
PINNED = {
    "0.13.8": {
        "manylinux_2_17_x86_64": "e18a57b8b352eb7c8feb317b9f6f533c8f0ad9673fd6cf34bbe3cf1a9f6a8984",
        "manylinux_2_17_aarch64": "0b3e8b1a4f5e405e31e2ff33de8af4744831e9f733853967"
        "1efbd8c3c94e791d",
        "macosx_11_0_arm64": "62b6943c7fd64fac6854f780bea6e0359e5a5bc3241f83ee357bb38276afac49",
        "macosx_10_12_x86_64": "b7124ca1956ec2e476a1003ea5715a15f0266afaec37f4dc9c6972ba8183e6d1",
    }
}


def platform_tag() -> str:
    """The wheel platform tag uv publishes for this machine."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if sys.platform != "darwin" else "arm64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return "macosx_11_0_arm64" if machine == "arm64" else "macosx_10_12_x86_64"
    if sys.platform.startswith("linux"):
        libc = platform.libc_ver()[0]
        return f"manylinux_2_17_{machine}" if libc == "glibc" else f"musllinux_1_1_{machine}"
    raise SystemExit(f"install_uv: no uv wheel known for {sys.platform}; install uv yourself")


def index_url() -> str:
    """The package index: the same variables pip and uv honour, else PyPI."""
    for name in ("UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return "https://pypi.org/simple"


def _open(request: urllib.request.Request | str, timeout: float) -> Any:
    """urlopen, for https only (never file: or another scheme from a variable)."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    if not url.startswith("https://"):
        raise SystemExit(f"install_uv: refusing a non-https address: {url}")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310  (https checked)


def find_wheel(version: str, tag: str) -> tuple[str, str, str]:
    """(file name, URL, SHA-256) of uv's wheel for `tag`, from the index's JSON page."""
    request = urllib.request.Request(  # noqa: S310  (_open allows https only)
        f"{index_url()}/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with _open(request, 60) as answer:
        files = json.load(answer)["files"]
    for entry in files:
        name = entry["filename"]
        if name.startswith(f"uv-{version}-") and name.endswith(".whl") and tag in name:
            return name, entry["url"], entry["hashes"]["sha256"]
    raise SystemExit(f"install_uv: the index has no uv {version} wheel for {tag}")


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(version: str, cache: Path) -> Path:
    """The checked wheel in `cache`, downloaded unless a good copy is there already."""
    tag = platform_tag()
    name, url, index_hash = find_wheel(version, tag)
    expected = PINNED.get(version, {}).get(tag, index_hash)
    if expected != index_hash:
        raise SystemExit(f"install_uv: the index's hash for {name} is not the pinned one")
    wheel = cache / name
    if wheel.exists() and sha256(wheel) == expected:
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    partial = wheel.with_suffix(".part")
    print(f"install_uv: downloading {name}", flush=True)
    with _open(url, 300) as answer, partial.open("wb") as out:
        while block := answer.read(1 << 20):
            out.write(block)
    if sha256(partial) != expected:
        partial.unlink()
        raise SystemExit(f"install_uv: {name} does not have the expected SHA-256; not installed")
    partial.replace(wheel)
    return wheel


def install(version: str, dest: Path, cache: Path) -> Path:
    """`dest/bin/uv` at `version`, installed if it is missing or another version."""
    target = dest / "bin" / "uv"
    if target.exists():
        shown = subprocess.run([str(target), "--version"], capture_output=True, text=True)
        if shown.returncode == 0 and shown.stdout.split()[1:2] == [version]:
            return target
    wheel = fetch(version, cache)
    with zipfile.ZipFile(wheel) as archive:
        member = f"uv-{version}.data/scripts/uv"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(archive.read(member))
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(target)
    print(f"install_uv: uv {version} installed as {target}", flush=True)
    return target


def main() -> None:
    """Command line: --version, --dest, --cache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--dest", type=Path, default=Path(".lintas/tools"))
    parser.add_argument("--cache", type=Path, default=Path(".lintas/cache/uv"))
    args = parser.parse_args()
    install(args.version, args.dest, args.cache)


if __name__ == "__main__":
    main()
