"""FerretDB v1.24.2 (MongoDB wire protocol on SQLite), embedded in a tiny Go program.

``provision_ferretdb`` builds ``deploy/ferretdb`` (``go build``, CGO_ENABLED=0, modules
through the Go defaults) against a patched copy of FerretDB (see ``PATCHES``) into the
cache; ``start_ferretdb`` runs it on 127.0.0.1 with its SQLite files under the state dir.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from lintas_deploy import deploy_file
from lintas_deploy.processes import (
    ManagedProcess,
    ensure_ports_free,
    file_lock,
    wait_for_port,
)

__all__ = [
    "FERRETDB_VERSION",
    "PATCHES",
    "ferretdb_address",
    "ferretdb_process",
    "provision_ferretdb",
    "run_added_go_tests",
    "start_ferretdb",
]

FERRETDB_VERSION = "v1.24.2"

HOST = "127.0.0.1"

BINARY_NAME = "lintas-ferretdb"

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"

#: An edit of a module's source: (file, text, replacement, how often the text must occur).
Patch = tuple[str, str, str, int]
#: A file of ours added to a module: (source under deploy/ferretdb, destination).
AddedFile = tuple[str, str]

#: How FerretDB's SQLite backend opens a write's transaction.
_TRANSACTION = "\n\terr := db.InTransaction(ctx, func(tx *fsql.Tx) error {\n"

#: How sjson's Marshal begins.
_MARSHAL = "func Marshal(d *types.Document) ([]byte, error) {\n"
_NIL_DOCUMENT = '\tif d == nil {\n\t\tpanic("v is nil")\n\t}\n'

#: Edits to FerretDB's own source, applied to a copy of the module before building:
#: (file, text, replacement, how often the text must occur), so that a different upstream
#: fails the build loudly instead of building without the fix.
#:
#: FerretDB v1 turns a filter into SQL only when `_id` is its only field (its TODO #3235),
#: so a conditional update such as `{_id: x, version: 3}` read and decoded the whole
#: table. Its handlers match every document they read against the full filter in Go
#: anyway, so pushing `_id` down whenever the filter has it is only a pre-filter: the
#: same answers, one row read. With the wrapper's per-collection write lock
#: (writeproxy.go) that update is then also atomic across clients.
PATCHES: tuple[Patch, ...] = (
    (
        "internal/backends/sqlite/collection.go",
        "if params.Filter.Len() == 1 {",
        "if params.Filter.Len() >= 1 {",
        2,  # Query, and Explain (which reports the pushdown)
    ),
    # ...and for integer `_id`s too (intake's audit chain is numbered), not only strings
    # and ObjectIDs: SQLite compares the stored JSON text of `_id` with the queried
    # value's, and an integer's is its decimal digits either way (a double with an
    # integral value too). Still only a pre-filter: the handler matches in Go after it.
    (
        "internal/backends/sqlite/collection.go",
        "case string, types.ObjectID:",
        "case string, types.ObjectID, int32, int64:",
        2,
    ),
    # Narrow a filter on another indexed field with that index (see
    # deploy/ferretdb/sqlite/lintas_pushdown.go.in, which ADDED_FILES puts beside these).
    (
        "internal/backends/sqlite/collection.go",
        "\tq += whereClause\n\tq += prepareOrderByClause(params.Sort)\n",
        '\tif whereClause == "" {\n\t\twhereClause, args = lintasPushdown(meta, params.Filter)\n'
        "\t}\n\n\tq += whereClause\n\tq += prepareOrderByClause(params.Sort)\n",
        1,  # Query
    ),
    (
        "internal/backends/sqlite/collection.go",
        "\torderByClause := prepareOrderByClause(params.Sort)\n",
        '\tif whereClause == "" {\n\t\twhereClause, args = lintasPushdown(meta, params.Filter)\n'
        '\t\tfilterPushdown = whereClause != ""\n\t}\n\n'
        "\torderByClause := prepareOrderByClause(params.Sort)\n",
        1,  # Explain
    ),
    # ...and give single-field indexes a twin on the field's SQL value, for ranges.
    (
        "internal/backends/sqlite/metadata/registry.go",
        "\t\tcreated = append(created, index.Name)\n",
        "\t\tif err := lintasValueIndexCreate(ctx, db, c.TableName, index); err != nil {\n"
        "\t\t\t_ = r.indexesDrop(ctx, dbName, collectionName, created)\n"
        "\t\t\treturn lazyerrors.Error(err)\n\t\t}\n\n"
        "\t\tcreated = append(created, index.Name)\n",
        1,
    ),
    (
        "internal/backends/sqlite/metadata/registry.go",
        "\t\tc.Settings.Indexes = slices.Delete(c.Settings.Indexes, i, i+1)\n",
        "\t\tif err := lintasValueIndexDrop(ctx, db, c.TableName, name); err != nil {\n"
        "\t\t\treturn lazyerrors.Error(err)\n\t\t}\n\n"
        "\t\tc.Settings.Indexes = slices.Delete(c.Settings.Indexes, i, i+1)\n",
        1,
    ),
    # An `update` command kept every statement's read open until the command ended (a
    # `defer` inside its loop), and each open read holds one of the database's 100 SQLite
    # connections: one command of 100 statements waited for itself, with every other
    # client of that database behind it. Each statement's read now ends with it.
    (
        "internal/handler/msg_update.go",
        "\t\tcloser := iterator.NewMultiCloser()\n\t\tdefer closer.Close()\n",
        "\t\tcloser := iterator.NewMultiCloser()\n",
        1,
    ),
    # A change of one document (an update statement without `multi`, a findAndModify)
    # reads it and ends that read before it writes, as FerretDB's delete does
    # (deploy/ferretdb/handler/lintas_read_before_write.go.in): a read open over the
    # write kept SQLite's WAL from ever starting over, and every commit checkpointed.
    (
        "internal/handler/msg_update.go",
        "\t\tif !u.Multi {\n\t\t\titer = common.LimitIterator(iter, closer, 1)\n\t\t}\n",
        "\t\tif !u.Multi {\n\t\t\titer = common.LimitIterator(iter, closer, 1)\n\n"
        "\t\t\tif iter, err = common.LintasReadBeforeWrite(iter, closer); err != nil {\n"
        "\t\t\t\tcloser.Close()\n\t\t\t\treturn 0, 0, nil, lazyerrors.Error(err)\n"
        "\t\t\t}\n\t\t}\n",
        1,
    ),
    (
        "internal/handler/msg_findandmodify.go",
        "\titer = common.LimitIterator(iter, closer, 1)\n",
        "\titer = common.LimitIterator(iter, closer, 1)\n\n"
        "\tif iter, err = common.LintasReadBeforeWrite(iter, closer); err != nil {\n"
        "\t\treturn nil, lazyerrors.Error(err)\n\t}\n",
        1,
    ),
    (
        "internal/handler/msg_update.go",
        '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n',
        '\t\tresult, err := common.UpdateDocument(ctx, c, "update", iter, &u)\n'
        "\t\tcloser.Close()\n",
        1,
    ),
    # A change of one document, or an insert of documents that fit in one statement,
    # runs as that one statement (autocommit) instead of inside BEGIN ... COMMIT, where
    # SQLite keeps a statement journal of every page the statement changes
    # (deploy/ferretdb/sqlite/lintas_autocommit.go.in).
    (
        "internal/backends/sqlite/collection.go",
        _TRANSACTION + "\t\tfor _, doc := range params.Docs {\n",
        "\n\tif len(params.Docs) == 1 {\n"
        "\t\treturn lintasUpdateOne(ctx, db, q, params.Docs[0])\n\t}\n"
        + _TRANSACTION
        + "\t\tfor _, doc := range params.Docs {\n",
        1,  # UpdateAll
    ),
    (
        "internal/backends/sqlite/collection.go",
        _TRANSACTION + "\t\tbatchSize := c.r.BatchSize\n",
        "\n\tif len(params.Docs) <= c.r.BatchSize {\n"
        "\t\treturn lintasInsertOneStatement(\n"
        "\t\t\tctx, db, meta.TableName, meta.Capped(), params.Docs,\n\t\t)\n\t}\n"
        + _TRANSACTION
        + "\t\tbatchSize := c.r.BatchSize\n",
        1,  # InsertAll
    ),
    # Stored documents are decoded in one pass guided by their schema
    # (deploy/ferretdb/sjson/lintas_unmarshal.go.in); whatever that pass does not take
    # exactly as FerretDB would goes the old way, kept as `lintasUnmarshalAsBefore`.
    (
        "internal/handler/sjson/sjson.go",
        "func Unmarshal(data []byte) (*types.Document, error) {\n",
        "func Unmarshal(data []byte) (*types.Document, error) {\n"
        "\tif doc, ok := lintasUnmarshal(data); ok {\n\t\treturn doc, nil\n\t}\n\n"
        "\treturn lintasUnmarshalAsBefore(data)\n}\n\n"
        "// lintasUnmarshalAsBefore is FerretDB's own Unmarshal.\n"
        "func lintasUnmarshalAsBefore(data []byte) (*types.Document, error) {\n",
        1,
    ),
    # ...and encoded into one buffer (deploy/ferretdb/sjson/lintas_marshal.go.in), byte
    # for byte as before.
    (
        "internal/handler/sjson/sjson.go",
        _MARSHAL + _NIL_DOCUMENT,
        _MARSHAL
        + _NIL_DOCUMENT
        + "\n\tif b, ok := lintasMarshal(d); ok {\n\t\treturn b, nil\n\t}\n\n"
        "\treturn lintasMarshalAsBefore(d)\n}\n\n"
        "// lintasMarshalAsBefore is FerretDB's own Marshal.\n"
        "func lintasMarshalAsBefore(d *types.Document) ([]byte, error) {\n" + _NIL_DOCUMENT,
        1,
    ),
    # Track and Untrack keep no pprof profile of live objects, which took each tracked
    # object's stack (deploy/ferretdb/resource/lintas_track.go.in); the upstream bodies
    # stay, unused, under other names.
    *(
        (
            "internal/util/resource/resource.go",
            f"func {name}(obj any, token *Token) {{\n\tcheckArgs(obj, token)\n",
            f"func {name}(obj any, token *Token) {{\n\tlintas{name}(obj, token)\n}}\n\n"
            f"// upstream{name} is FerretDB's own {name}.\n"
            f"func upstream{name}(obj any, token *Token) {{\n\tcheckArgs(obj, token)\n",
            1,
        )
        for name in ("Track", "Untrack")
    ),
    # Every SQL statement is logged at debug level through `l.With(fields...)`, and slog's
    # `With` formats its attributes at once, whatever the level: the statement's
    # arguments (whole documents as JSON) were quoted character by character for lines
    # never written, 12% of the store's CPU in an import. Each line is now built only
    # when debug is on (`--ferretdb-log-level debug` still shows every statement).
    *(
        (
            f"internal/util/fsql/{file}",
            f'\t{var}.l.With(fields...).DebugContext(ctx, fmt.Sprintf("{arrow} %s", query))\n',
            f"\tif {var}.l.Enabled(ctx, slog.LevelDebug) {{\n"
            f'\t\t{var}.l.With(fields...).DebugContext(ctx, fmt.Sprintf("{arrow} %s", query))\n'
            "\t}\n",
            3,  # QueryContext, QueryRowContext, ExecContext
        )
        for file, var in (("tx.go", "tx"), ("db.go", "db"))
        for arrow in (">>>", "<<<")
    ),
)

#: Go files of ours added to FerretDB's module before the build: (source under
#: deploy/ferretdb, destination in the module). Named `.go.in` here so that the wrapper's
#: own `go build` (package main) does not compile them.
ADDED_FILES: tuple[AddedFile, ...] = (
    ("sqlite/lintas_pushdown.go.in", "internal/backends/sqlite/lintas_pushdown.go"),
    ("sqlite/lintas_autocommit.go.in", "internal/backends/sqlite/lintas_autocommit.go"),
    (
        "sqlite/metadata/lintas_value_index.go.in",
        "internal/backends/sqlite/metadata/lintas_value_index.go",
    ),
    ("sjson/lintas_unmarshal.go.in", "internal/handler/sjson/lintas_unmarshal.go"),
    ("sjson/lintas_marshal.go.in", "internal/handler/sjson/lintas_marshal.go"),
    ("resource/lintas_track.go.in", "internal/util/resource/lintas_track.go"),
    (
        "handler/lintas_read_before_write.go.in",
        "internal/handler/common/lintas_read_before_write.go",
    ),
    ("sjson/lintas_sjson_test.go.in", "internal/handler/sjson/lintas_sjson_test.go"),
    (
        "sqlitedriver/lintas_stmt_cache_test.go.in",
        "internal/lintasdriver/lintas_stmt_cache_test.go",
    ),
)

LIBC_MODULE = "modernc.org/libc"

#: Edits to modernc.org/libc, the C library SQLite (transpiled to Go) runs on. Its
#: `memcmp` compares byte by byte, and SQLite's JSON functions compare each written
#: document with the ones they parsed already, once per indexed field: 15-18% of the
#: store's CPU in an import. It now calls `lintasMemcmp` (bytes.Compare, Go's assembly)
#: unless the library is built to trace its calls. Linux on amd64 and arm64, where
#: Lintas runs; other platforms build with the original.
LIBC_PATCHES: tuple[Patch, ...] = tuple(
    (
        f"ccgo_linux_{arch}.go",
        "func Xmemcmp(tls *TLS, vl uintptr, vr uintptr, n Tsize_t) (r1 int32) {\n",
        "func Xmemcmp(tls *TLS, vl uintptr, vr uintptr, n Tsize_t) (r1 int32) {\n"
        "\tif !__ccgo_strace {\n\t\treturn lintasMemcmp(vl, vr, uint64(n))\n\t}\n",
        1,
    )
    for arch in ("amd64", "arm64")
)
LIBC_ADDED_FILES: tuple[AddedFile, ...] = (("libc/lintas_memcmp.go.in", "lintas_memcmp.go"),)

MEMORY_MODULE = "modernc.org/memory"

#: Edits to modernc.org/memory, the allocator under that C library. It hands out small
#: blocks from 1 MiB pages and unmaps a page as soon as its last block is freed, so a
#: write that allocates and frees a document's buffers mapped, faulted in and unmapped a
#: fresh page each time (7% of the store's CPU in updates went to the allocator and its
#: system calls). The page blocks are carved from at the moment (one per block size, at
#: most about 20 MiB in all) now stays mapped when it empties; every other page is
#: unmapped as before.
MEMORY_PATCHES: tuple[Patch, ...] = (
    (
        "memory.go",
        "\t(*page)(unsafe.Pointer(pg)).used--\n"
        "\tif (*page)(unsafe.Pointer(pg)).used != 0 {\n\t\treturn nil\n\t}\n",
        "\t(*page)(unsafe.Pointer(pg)).used--\n"
        "\tif (*page)(unsafe.Pointer(pg)).used != 0 {\n\t\treturn nil\n\t}\n"
        "\n\tif a.pages[log] == pg { // kept for the next blocks of its size (lintas_deploy)\n"
        "\t\treturn nil\n\t}\n",
        1,
    ),
)

#: The modules built from patched copies: (module, directory in the build, edits,
#: added files).
SQLITE_DRIVER_MODULE = "modernc.org/sqlite"

#: Edits to modernc.org/sqlite, the database/sql driver: each connection keeps its
#: recent statements prepared (deploy/ferretdb/sqlitedriver/lintas_stmt_cache.go.in)
#: instead of parsing the same SQL for every use.
SQLITE_DRIVER_PATCHES: tuple[Patch, ...] = (
    (
        "sqlite.go",
        "type conn struct {\n\tdb  uintptr // *sqlite3.Xsqlite3\n",
        "type conn struct {\n\tdb  uintptr // *sqlite3.Xsqlite3\n\n\tlintasStmts lintasStmtCache\n",
        1,
    ),
    (
        "sqlite.go",
        "func (c *conn) finalize(pstmt uintptr) error {\n",
        "func (c *conn) finalize(pstmt uintptr) error {\n"
        "\tif kept, err := c.lintasRelease(pstmt); kept {\n\t\treturn err\n\t}\n\n",
        1,
    ),
    (
        "sqlite.go",
        "func (c *conn) prepareV2(zSQL *uintptr) (pstmt uintptr, err error) {\n",
        "func (c *conn) prepareV2(zSQL *uintptr) (pstmt uintptr, err error) {\n"
        "\tpstmt, text, ok := c.lintasCached(zSQL)\n\tif ok {\n\t\treturn pstmt, nil\n\t}\n\n",
        1,
    ),
    (
        "sqlite.go",
        "\t\tcase sqlite3.SQLITE_OK:\n\t\t\t*zSQL = *(*uintptr)(unsafe.Pointer(pptail))\n"
        "\t\t\treturn *(*uintptr)(unsafe.Pointer(ppstmt)), nil\n",
        "\t\tcase sqlite3.SQLITE_OK:\n\t\t\t*zSQL = *(*uintptr)(unsafe.Pointer(pptail))\n"
        "\t\t\tpstmt = *(*uintptr)(unsafe.Pointer(ppstmt))\n"
        "\t\t\tc.lintasKeep(text, pstmt, *zSQL)\n\n\t\t\treturn pstmt, nil\n",
        1,
    ),
    (
        "sqlite.go",
        "\tif c.db != 0 {\n\t\tif err := c.closeV2(c.db); err != nil {\n",
        "\tif c.db != 0 {\n\t\tc.lintasFinalizeAll()\n\n"
        "\t\tif err := c.closeV2(c.db); err != nil {\n",
        1,
    ),
)
SQLITE_DRIVER_ADDED_FILES: tuple[AddedFile, ...] = (
    ("sqlitedriver/lintas_stmt_cache.go.in", "lintas_stmt_cache.go"),
)

PATCHED_MODULES: tuple[tuple[str, str, tuple[Patch, ...], tuple[AddedFile, ...]], ...] = (
    (FERRETDB_MODULE, "ferretdb-module", PATCHES, ADDED_FILES),
    (LIBC_MODULE, "libc-module", LIBC_PATCHES, LIBC_ADDED_FILES),
    (MEMORY_MODULE, "memory-module", MEMORY_PATCHES, ()),
    (SQLITE_DRIVER_MODULE, "sqlite-module", SQLITE_DRIVER_PATCHES, SQLITE_DRIVER_ADDED_FILES),
)


def _go() -> str:
    found = shutil.which("go")
    if found:
        return found
    goroot = os.environ.get("GOROOT")
    for candidate in ([Path(goroot) / "bin" / "go"] if goroot else []) + [
        Path("/usr/local/go/bin/go")
    ]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("`go` not found on PATH; install Go first")


def _sources(src_dir: Path) -> list[Path]:
    return sorted([src_dir / "go.mod", src_dir / "go.sum", *src_dir.glob("*.go")])


def _added(src_dir: Path) -> list[Path]:
    return [src_dir / source for *_, added in PATCHED_MODULES for source, _ in added]


def _source_hash(src_dir: Path) -> str:
    digest = hashlib.sha256(repr(PATCHED_MODULES).encode())
    for path in [*_sources(src_dir), *_added(src_dir)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _run_go(go: str, args: list[str], cwd: Path, what: str) -> str:
    result = subprocess.run(
        [go, *args],
        cwd=cwd,
        env=dict(os.environ, CGO_ENABLED="0"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output[-40:]))
    return result.stdout


def _patched_module(
    go: str,
    src_dir: Path,
    module: str,
    patches: tuple[Patch, ...],
    added: tuple[AddedFile, ...],
    into: Path,
) -> None:
    """Copy the version of ``module`` go.mod asks for into ``into``, apply ``patches``
    and add the ``added`` files."""
    info = json.loads(_run_go(go, ["mod", "download", "-json", module], src_dir, "go mod download"))
    _remove_tree(into)
    # The module cache is read-only; the copy must be writable (to patch, and to remove).
    shutil.copytree(info["Dir"], into, copy_function=shutil.copyfile)
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    for name, text, replacement, count in patches:
        path = into / name
        source = path.read_text()
        if source.count(text) != count:
            raise RuntimeError(
                f"cannot patch {module} {info['Version']}: {name} has "
                f"{source.count(text)} of {text!r}, expected {count}"
            )
        path.write_text(source.replace(text, replacement))
    for source, destination in added:
        (into / destination).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src_dir / source, into / destination)


def _remove_tree(path: Path) -> None:
    # A copy cut short keeps the module cache's read-only directories: open them first.
    if path.exists():
        for root, _dirs, _files in os.walk(path):
            os.chmod(root, 0o755)  # noqa: S103 (our own build directory)
        shutil.rmtree(path)


def provision_ferretdb(cache_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """Build ``cache_dir/bin/lintas-ferretdb`` from ``deploy/ferretdb`` and return its path.

    The build runs in ``cache_dir/ferretdb-build``, on a patched copy of FerretDB's module
    (see ``PATCHES``), and only when the stamp (a hash of the Go sources, go.mod, go.sum
    and the patches) is missing or different, or the binary is gone.
    """
    src_dir = deploy_file("ferretdb", "main.go").parent
    cache_dir = Path(cache_dir).resolve()
    bin_dir = cache_dir / "bin"
    binary = bin_dir / BINARY_NAME
    stamp_file = bin_dir / f"{BINARY_NAME}.stamp"
    wanted = _source_hash(src_dir)
    with file_lock(bin_dir / f".{BINARY_NAME}.lock"):
        if binary.is_file() and _read(stamp_file) == wanted:
            progress(f"ferretdb: binary up to date at {binary}")
            return binary
        go = _go()
        progress(
            f"ferretdb: building {BINARY_NAME} (FerretDB {FERRETDB_VERSION}, patched) with "
            "go build, CGO_ENABLED=0 (about a minute on 2 cores when nothing is cached)..."
        )
        began = time.monotonic()
        build_dir = cache_dir / "ferretdb-build"
        build_dir.mkdir(parents=True, exist_ok=True)
        for stale in build_dir.glob("*.go"):  # a source since removed must not build in
            stale.unlink()
        for path in _sources(src_dir):
            shutil.copyfile(path, build_dir / path.name)
        for module, directory, patches, added in PATCHED_MODULES:
            _patched_module(go, src_dir, module, patches, added, build_dir / directory)
            _run_go(
                go, ["mod", "edit", f"-replace={module}=./{directory}"], build_dir, "go mod edit"
            )
        tmp = bin_dir / f".{BINARY_NAME}.{os.getpid()}.tmp"
        try:
            # -buildvcs=false: the checkout may have no commits yet, which breaks stamping.
            _run_go(
                go,
                ["build", "-trimpath", "-buildvcs=false", "-o", str(tmp), "."],
                build_dir,
                "go build",
            )
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # Atomic: a running lintas-ferretdb keeps its old inode.
        tmp.replace(binary)
        stamp_file.write_text(wanted + "\n")
        progress(f"ferretdb: built {binary} ({time.monotonic() - began:.1f}s)")
        return binary


#: Go tests of ours added to the patched FerretDB module (``ADDED_FILES``): the packages,
#: and the tests' name pattern. They run in the build directory, so against every
#: patched module (``PATCHED_MODULES``), as the binary is built.
ADDED_GO_TESTS: Final = (
    f"{FERRETDB_MODULE}/internal/handler/sjson",
    f"{FERRETDB_MODULE}/internal/lintasdriver",
)
ADDED_GO_TESTS_PATTERN: Final = "^TestLintas"


def run_added_go_tests(cache_dir: Path) -> str:
    """Run the Go tests we add (``ADDED_GO_TESTS``) in the build directory
    ``provision_ferretdb`` left, and return their verbose output; raises RuntimeError
    with the output's tail when one fails."""
    build_dir = Path(cache_dir).resolve() / "ferretdb-build"
    return _run_go(
        _go(),
        ["test", "-count=1", "-v", "-run", ADDED_GO_TESTS_PATTERN, *ADDED_GO_TESTS],
        build_dir,
        "go test",
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def ferretdb_process(state_dir: Path) -> ManagedProcess:
    """Return the ManagedProcess handle of FerretDB under ``state_dir``."""
    return ManagedProcess("ferretdb", Path(state_dir).resolve())


def ferretdb_address(state_dir: Path) -> str | None:
    """Return ``host:port`` FerretDB was last started with in ``state_dir``, if known."""
    argv = ferretdb_process(state_dir).recorded_argv() or []
    for flag, value in itertools.pairwise(argv):
        if flag == "-listen-addr":
            return value
    return None


def start_ferretdb(
    state_dir: Path,
    cache_dir: Path,
    port: int = 27017,
    timeout: float = 60.0,
    progress: Callable[[str], None] = print,
    slow_ms: int = 1000,
) -> ManagedProcess:
    """Start FerretDB (SQLite backend) on 127.0.0.1:``port`` and wait until it answers.

    Commands taking ``slow_ms`` or longer are logged (name, collection, time; 0: none).

    Idempotent: if FerretDB under ``state_dir`` already runs, it is returned as is.
    Builds the binary if needed; the SQLite files live in ``state_dir/ferretdb/data/``.
    On failure the process is stopped and RuntimeError carries the log tail;
    PortInUseError if the port is taken by a process we did not start.
    """
    state_dir = Path(state_dir).resolve()
    proc = ferretdb_process(state_dir)
    with file_lock(state_dir / "run" / "ferretdb.lock"):
        if proc.is_running():
            return proc
        ensure_ports_free(
            {"mongo (FerretDB) port": port}, hint=" (--mongo-port or LINTAS_MONGO_PORT)"
        )
        binary = provision_ferretdb(cache_dir, progress)
        data_dir = state_dir / "ferretdb" / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "-listen-addr",
            f"{HOST}:{port}",
            "-sqlite-dir",
            f"{data_dir}/",
            "-slow-ms",
            str(slow_ms),
        ]
        progress(f"ferretdb: starting on {HOST}:{port} (data {data_dir})")
        proc.start(argv, cwd=state_dir / "ferretdb")
        try:
            wait_for_port(HOST, port, timeout, proc)
        except BaseException:
            proc.stop(timeout=10.0)
            raise
        return proc
