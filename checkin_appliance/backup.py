"""Backups: one .tar with a consistent copy of the database, which holds the photos,
encrypted with the operator's passphrase (an age file, agefile.py) unless asked otherwise.

Inside, an uncompressed tar (`age -d FILE | tar -tvf -` lists it) with these members:

    checkin.db                        the database, copied with SQLite's online backup API
                                      (rollback-journal mode, passes integrity_check); since
                                      format 3 it holds the photos (the photos table)
    audit.key                         the audit chain's key, when there is one (format 2)
    media/patient_images/<hex>.jpg    formats 1 and 2: every photo the copy names. Format 3:
                                      only a photo the copy names but does not hold whose
                                      file is still in media/ (an older box backed up before
                                      its server's first start moved its files in)
    manifest.json                     last; what the backup is and the SHA-256 of each member

Restore puts photo members back in media/, and the server's next start moves them into the
database (photo_files.py).

`backup()` works while the server runs: the copy is one read transaction, which in WAL mode
never blocks the server's writer. `restore()` needs the server stopped; it checks the whole
file before it touches the data directory and moves the current files aside, never deletes.
Both raise BackupError with a one-line message; neither prints or logs a patient's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from checkin_appliance import __version__, agefile, audit, ownership, photos
from checkin_appliance.config import Config
from checkin_appliance.files import TEMP_SUFFIX, fsync_directory
from checkin_appliance.store import inspect, lock
from checkin_appliance.store.inspect import Counts
from checkin_appliance.store.schema import available as available_migrations

FORMAT = "checkin-appliance-backup"
ENCRYPTED_SUFFIX = ".age"  # an encrypted backup is an age file holding the tar
# 2: audit.key is a member; 3: the database holds the photos (restore still reads 1 and 2)
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
MANIFEST = "manifest.json"
DATABASE = "checkin.db"
# The audit chain's key (audit.py): without it a restored trail could not be verified.
AUDIT_KEY = audit.KEY_FILE
PHOTO_PREFIX = "media/patient_images/"
# The database's companions: moved aside with it, never left next to another database.
SIDE_FILES = ("-wal", "-shm", "-journal")
# How long restore waits for the database to be free before it says a server is running.
IN_USE_TIMEOUT = 0.5
# The tar is synced every so many bytes while it is written: one large flush at the end
# would hold up the server's own commits (each an fsync) on the same disk for a moment.
SYNC_EVERY_BYTES = 8 * 1024 * 1024
# A killed backup's temp files: OUT.<token>.tmp and OUT.<token>.tmp-checkin.db(-journal).
_TEMP_NAME = re.compile(
    r"^(?P<tar>.+\.[0-9a-f]{8}"
    + re.escape(TEMP_SUFFIX)
    + r")(?:-checkin\.db(?:-journal|-wal|-shm)?)?$"
)
# A temp file younger than this may belong to a backup that has not locked it yet.
LEFTOVER_GRACE = 10.0
# A manifest lists every photo; this is far above any clinic and far below harm.
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
# What restore reads and writes at a time: memory stays flat whatever the backup's size.
COPY_CHUNK = 1024 * 1024
# Far above any clinic (1,000 patients with photos are about 120 MB), far below harm.
RESTORE_MAX_BYTES = 32 * 1024**3
# Restore leaves at least this much free on the data directory's disk.
RESTORE_SPARE_BYTES = 64 * 1024 * 1024
# Taken by restore for its whole run; a server that holds it is running (see restore()).
LOCK_FILE = lock.LOCK_FILE
USAGE = 2  # exit code: the command cannot be done as asked (like argparse's errors)
FAILED = 1  # exit code: the backup or restore failed or was refused; nothing was changed


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is one line for the operator."""

    def __init__(self, message: str, exit_code: int = FAILED) -> None:
        message = " ".join(message.split())  # one line, whatever SQLite or tarfile said
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class BackupResult:
    """What `backup()` wrote; the audit trail records it (one call after `backup()`)."""

    path: Path
    size_bytes: int
    created_at: str
    counts: Counts
    missing_photos: int
    seconds: float

    def summary(self) -> str:
        return (
            f"backup written to {self.path}: {self.counts.describe()}, "
            f"{_megabytes(self.size_bytes)} in {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class RestoreResult:
    """What `restore()` put in place and where the previous files went."""

    source: Path
    data_dir: Path
    backup_created_at: str
    backup_app_version: str
    counts: Counts
    moved_aside: Path | None
    missing_photos: int = 0
    moved: list[str] = field(default_factory=list)


# --- backup ---------------------------------------------------------------------------------


def backup(
    config: Config, out: str | Path, *, force: bool = False, passphrase: bytes | None = None
) -> BackupResult:
    """Writes a backup of the data directory to `out`: a file, or a folder to put one in
    (an existing folder, or any text ending in "/"). With `passphrase`, the tar is
    encrypted and authenticated as an age file (agefile.py); without, it is a plain tar
    (the CLI asks for --no-encryption to say so)."""
    started = time.monotonic()
    target = _backup_target(out, encrypted=passphrase is not None)
    if target.exists() and not force:
        raise BackupError(f"{target} already exists; add --force to replace it", USAGE)
    db_path = config.db_path
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path} (is --data-dir right?)")

    _sweep_leftovers(target.parent)
    # Both temp files share one random token: TEMP_TAR is flocked while the backup runs, so a
    # later backup can tell a killed one's leftovers from a running one's (_sweep_leftovers).
    temp_tar = target.with_name(f"{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    temp_db = temp_tar.with_name(f"{temp_tar.name}-{DATABASE}")
    try:
        with _private_file(temp_tar) as raw:
            fcntl.flock(raw.fileno(), fcntl.LOCK_EX)
            # Made here 0600 before SQLite opens it (SQLite gives its journal the same mode):
            # the copy holds every patient's name, next to the backups, on a USB stick.
            _private_file(temp_db).close()
            created_at = _utc_now()
            _snapshot(db_path, temp_db)
            counts, names, held = _inspect_copy(temp_db)
            # With a passphrase, the tar goes through age encryption on its way to the file.
            sink = raw if passphrase is None else agefile.Encryptor(raw, passphrase)
            missing = _write_archive(
                sink, raw, temp_db, config, sorted(names - held), created_at, counts
            )
            if isinstance(sink, agefile.Encryptor):
                sink.close()  # the last chunk, marked last: a cut file is then refused
            raw.flush()
            os.fsync(raw.fileno())
            if target.exists() and not force:  # it appeared while we worked
                raise BackupError(f"{target} already exists; add --force to replace it", USAGE)
            os.replace(temp_tar, target)
        fsync_directory(target.parent)
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {_reason(exc)}") from exc
    finally:
        # However it ends (an error, Ctrl-C, SIGTERM: the CLI turns it into KeyboardInterrupt),
        # no copy of the database stays behind; a SIGKILL's leftovers go at the next backup.
        _remove_temp_files(temp_tar, temp_db)
    return BackupResult(
        path=target,
        size_bytes=target.stat().st_size,
        created_at=created_at,
        counts=Counts(
            counts.patients, counts.waiting, counts.credentials, len(names) - len(missing)
        ),
        missing_photos=len(missing),
        seconds=time.monotonic() - started,
    )


def _private_file(path: Path) -> BinaryIO:
    """A new file only its owner can read; never an existing file or a link planted there."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.fdopen(os.open(path, flags, 0o600), "r+b")


def _remove_temp_files(temp_tar: Path, temp_db: Path) -> None:
    side_files = [temp_db.with_name(temp_db.name + suffix) for suffix in SIDE_FILES]
    for leftover in (temp_tar, temp_db, *side_files):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _sweep_leftovers(folder: Path) -> int:
    """Removes the temp files of earlier backups into `folder` that were killed outright
    (SIGKILL, a power cut): each is a copy of the database. Returns how many groups went.

    A running backup holds a flock on its TEMP_TAR; a group whose TEMP_TAR is locked, or
    younger than LEFTOVER_GRACE (created, not yet locked), is left alone.
    """
    groups: dict[str, list[Path]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = _TEMP_NAME.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                groups.setdefault(match["tar"], []).append(Path(entry.path))
    removed = 0
    for tar_name, paths in groups.items():
        if _backup_running(folder / tar_name, paths):
            continue
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed += 1
    return removed


def _backup_running(temp_tar: Path, group: list[Path]) -> bool:
    try:
        if any(time.time() - p.lstat().st_mtime < LEFTOVER_GRACE for p in group):
            return True
        fd = os.open(temp_tar, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # the temp tar is created first: a copy without it is a leftover
    except OSError:
        return True  # cannot tell: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True  # locked by a running backup (or no locks here: leave it)
    finally:
        os.close(fd)
    return False


def default_backup_name(now: datetime | None = None, *, encrypted: bool = False) -> str:
    """checkin-backup-20261126-213000.tar(.age): sorts by date; no ':', which FAT cannot
    store; .age when encrypted (`age -d` opens it)."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"checkin-backup-{stamp}.tar" + (ENCRYPTED_SUFFIX if encrypted else "")


def _backup_target(text: str | Path, *, encrypted: bool) -> Path:
    out = Path(text)
    if out.is_dir() or str(text).endswith(os.sep):  # Path() drops a trailing "/"
        if not out.is_dir():
            raise BackupError(f"the folder {out} does not exist (is the disk mounted?)", USAGE)
        return out / default_backup_name(encrypted=encrypted)
    if not out.parent.is_dir():
        # Never create it: an unmounted USB stick would silently fill the box's own disk.
        raise BackupError(f"the folder {out.parent} does not exist (is the disk mounted?)", USAGE)
    return out


def _snapshot(db_path: Path, copy: Path) -> None:
    """A consistent copy of the live database, or BackupError."""
    try:
        try:
            inspect.copy_database(db_path, copy)
        except sqlite3.OperationalError:
            if _can_write_in(db_path.parent):
                raise
            inspect.copy_database(db_path, copy, read_only=True)
    except sqlite3.OperationalError as exc:
        raise BackupError(f"cannot copy {db_path} to {copy.parent}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise _damaged(str(exc)) from exc


def _can_write_in(folder: Path) -> bool:
    """False on a read-only mount or a folder this user cannot write in: backup then reads
    the database without the -shm and locks SQLite would write."""
    try:
        read_only_mount = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    return not read_only_mount and os.access(folder, os.W_OK | os.X_OK)


def _inspect_copy(copy: Path) -> tuple[Counts, set[str], set[str]]:
    """integrity_check on the copy, then its counts, the photo names its rows point at and
    those it holds."""
    try:
        with inspect.read_only(copy) as db:
            problem = inspect.integrity_problem(db)
            if problem is not None:
                raise _damaged(problem)
            counts = _counts(db)
            names = inspect.photo_names(db)
            held = inspect.held_photo_names(db) & names
    except sqlite3.DatabaseError as exc:
        raise _damaged(str(exc)) from exc
    return counts, names, held


def _damaged(problem: str) -> BackupError:
    return BackupError(
        f"the database is damaged ({_first_line(problem)}), so no backup was written; keep "
        "your last good backup and see 'Backup and restore' in the README"
    )


def _write_archive(
    sink: BinaryIO,
    raw: BinaryIO,
    db_copy: Path,
    config: Config,
    not_held: list[str],
    created_at: str,
    counts: Counts,
) -> list[str]:
    """The tar into `sink` (`raw`, the file, or an encryptor writing into it); returns the
    named photos that are nowhere (`not_held`: those the copy names but does not hold)."""
    members: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    mtime = int(time.time())
    syncing = _Syncing(raw)
    # "w|": a stream, written front to back; an encryptor cannot seek.
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        with db_copy.open("rb") as db:
            size = os.fstat(db.fileno()).st_size
            hashing = _Hashing(db, syncing)
            tar.addfile(_member(DATABASE, size, mtime), hashing)
            members[DATABASE] = {"size": size, "sha256": hashing.hexdigest()}
        key = _read_private(config.data_dir / AUDIT_KEY)
        if key is not None:
            tar.addfile(_member(AUDIT_KEY, len(key), mtime), io.BytesIO(key))
            members[AUDIT_KEY] = {"size": len(key), "sha256": hashlib.sha256(key).hexdigest()}
        for name in not_held:
            data = _read_photo_file(config.photo_dir, name)
            if data is None:
                missing.append(name)
                continue
            member = PHOTO_PREFIX + name
            tar.addfile(_member(member, len(data), mtime), io.BytesIO(data))
            members[member] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            syncing()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": __version__,
            "created_at": created_at,
            "host": socket.gethostname(),
            "sqlite_version": sqlite3.sqlite_version,
            "counts": {
                "patients": counts.patients,
                "waiting": counts.waiting,
                "credentials": counts.credentials,
                "photos": counts.photos - len(missing),
            },
            # Photos the database names but neither holds nor had as a file (random names,
            # not people).
            "missing_photos": missing,
            "members": members,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        tar.addfile(_member(MANIFEST, len(text), mtime), io.BytesIO(text))
    return missing


def _read_private(path: Path) -> bytes | None:
    """A small file of ours (never through a link), or None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(64 * 1024)


def _read_photo_file(photo_dir: Path, name: str) -> bytes | None:
    """An older box's photo file, or None if it is not there (never through a link)."""
    if not photos.PHOTO_NAME.match(name):
        return None
    try:
        fd = os.open(photo_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o600
    return info


class _Syncing:
    """Called as the tar grows: syncs the file every SYNC_EVERY_BYTES written."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._synced = 0

    def __call__(self) -> None:
        if self._raw.tell() - self._synced >= SYNC_EVERY_BYTES:
            self._raw.flush()
            os.fdatasync(self._raw.fileno())
            self._synced = self._raw.tell()


class _Hashing:
    """A file wrapper that hashes what tarfile reads through it (and syncs as it goes)."""

    def __init__(self, f: IO[bytes], syncing: Callable[[], None]) -> None:
        self._f = f
        self._hash = hashlib.sha256()
        self._syncing = syncing

    def read(self, size: int = -1) -> bytes:
        self._syncing()  # what tarfile wrote of the last read is in the file by now
        data = self._f.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# --- restore --------------------------------------------------------------------------------


def restore(
    config: Config,
    source: Path,
    *,
    passphrase: bytes | None = None,
    allow_unencrypted: bool = True,
) -> RestoreResult:
    """Puts a backup in place of the data directory's database and photos (server stopped).

    The whole backup is unpacked into a folder inside the data directory and checked
    (manifest, every SHA-256, integrity_check, schema version) before anything of the
    current data is moved. A running server is recognised three ways, any one is enough:
    it holds LOCK_FILE; SQLite cannot give us the database exclusively (every open
    connection of a WAL database holds a shared lock, even when idle); or, on Linux,
    another process has checkin.db open (this also catches a server in maintenance mode
    whose file SQLite cannot read).
    """
    if not source.is_file():
        raise BackupError(f"{source} is not a file", USAGE)
    data_dir = config.data_dir
    created_data_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / f".restore-{secrets.token_hex(4)}.tmp"
    try:
        with _restore_lock(data_dir):
            _refuse_links(config)
            refuse_if_in_use(config)
            staging.mkdir(mode=0o700)
            opener = _opener(source, passphrase, allow_unencrypted)
            manifest = _unpack(source, staging, opener)
            counts, missing = _check_unpacked(staging, manifest)
            _give_to_data_dir_owner(data_dir, staging)
            _fsync_tree(staging)
            refuse_if_in_use(config)  # a server may have started while we unpacked
            aside, moved = _swap_in(config, staging)
    except OSError as exc:
        raise BackupError(f"restore failed, nothing was changed: {_reason(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_data_dir and not config.db_path.exists():
            with contextlib.suppress(OSError):
                (data_dir / LOCK_FILE).unlink()
                data_dir.rmdir()
        # Run as root, checkin.lock and media/ (made here, never started) must still be the
        # service's: it opens the lock read-write and moves restored photo files out of media/.
        ownership.give_to_data_dir_owner(data_dir)
    return RestoreResult(
        source=source,
        data_dir=data_dir,
        backup_created_at=str(manifest.get("created_at", "?")),
        backup_app_version=str(manifest.get("app_version", "?")),
        counts=counts,
        moved_aside=aside,
        missing_photos=missing,
        moved=moved,
    )


@contextlib.contextmanager
def _restore_lock(data_dir: Path) -> Iterator[None]:
    """Holds LOCK_FILE for the whole restore: a second restore, or a server (it takes the
    same lock at start), cannot run at the same time."""
    try:
        with lock.hold(data_dir):
            yield
    except lock.UnsafeLockFile as exc:
        raise BackupError(f"{exc}; nothing was changed") from exc
    except lock.DataDirInUse as exc:
        raise _in_use(data_dir, f"{LOCK_FILE} is held") from exc


def _refuse_links(config: Config) -> None:
    """Restore (often run as root) renames into media/ (an older backup's photo files): a link
    planted there by the service's user would put the photos, owned by that user, in any
    folder of the box."""
    if config.media_dir.is_symlink():
        raise BackupError(
            f"{config.media_dir} is a symbolic link; remove it if you did not put it there; "
            "nothing was changed"
        )


def refuse_if_in_use(config: Config) -> None:
    """BackupError when a server has the data directory's database open (restore, promote)."""
    db_path = config.db_path
    pids = _processes_with_open(db_path)
    if pids:
        raise _in_use(config.data_dir, f"process {', '.join(map(str, pids))} has it open")
    if not db_path.exists():
        return
    if inspect.locked_by_another(db_path, IN_USE_TIMEOUT):
        raise _in_use(config.data_dir, "the database is locked")


def _in_use(data_dir: Path, why: str) -> BackupError:
    return BackupError(
        f"the server is running on {data_dir} ({why}); stop it first "
        "(sudo systemctl stop checkin-appliance) and run restore again"
    )


def _processes_with_open(db_path: Path) -> list[int]:
    """Other processes with the database (or its WAL) open, as far as /proc lets us see."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    base = str(db_path.resolve())
    wanted = {base, base + "-wal", base + "-shm"}
    me = os.getpid()
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in wanted:
                        found.append(int(entry.name))
                        break
        except OSError:
            continue  # gone, or not ours to look at
    return sorted(found)


@dataclass(frozen=True)
class _Listed:
    """A member as the manifest lists it."""

    size: int
    sha256: str


def _opener(
    source: Path, passphrase: bytes | None, allow_unencrypted: bool
) -> Callable[[BinaryIO], BinaryIO]:
    """What turns the open file into the plain tar stream: nothing, or age decryption.

    An unencrypted file is restored only when the caller allows it: a forged plain tar
    must not pass for the clinic's encrypted backup."""
    with source.open("rb") as f:
        encrypted = agefile.is_age(f.read(len(agefile.MAGIC)))
    if encrypted:
        if passphrase is None:
            raise BackupError(
                f"{source} is encrypted; give its passphrase with --passphrase-file FILE or "
                "--passphrase-stdin",
                USAGE,
            )
        return lambda raw: agefile.Decryptor(raw, passphrase)  # type: ignore[return-value]
    if passphrase is not None or not allow_unencrypted:
        raise BackupError(
            f"{source} is not encrypted, so anyone could have written it; if you made it "
            "without encryption (--no-encryption, or before backups were encrypted), "
            "restore it with --no-encryption; nothing was changed",
            USAGE,
        )
    return lambda raw: raw


def _unpack(source: Path, staging: Path, opener: Callable[[BinaryIO], BinaryIO]) -> dict[str, Any]:
    """Every member into `staging`, checked against the manifest; returns the manifest.

    Two passes over the file. The first writes nothing: it reads the archive as `backup`
    writes it (a plain tar of regular files with our names, the manifest last), hashes every
    member and checks it against the manifest, and the total against free space. Only then
    does the second pass write each member, stopping at the size the manifest gives it. A
    compressed archive (a `.tar.gz` bomb) is not a plain tar and is refused at its first
    block; a plain tar stores every byte it unpacks, so nothing expands beyond the file.
    """
    listed = _read_members(source, opener)
    manifest = listed.pop(MANIFEST)
    _refuse_if_no_room(source, staging.parent, sum(m.size for m in listed.values()))
    (staging / "media" / "patient_images").mkdir(parents=True, mode=0o700)
    written = _read_members(source, opener, staging, listed)
    written.pop(MANIFEST)
    if written != listed:  # the file changed between the passes
        raise _not_a_backup(source, "it changed while it was read")
    return manifest  # type: ignore[return-value]


def _read_members(
    source: Path,
    opener: Callable[[BinaryIO], BinaryIO],
    staging: Path | None = None,
    expected: dict[str, _Listed] | None = None,
) -> dict[str, Any]:
    """One pass over the archive: {member: _Listed} checked against the manifest, plus
    {MANIFEST: the manifest}. With `staging`, each member is also written there, no more of
    it than `expected` (what the first pass found) says."""
    seen: dict[str, _Listed] = {}
    manifest_bytes: bytes | None = None
    total = 0
    try:
        with (
            source.open("rb") as raw,
            tarfile.open(fileobj=opener(raw), mode="r|") as tar,
        ):
            for member in tar:
                name = member.name
                if manifest_bytes is not None:
                    raise _not_a_backup(source, f"unexpected entry {name!r} after the manifest")
                if name in seen:
                    raise _not_a_backup(source, f"{name} appears twice")
                # Only plain files: no links, folders, devices, or sparse files (which
                # unpack to far more than they store).
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse:
                    raise _not_a_backup(source, f"unexpected entry {name!r}")
                reader = tar.extractfile(member)
                assert reader is not None  # a regular file always has one
                if name == MANIFEST:
                    if member.size > MANIFEST_MAX_BYTES:
                        raise _not_a_backup(source, "the manifest is too large")
                    manifest_bytes = reader.read()
                    continue
                target = _member_path(source, name, staging)
                if expected is not None and expected.get(name, _Listed(-1, "")).size != member.size:
                    raise _not_a_backup(source, "it changed while it was read")
                total += member.size
                if total > RESTORE_MAX_BYTES:
                    raise _not_a_backup(source, "it is larger than any backup we write")
                if target is None:
                    seen[name] = _hash_stream(reader, member.size)
                else:
                    seen[name] = _write_file(target, reader, member.size)
    except agefile.AgeError as exc:
        raise BackupError(f"cannot decrypt {source}: {exc}; nothing was changed") from exc
    except (tarfile.TarError, EOFError) as exc:
        raise _not_a_backup(source, f"unreadable or cut short ({_first_line(str(exc))})") from exc
    if manifest_bytes is None:
        raise _not_a_backup(source, f"no {MANIFEST}: the file is incomplete")
    manifest, listed = _parse_manifest(source, manifest_bytes)
    for name in sorted(set(listed) | set(seen)):
        if name not in seen:
            raise _not_a_backup(source, f"{name} is missing: the file is incomplete")
        if name not in listed:
            raise _not_a_backup(source, f"{name} is not in the manifest")
        if seen[name] != listed[name]:
            raise _not_a_backup(source, f"{name} does not match its checksum: the file is damaged")
    return {**seen, MANIFEST: manifest}


def _member_path(source: Path, name: str, staging: Path | None) -> Path | None:
    """Where a member goes in `staging` (None without one); refuses names we never write."""
    if name in (DATABASE, AUDIT_KEY):
        return None if staging is None else staging / name
    photo = name[len(PHOTO_PREFIX) :]
    if name.startswith(PHOTO_PREFIX) and photos.PHOTO_NAME.match(photo):
        return None if staging is None else staging / "media" / "patient_images" / photo
    raise _not_a_backup(source, f"unexpected entry {name!r}")


def _parse_manifest(source: Path, data: bytes) -> tuple[dict[str, Any], dict[str, _Listed]]:
    try:
        manifest = json.loads(data)
        listed = {
            name: _Listed(int(entry["size"]), str(entry["sha256"]))
            for name, entry in manifest["members"].items()
        }
        fmt, version = manifest["format"], manifest["format_version"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _not_a_backup(source, f"{MANIFEST} is not readable") from exc
    if fmt != FORMAT:
        raise _not_a_backup(source, f"{MANIFEST} is not a checkin-appliance manifest")
    if version not in READABLE_FORMATS:
        raise BackupError(
            f"{source} is backup format {version}; this checkin-appliance reads format "
            f"{FORMAT_VERSION} (upgrade it to restore this backup); nothing was changed"
        )
    if DATABASE not in listed:
        raise _not_a_backup(source, f"the manifest lists no {DATABASE}")
    return manifest, listed


def _refuse_if_no_room(source: Path, data_dir: Path, needed: int) -> None:
    """The unpacked backup must fit with room to spare: a full disk stops the server too."""
    st = os.statvfs(data_dir)
    free = st.f_bavail * st.f_frsize
    if needed + RESTORE_SPARE_BYTES > free:
        raise BackupError(
            f"{source} unpacks to {_megabytes(needed)} and {data_dir} has {_megabytes(free)} "
            "free; make room first; nothing was changed"
        )


def _not_a_backup(source: Path, why: str) -> BackupError:
    return BackupError(f"{source} is not a usable backup: {why}; nothing was changed")


def _hash_stream(reader: IO[bytes], size: int) -> _Listed:
    digest = hashlib.sha256()
    read = 0
    while chunk := reader.read(min(COPY_CHUNK, size - read)):
        digest.update(chunk)
        read += len(chunk)
    return _Listed(read, digest.hexdigest())


def _write_file(path: Path, reader: IO[bytes], limit: int) -> _Listed:
    """Streams at most `limit` bytes of `reader` into a new file (synced later, once
    checked); O_EXCL and O_NOFOLLOW: never an existing file or a planted link."""
    digest = hashlib.sha256()
    size = 0
    mode = 0o600 if path.name in (DATABASE, AUDIT_KEY) else 0o640
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        while chunk := reader.read(min(COPY_CHUNK, limit - size)):
            digest.update(chunk)
            size += len(chunk)
            f.write(chunk)
    return _Listed(size, digest.hexdigest())


def _fsync_tree(root: Path) -> None:
    """Every file, then every folder, on disk before the swap makes them the live data.

    One pass after all are written lets the disk take them together: for a thousand photos
    this is a few times faster than a temp file, fsync and rename for each (write_atomically).
    """
    folders = [root]
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            folders.append(path)
            continue
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in reversed(folders):
        fsync_directory(folder)


def _check_unpacked(staging: Path, manifest: dict[str, Any]) -> tuple[Counts, int]:
    """integrity_check and schema version of the unpacked database; (counts, missing photos)."""
    counts, names, held = check_database(staging / DATABASE, "the database in the backup")
    # Formats 1 and 2 carry the photos as files; format 3's database holds them.
    present = {p.name for p in (staging / "media" / "patient_images").iterdir()} | held
    missing = len(names - present)
    photos_in = len(names & present)
    return Counts(counts.patients, counts.waiting, counts.credentials, photos_in), missing


def check_database(
    db_path: Path, what: str, made: str = "the backup was made"
) -> tuple[Counts, set[str], set[str]]:
    """A database about to become the live one (a backup's, a standby's copy): sound
    (integrity_check), of a schema this program knows, exactly as its migrations make it;
    its counts, the photo names its rows give, and those it holds the bytes of. BackupError
    names `what` and the problem (`made`: when it was last ours)."""
    migrations = available_migrations()
    known = len(migrations)
    try:
        with inspect.read_only(db_path) as db:
            problem = inspect.integrity_problem(db)
            if problem is not None:
                raise BackupError(
                    f"{what} is damaged ({_first_line(problem)}); nothing was changed"
                )
            schema = inspect.schema_version(db)
            if schema > known:
                raise BackupError(
                    f"{what} is from a newer checkin-appliance (schema {schema}, this one "
                    f"knows {known}); upgrade it first; nothing was changed"
                )
            odd = inspect.schema_problem(db, migrations)
            if odd is not None:
                raise BackupError(
                    f"{what} is not one checkin-appliance writes ({odd}): it was changed "
                    f"after {made}; nothing was changed"
                )
            return _counts(db), inspect.photo_names(db), inspect.held_photo_names(db)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{what} cannot be read ({exc}); nothing was changed") from exc


def _give_to_data_dir_owner(data_dir: Path, staging: Path) -> None:
    """Run as root (sudo), the restored files still belong to the service's user."""
    if os.geteuid() != 0:
        return
    owner = data_dir.stat()
    for path in [staging, *staging.rglob("*")]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def _swap_in(config: Config, staging: Path) -> tuple[Path | None, list[str]]:
    """Current database and photos into before-restore-<time>/, the unpacked ones in place:
    the database (which holds its photos since format 3), and media/patient_images/ only
    when the backup had photo files (the server's next start moves them into the database).

    Renames only (one filesystem), fsynced. The WAL goes before the database, and the new
    database comes last, so a restored file never meets the previous file's WAL.
    """
    data_dir = config.data_dir
    current = [config.db_path.with_name(config.db_path.name + suffix) for suffix in SIDE_FILES] + [
        data_dir / AUDIT_KEY,  # it keys the current trail, not the restored one
        config.db_path,
    ]
    # lexists: a (dangling) link is moved aside too, never written through.
    current = [p for p in current if os.path.lexists(p)]
    old_photos = config.photo_dir if os.path.lexists(config.photo_dir) else None
    aside: Path | None = None
    moves: list[tuple[Path, Path]] = []
    if current or old_photos is not None:
        aside = new_aside_dir(data_dir)
    try:
        if aside is not None:
            if old_photos is not None:
                (aside / "media").mkdir(mode=0o700)
                moves.append((old_photos, aside / "media" / "patient_images"))
                os.rename(*moves[-1])
            for path in current:
                moves.append((path, aside / path.name))
                os.rename(*moves[-1])
            fsync_directory(aside)
        staged_photos = staging / "media" / "patient_images"
        if any(staged_photos.iterdir()):
            config.media_dir.mkdir(parents=True, exist_ok=True)
            moves.append((staged_photos, config.photo_dir))
            os.rename(*moves[-1])
            fsync_directory(config.media_dir)
        if (staging / AUDIT_KEY).exists():
            moves.append((staging / AUDIT_KEY, data_dir / AUDIT_KEY))
            os.rename(*moves[-1])
        moves.append((staging / DATABASE, config.db_path))
        os.rename(*moves[-1])
        fsync_directory(data_dir)
    except BaseException:
        for done_from, done_to in reversed(moves):
            with contextlib.suppress(OSError):
                os.rename(done_to, done_from)
        raise
    if aside is None:
        return None, []
    return aside, [str(target.relative_to(aside)) for _, target in moves if aside in target.parents]


def new_aside_dir(data_dir: Path, prefix: str = "before-restore") -> Path:
    """A new folder `<prefix>-<date>-<time>` for the files a restore or promote replaces."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 100):
        path = data_dir / (f"{prefix}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        fsync_directory(data_dir)
        return path
    raise BackupError(f"cannot make a {prefix} folder in {data_dir}")


# --- shared ---------------------------------------------------------------------------------


def _counts(db: sqlite3.Connection) -> Counts:
    try:
        return inspect.counts(db)
    except inspect.NotOurDatabase as exc:
        raise BackupError(f"not a checkin-appliance database ({exc})") from exc


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else text


def _reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
