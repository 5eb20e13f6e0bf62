"""The official AsyncAPI parser (`@asyncapi/parser` from the npm registry), run by node.

`tests/support/asyncapi/` holds the validating script with its package.json and
package-lock.json; `npm ci` installs the locked packages into `.lintas/asyncapi-parser/`
(ignored by git) once, and again only when the lock file changes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "support" / "asyncapi"
INSTALL = ROOT / ".lintas" / "asyncapi-parser"
FILES = ("package.json", "package-lock.json", "validate.mjs")


def install() -> Path:
    """The installed validator script, installing it first when missing or out of date."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is needed to run @asyncapi/parser (node 20 or later)")
    current = all(
        (INSTALL / name).exists() and (INSTALL / name).read_bytes() == (SOURCE / name).read_bytes()
        for name in FILES
    )
    if not current or not (INSTALL / "node_modules" / "@asyncapi" / "parser").is_dir():
        INSTALL.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(SOURCE / name, INSTALL / name)
        subprocess.run(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INSTALL,
            check=True,
            timeout=300,
        )
    return INSTALL / "validate.mjs"


def validate(*documents: Path) -> subprocess.CompletedProcess[str]:
    """Run the parser over `documents`; returncode 0 when none has an error diagnostic."""
    script = install()
    return subprocess.run(
        ["node", str(script), *map(str, documents)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
