"""The build's version, from BASE_VERSION in checkin_appliance/__init__.py and git.

Prints the version and writes checkin_appliance/_build.py (VERSION, BUILD_TIME; not in git)
and build/version for packaging/build.sh and build-deb.sh:

    0.2.0                        the commit that set BASE_VERSION, clean tree
    0.2.0.post7+g1a2b3c4d5       7 commits after it (PEP 440 post-release, local hash)
    0.2.0.post7+g1a2b3c4d5.dirty uncommitted changes in tracked files
    0.2.0                        no git (an unpacked source archive)

Both pip (PEP 440) and dpkg order these the same way: 0.2.0 < 0.2.0.post7 < 0.2.0.post12 <
0.2.1. BUILD_TIME is SOURCE_DATE_EPOCH (build.sh sets it to the commit's time).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INIT = ROOT / "checkin_appliance" / "__init__.py"
BASE_LINE = re.compile(r'^BASE_VERSION = "([0-9]+(?:\.[0-9]+)*)"$', re.MULTILINE)


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 (our own arguments)
            ["git", "-C", str(ROOT), *args],  # noqa: S607 (git from PATH, as build.sh's)
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def version(base: str) -> str:
    # A source tree unpacked inside another repository (build/previous/src) is not its commit.
    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != ROOT:
        return base
    bump = git("log", "-1", "--format=%H", "-G", "^BASE_VERSION = ", "--", str(INIT))
    count = int(git("rev-list", "--count", f"{bump}..HEAD" if bump else "HEAD") or 0)
    commit = git("rev-parse", "--short=9", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    text = f"{base}.post{count}" if count else base
    local = ([f"g{commit}"] if count or dirty else []) + (["dirty"] if dirty else [])
    return f"{text}+{'.'.join(local)}" if local else text


def main() -> int:
    found = BASE_LINE.search(INIT.read_text(encoding="utf-8"))
    if not found:
        print(f"error: no BASE_VERSION line in {INIT}", file=sys.stderr)
        return 1
    built = version(found.group(1))
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct")
    build_time = int(epoch) if epoch else None
    (INIT.parent / "_build.py").write_text(
        "# Written by packaging/stamp_version.py at build time (not in git).\n"
        f'VERSION = "{built}"\nBUILD_TIME = {build_time}  # SOURCE_DATE_EPOCH\n',
        encoding="utf-8",
    )
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "version").write_text(built + "\n", encoding="utf-8")
    print(built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
