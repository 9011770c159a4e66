"""The Go modules compiled into a Go program, each with its licence from a table we keep.

A Go binary such as Litestream is static: every module it was built from is inside it, and
the licences of those modules (MIT and BSD ask for their notices) travel with it. The Go
linker records the modules and their versions in the binary (its build information, what
`go version -m` prints); this reads them without a Go toolchain and matches each against
packaging/third-party/litestream/licences (path prefix, SPDX licence, copyright holders).

    python3 packaging/go_modules.py BINARY TABLE

prints one line per module (path, version, licence, copyright), the Go runtime first, and
exits 1 naming every module the table does not cover: a new Litestream can bring new
modules, and the package must not ship them without their licences (build-deb.sh stops).
"""

from __future__ import annotations

import sys
from pathlib import Path

MAGIC = b"\xff Go buildinf:"
HEADER = 32  # the magic, pointer size, flags, padding
INLINE_STRINGS = 0x2  # Go >= 1.18: the version and module strings follow the header


def _uvarint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def build_info(binary: Path) -> tuple[str, list[tuple[str, str]]]:
    """(Go version, [(module path, version)]) of the main module and its dependencies."""
    data = binary.read_bytes()
    at = data.find(MAGIC)
    if at < 0 or not data[at + 15] & INLINE_STRINGS:
        raise ValueError(f"{binary}: no Go build information (Go >= 1.18) found")
    length, cursor = _uvarint(data, at + HEADER)
    go_version = data[cursor : cursor + length].decode()
    length, cursor = _uvarint(data, cursor + length)
    # The module text sits between two 16-byte sentinels.
    text = data[cursor + 16 : cursor + length - 16].decode()
    modules = []
    for line in text.splitlines():
        kind, *fields = line.split("\t")
        if kind in ("mod", "dep"):
            modules.append((fields[0], fields[1]))
        elif kind == "=>":  # a replacement: the module actually built in
            modules[-1] = (fields[0], fields[1])
    return go_version, modules


def read_table(table: Path) -> list[tuple[str, str, str]]:
    """(path prefix, licence, copyright) rows; '#' starts a comment."""
    rows = []
    for line in table.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            prefix, licence, holders = line.split(maxsplit=2)
            rows.append((prefix, licence, holders))
    return rows


def licence_of(module: str, rows: list[tuple[str, str, str]]) -> tuple[str, str] | None:
    """The row whose prefix is the longest that names the module or a parent of it."""
    matches = [r for r in rows if module == r[0] or module.startswith(r[0] + "/")]
    if not matches:
        return None
    _, licence, holders = max(matches, key=lambda r: len(r[0]))
    return licence, holders


def main() -> int:
    binary, table = Path(sys.argv[1]), Path(sys.argv[2])
    go_version, modules = build_info(binary)
    rows = read_table(table)
    lines, missing = [], []
    for path, version in [("std", go_version), *modules]:
        found = licence_of(path, rows)
        if found is None:
            missing.append(f"{path} {version}")
        else:
            lines.append(f"{path} {version}\n    {found[0]}: {found[1]}")
    if missing:
        print(
            f"error: {binary} holds Go modules without a licence in {table}: " + ", ".join(missing),
            file=sys.stderr,
        )
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
