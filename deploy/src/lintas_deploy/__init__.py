"""Local provisioning of the Lintas stack: Apache Kafka (KRaft) and FerretDB (SQLite).

Stdlib only. Kafka comes from Maven Central jars fetched with ``mvn`` and runs with
``java``; FerretDB is embedded in a tiny Go program built with ``go build``. All state
(pid files, logs, data, caches) lives under a directory the caller chooses.

The files this package drives (``kafka/pom.xml``, ``ferretdb/``) live beside it in the
``deploy/`` directory of a source checkout, so it must be installed editable (as a uv
workspace member) or run from the checkout.
"""

from pathlib import Path

__version__ = "0.1.0"

#: The ``deploy/`` directory of the checkout (``deploy/src/lintas_deploy/__init__.py``).
DEPLOY_DIR: Path = Path(__file__).resolve().parents[2]

#: The repository root, parent of ``deploy/``.
REPO_ROOT: Path = DEPLOY_DIR.parent


def deploy_file(*parts: str) -> Path:
    """Return a file under ``deploy/``, raising a readable error if it is not there."""
    path = DEPLOY_DIR.joinpath(*parts)
    if not path.exists():
        raise RuntimeError(
            f"{path} not found: lintas_deploy must run from a source checkout "
            "(an editable install, e.g. as a uv workspace member), not from a wheel"
        )
    return path
