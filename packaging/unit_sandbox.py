"""Run a command under the seccomp rules of systemd/checkin-appliance.service, without systemd.

Used by tests/test_packaging.py to show the executable works inside the unit's sandbox:
SystemCallFilter= (allow list, then ~deny lists; denied calls fail with EPERM, as the unit's
SystemCallErrorNumber=EPERM says) and MemoryDenyWriteExecute=yes (no writable+executable
mapping, nothing made executable later), the same rules systemd installs. The groups are
expanded by `systemd-analyze syscall-filter`. Needs Debian's python3-seccomp:

    /usr/bin/python3 packaging/unit_sandbox.py systemd/checkin-appliance.service CMD [ARG...]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import seccomp  # Debian's python3-seccomp (libseccomp's own binding)

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


def unit_settings(unit: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def expand(name: str, seen: set[str] | None = None) -> set[str]:
    """A system call or @group, as the names of the calls it stands for."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    seen.add(name)
    listing = subprocess.run(  # noqa: S603
        ["systemd-analyze", "syscall-filter", name],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#") and item not in seen:
            calls |= expand(item, seen)
    return calls


def syscall_rules(filters: list[str]) -> set[str]:
    """systemd's semantics: the first (non-~) line makes an allow list, ~lines remove from it."""
    allowed: set[str] = set()
    for entry in filters:
        deny = entry.startswith("~")
        names = set().union(*(expand(n) for n in entry.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    # What systemd itself lets through to reach the program.
    return allowed | {"execve", "exit", "exit_group", "rt_sigreturn"}


def load(unit: Path) -> int:
    settings = unit_settings(unit)
    # Filters stack; the write-execute one first, while seccomp() itself is still allowed.
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        mdwe = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        eperm = seccomp.ERRNO(1)
        both = PROT_WRITE | PROT_EXEC
        mdwe.add_rule(eperm, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, both, both))
        mdwe.add_rule(eperm, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC))
        mdwe.add_rule(
            eperm, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, PROT_EXEC)
        )
        mdwe.add_rule(eperm, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC))
        mdwe.load()
    filters = settings.get("SystemCallFilter", [])
    if not filters:
        return 0
    allowed = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))
    count = 0
    for name in sorted(syscall_rules(filters)):
        try:
            allowed.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):  # a name this kernel or architecture lacks
            continue
        count += 1
    allowed.load()
    return count


def main() -> None:
    unit, command = Path(sys.argv[1]), sys.argv[2:]
    count = load(unit)
    print(f"unit_sandbox: {count} system calls allowed", file=sys.stderr, flush=True)
    os.execvp(command[0], command)  # noqa: S606


if __name__ == "__main__":
    main()
