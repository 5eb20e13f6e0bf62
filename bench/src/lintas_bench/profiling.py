"""Sampling profiles of the running processes, and what they show.

py-spy attaches to each service by pid (no change to the services), samples Python
stacks 100 times a second while a load step runs and writes a speedscope file (open it
at speedscope.app; `*.collapsed.txt` beside it feeds flamegraph.pl). It keeps only
samples of the thread holding the GIL (`--gil`): its idle detection does not work in
this container (threads parked in epoll or a queue were counted as busy), and the GIL
holder is, by definition, the thread running Python. The shares below are therefore
shares of each process's Python execution, by leaf frame ("self") and by frames on the
stack ("inclusive"); time in C code that releases the GIL is not in them.

FerretDB (Go) is profiled by its own runtime: the wrapper serves Go's pprof on
`-debug-addr`, and `go tool pprof -top` turns the CPU profile into flat shares.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from lintas_bench.children import finish, reap, spawn

_SITE = re.compile(r"/site-packages/([^/]+)")
_LINTAS = re.compile(r"/(lintas_[a-z]+)/")
_STDLIB = re.compile(r"/lib/python3\.\d+/([^/]+)")


def py_spy() -> str | None:
    """The py-spy executable installed with this package (or on PATH)."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


#: Leaf frames that wait rather than work (a thread blocked in epoll, a lock or a queue).
#: py-spy can still see them with --gil, as the thread that last held the GIL.
_WAITING = {
    ("EpollSelector.select", "selectors"),
    ("Condition.wait", "threading"),
    ("Event.wait", "threading"),
    ("Thread.join", "threading"),
    ("_worker", "concurrent/futures/thread"),
}


def is_waiting(name: str, file: str) -> bool:
    """Whether a leaf frame is a thread waiting (for I/O, a lock, a queue), not working."""
    return any(name == n and f"/{module}.py" in file for n, module in _WAITING)


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
    waiting_samples: int
    self_by_package: list[Share]
    self_by_function: list[Share]
    inclusive_by_function: list[Share]
    inclusive_lintas: list[Share]
    file: str


def summarise_speedscope(
    process: str, path: Path, top: int = 10, skip_above: float = 90.0
) -> ProfileSummary:
    """Shares of a py-spy speedscope file: by package and function of the leaf frame,
    and inclusive by function, of all code and of Lintas' own (frames on more than
    `skip_above` percent of samples, the event loop and server scaffolding, are left out
    of the inclusive lists). Samples whose
    leaf frame waits (`is_waiting`) are counted apart and left out of every share."""
    data: dict[str, Any] = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    keys = [(f["name"], str(f.get("file") or "")) for f in frames]
    waiting = {i for i, key in enumerate(keys) if is_waiting(*key)}
    excluded = 0
    self_package: Counter[str] = Counter()
    self_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    lintas: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            if stack[-1] in waiting:
                excluded += 1
                continue
            total += weight
            name, file = keys[stack[-1]]
            self_package[package_of(file)] += weight
            self_function[f"{name} ({_module(file)})"] += weight
            for label in {f"{keys[i][0]} ({_module(keys[i][1])})" for i in stack}:
                inclusive[label] += weight
            for label in {
                f"{keys[i][0]} ({_module(keys[i][1])})" for i in stack if _LINTAS.search(keys[i][1])
            }:
                lintas[label] += weight

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
        samples=samples - excluded,
        waiting_samples=excluded,
        self_by_package=shares(self_package),
        self_by_function=shares(self_function),
        inclusive_by_function=shares(inclusive, skip_above),
        inclusive_lintas=shares(lintas, skip_above),
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
            await spawn(
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--gil",
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
    try:
        outputs = [await finish(process, seconds + 60.0) for process, _ in running.values()]
    finally:
        for process, _ in running.values():
            await reap(process)
    for (name, (process, path)), output in zip(running.items(), outputs, strict=True):
        if output is None:
            results[name] = "py-spy did not finish"
            continue
        stderr = output[1]
        if process.returncode == 0 and _write_collapsed(path, out_dir / f"{name}.collapsed.txt"):
            results[name] = path
        else:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            results[name] = f"py-spy exit {process.returncode}: {' | '.join(tail)}"
    return results


_PPROF_LINE = re.compile(
    r"^\s*(?P<flat>[\d.]+)(?P<unit>[a-z]*s)?\s+(?P<flatpct>[\d.]+)%\s+[\d.]+%\s+"
    r"[\d.]+[a-z]*s?\s+(?P<cumpct>[\d.]+)%\s+(?P<name>.+?)(?: \(inline\))?\s*$"
)
#: Frames of FerretDB's profile worth naming, by what they stand for (cumulative share).
GO_LANDMARKS = {
    "decoding stored documents (sjson.Unmarshal)": "internal/handler/sjson.Unmarshal",
    "encoding documents for storage (sjson.Marshal)": "internal/handler/sjson.Marshal",
    "SQLite executing statements (sqlite3_step)": "modernc.org/sqlite/lib.Xsqlite3_step",
    "Go memory allocation (mallocgc)": "runtime.mallocgc",
    "Go garbage collector (gcBgMarkWorker)": "runtime.gcBgMarkWorker",
    "wire protocol: reading and writing messages": "FerretDB/wire.ReadMessage",
}
_COMMAND = re.compile(r"internal/handler\.\(\*Handler\)\.Msg(?P<command>\w+)$")


def go_package_of(symbol: str) -> str:
    """The Go package of a symbol ("modernc.org/sqlite/lib.sqlite3VdbeExec" ->
    "modernc.org/sqlite/lib"), with FerretDB's internal prefix shortened; assembly
    routines without a package ("aeshashbody") belong to the runtime."""
    if "." not in symbol and "/" not in symbol:
        return "runtime"
    head, _, tail = symbol.rpartition("/")
    package = f"{head}/{tail.split('.')[0]}" if head else symbol.split(".")[0]
    package = package.replace("github.com/FerretDB/FerretDB/internal/", "ferretdb/")
    return "runtime" if package.startswith("internal/runtime") else package


def parse_pprof_top(text: str, top: int = 10) -> dict[str, list[Share]]:
    """Shares from `go tool pprof -top -cum` output: flat CPU by package, cumulative CPU
    by wire command (FerretDB's `Msg<Command>` handlers) and at a few landmark frames."""
    by_package: dict[str, float] = {}
    by_command: dict[str, float] = {}
    landmarks: dict[str, float] = {}
    for line in text.splitlines():
        match = _PPROF_LINE.match(line)
        if match is None:
            continue
        name = match.group("name")
        flat, cum = float(match.group("flatpct")), float(match.group("cumpct"))
        package = go_package_of(name)
        by_package[package] = by_package.get(package, 0.0) + flat
        if command := _COMMAND.search(name):
            by_command[command.group("command")] = cum
        for label, frame in GO_LANDMARKS.items():
            if name.endswith(frame) and label not in landmarks:
                landmarks[label] = cum

    def shares(values: dict[str, float]) -> list[Share]:
        ordered = sorted(values.items(), key=lambda item: -item[1])[:top]
        return [Share(name, round(percent, 1)) for name, percent in ordered]

    return {
        "self_by_package": shares(by_package),
        "by_command": shares(by_command),
        "landmarks": shares(landmarks),
    }


async def record_go(debug_url: str, seconds: float, out: Path) -> dict[str, Any]:
    """Take a Go CPU profile over `seconds` from a pprof endpoint and summarise it."""
    async with httpx.AsyncClient(timeout=seconds + 30.0) as client:
        response = await client.get(
            f"{debug_url}/debug/pprof/profile", params={"seconds": max(1, round(seconds))}
        )
    if response.status_code != 200:
        return {"error": f"pprof answered {response.status_code}"}
    await asyncio.to_thread(out.write_bytes, response.content)
    go = shutil.which("go")
    if go is None:
        return {"file": str(out), "error": "go not found: no summary"}
    process = await spawn(
        go,
        "tool",
        "pprof",
        "-top",
        "-cum",
        "-nodecount=400",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output = await finish(process, 120.0)
    if output is None:
        return {"file": str(out), "error": "go tool pprof did not finish"}
    stdout, stderr = output
    if process.returncode != 0:
        return {"file": str(out), "error": stderr.decode(errors="replace")[-300:]}
    text = stdout.decode(errors="replace")
    await asyncio.to_thread(out.with_suffix(".top.txt").write_text, text)
    total = re.search(r"Total samples = ([\d.]+m?s) \(([\d.]+)%\)", text)
    result: dict[str, Any] = {
        "file": str(out),
        "cpu": f"{total.group(1)} in {seconds:g} s" if total else None,
    }
    for key, found in parse_pprof_top(text).items():
        result[key] = [asdict(share) for share in found]
    return result
