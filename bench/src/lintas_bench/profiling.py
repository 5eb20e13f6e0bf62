"""Sampling profiles of the running services with py-spy, and what they show.

py-spy attaches to each service by pid (no change to the services), samples Python
stacks 100 times a second while a load step runs and writes a speedscope file (open it
at speedscope.app, or convert with `collapsed`). Idle samples (a thread waiting in
epoll) are left out by py-spy, so the shares below are shares of the CPU time each
process spent running Python, by leaf frame ("self") and by frames on the stack
("inclusive").
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SITE = re.compile(r"/site-packages/([^/]+)")
_LINTAS = re.compile(r"/(lintas_[a-z]+)/")
_STDLIB = re.compile(r"/lib/python3\.\d+/([^/]+)")


def py_spy() -> str | None:
    """The py-spy executable installed with this package (or on PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


def package_of(file: str) -> str:
    """Where a frame's code lives: a Lintas package, a library, or a stdlib module."""
    if match := _LINTAS.search(file):
        return match.group(1)
    if match := _SITE.search(file):
        name = match.group(1)
        return name.removesuffix(".py").split(".")[0]
    if match := _STDLIB.search(file):
        return "stdlib " + match.group(1).removesuffix(".py")
    if file.startswith("<frozen"):
        return "python (frozen)"
    return file


def _module(file: str) -> str:
    short = re.sub(r"^.*?/(site-packages|src|lib/python3\.\d+)/", "", file)
    return short.removesuffix(".py").replace("/", ".")


@dataclass(frozen=True)
class Share:
    """A name and the share of samples it stands for (percent)."""

    name: str
    percent: float


@dataclass(frozen=True)
class ProfileSummary:
    """What one process's profile shows."""

    process: str
    samples: int
    self_by_package: list[Share]
    self_by_function: list[Share]
    inclusive_by_function: list[Share]
    file: str


def summarise_speedscope(
    process: str, path: Path, top: int = 10, skip_above: float = 90.0
) -> ProfileSummary:
    """Shares of a py-spy speedscope file: by package and function of the leaf frame,
    and inclusive by function (frames on more than `skip_above` percent of samples, the
    event loop and server scaffolding, are left out of the inclusive list)."""
    data: dict[str, Any] = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    keys = [(f["name"], str(f.get("file") or "")) for f in frames]
    self_package: Counter[str] = Counter()
    self_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            total += weight
            name, file = keys[stack[-1]]
            self_package[package_of(file)] += weight
            self_function[f"{name} ({_module(file)})"] += weight
            for label in {f"{keys[i][0]} ({_module(keys[i][1])})" for i in stack}:
                inclusive[label] += weight

    def shares(counter: Counter[str], limit: float = 100.1) -> list[Share]:
        if total <= 0:
            return []
        found = [
            Share(name, round(100.0 * value / total, 1))
            for name, value in counter.most_common()
            if 100.0 * value / total <= limit
        ]
        return found[:top]

    samples = sum(len(p["samples"]) for p in data["profiles"])
    return ProfileSummary(
        process=process,
        samples=samples,
        self_by_package=shares(self_package),
        self_by_function=shares(self_function),
        inclusive_by_function=shares(inclusive, skip_above),
        file=str(path),
    )


def collapsed(path: Path) -> str:
    """The speedscope file as collapsed stacks ("a;b;c count"), for flamegraph.pl."""
    data: dict[str, Any] = json.loads(path.read_text())
    names = [f"{f['name']} ({_module(str(f.get('file') or ''))})" for f in data["shared"]["frames"]]
    counts: Counter[str] = Counter()
    for profile in data["profiles"]:
        for stack in profile["samples"]:
            if stack:
                counts[";".join(names[i] for i in stack)] += 1
    return "".join(f"{stack} {count}\n" for stack, count in counts.most_common())


def _prepare(out_dir: Path, names: Iterable[str]) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.speedscope.json" for name in names}
    for path in paths.values():
        path.unlink(missing_ok=True)
    return paths


def _write_collapsed(source: Path, target: Path) -> bool:
    if not source.is_file():
        return False
    target.write_text(collapsed(source))
    return True


async def record(
    pids: dict[str, int], seconds: float, out_dir: Path, rate: int = 100
) -> dict[str, Path | str]:
    """py-spy record each process for `seconds`; returns its file, or why there is none."""
    binary = py_spy()
    if binary is None:
        return {name: "py-spy not installed" for name in pids}
    paths = _prepare(out_dir, pids)
    running: dict[str, tuple[asyncio.subprocess.Process, Path]] = {}
    for name, pid in pids.items():
        path = paths[name]
        running[name] = (
            await asyncio.create_subprocess_exec(
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--format",
                "speedscope",
                "--output",
                str(path),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            ),
            path,
        )
    results: dict[str, Path | str] = {}
    for name, (process, path) in running.items():
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=seconds + 60.0)
        except TimeoutError:
            process.kill()
            await process.wait()
            results[name] = "py-spy did not finish"
            continue
        if process.returncode == 0 and _write_collapsed(path, out_dir / f"{name}.collapsed.txt"):
            results[name] = path
        else:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            results[name] = f"py-spy exit {process.returncode}: {' | '.join(tail)}"
    return results
