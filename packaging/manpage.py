"""Writes the checkin-appliance(1) man page (roff) from the command's own --help texts.

Walks the argparse tree of checkin_appliance.cli, so every command and option in the page is
one the program accepts, worded as `--help` words it. Run by packaging/build-deb.sh with the
build venv's Python (the installed package); the date comes from SOURCE_DATE_EPOCH so the
same sources give the same page:

    build/venv/bin/python packaging/manpage.py VERSION > checkin-appliance.1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

from checkin_appliance.cli import DESCRIPTION, build_parser

# --help as an 80-column terminal shows it, whatever the build machine's terminal is.
COLUMNS = "80"

FILES = [
    ("/etc/checkin-appliance/config.toml", "the configuration (every key, commented out)"),
    ("/var/lib/checkin-appliance", "the data: checkin.db, photos in media/, certificates in tls/"),
    ("/lib/systemd/system/checkin-appliance.service", "the hardened systemd service"),
    ("/usr/share/doc/checkin-appliance/README.md", "the full manual"),
]


def escape(text: str) -> str:
    """Plain text as roff: backslashes, minus signs, and lines that would read as requests."""
    lines = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def commands(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every sub-command's parser below it, in the order --help lists them."""
    yield parser
    # argparse has no public way to reach sub-parsers; its _SubParsersAction is stable API
    # in practice (documented for add_subparsers' return value).
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for sub in action.choices.values():
                if id(sub) not in seen:  # aliases share one parser
                    seen.add(id(sub))
                    yield from commands(sub)


def page(version: str) -> str:
    os.environ["COLUMNS"] = COLUMNS
    parser = build_parser()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    out = [
        f'.TH CHECKIN\\-APPLIANCE 1 "{date}" "checkin-appliance {version}" "User Commands"',
        ".SH NAME",
        "checkin\\-appliance \\- patient check\\-in and waiting\\-room queue for small clinics",
        ".SH SYNOPSIS",
        ".B checkin\\-appliance",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        ".B checkin\\-appliance",
        "\\fICOMMAND\\fR \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        escape(" ".join(DESCRIPTION.split())),
        ".PP",
        "Installed as the service \\fBcheckin\\-appliance\\fR, which runs",
        "\\fBcheckin\\-appliance serve\\fR as its own user. The commands below act on",
        "the same data directory; run them as that user, e.g.",
        "\\fBsudo \\-u checkin\\-appliance checkin\\-appliance token list\\fR.",
        ".SH COMMANDS",
    ]
    for sub in commands(parser):
        out += [f".SS {escape(sub.prog)}", ".nf", escape(sub.format_help().rstrip()), ".fi"]
    out.append(".SH FILES")
    for path, what in FILES:
        out += [".TP", f"\\fI{escape(path)}\\fR", escape(what)]
    out += [
        ".SH SEE ALSO",
        "\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1); the README in",
        "\\fI/usr/share/doc/checkin\\-appliance/\\fR.",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page(sys.argv[1]))
