"""Files encrypted with a passphrase in the age format (age-encryption.org/v1), streamed.

A backup encrypted here opens with the standard tools (`age -d`, `rage -d`, pyrage) and any
age file with one scrypt recipient opens here. We write it ourselves on top of the
`cryptography` package (already a dependency, shipped in the frozen binary) because the
maintained bindings (pyrage) take and return whole byte strings: a 100 MB backup would sit
in memory, twice. The construction is age's, unchanged:

    header   "age-encryption.org/v1", one "-> scrypt <salt> <log2 N>" stanza whose body is
             the 16-byte file key sealed with ChaCha20-Poly1305 under
             scrypt(passphrase, "age-encryption.org/v1/scrypt" + salt, N, r=8, p=1), and
             "--- <HMAC-SHA-256 of the header>" keyed by HKDF(file key, "header")
    payload  a 16-byte nonce, then 64 KiB chunks sealed with ChaCha20-Poly1305 under
             HKDF(file key, salt=nonce, "payload"); each chunk's nonce is its 11-byte
             counter and a last-chunk flag, so a chunk cut, dropped, moved or changed fails

A wrong passphrase fails at the stanza, a changed header at its MAC, a changed payload at
the first chunk that differs, a cut file at its end. Memory stays one chunk whatever the size.
"""

from __future__ import annotations

import base64
import functools
import hmac
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

# cryptography (about 5 MB resident) loads with the first backup, not with the server.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MAGIC = b"age-encryption.org/v1\n"
# age's own default for passphrases: about a second and 256 MiB of memory, once per file.
WORK_FACTOR = 18
# A file asking for more is refused before scrypt runs (2^20 needs 1 GiB of memory).
MAX_WORK_FACTOR = 20
CHUNK = 64 * 1024
_TAG = 16
_SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
_HEADER_MAX = 4096  # ours is under 200 bytes; a forged file cannot make us read more
_B64 = re.compile(rb"^[A-Za-z0-9+/]*$")
# A passphrase guards every patient's name and photo (a backup) or the box's keys (the
# replica) against anyone who finds the file; scrypt slows each guess to about a second, and
# this keeps the guesses from being few.
MIN_PASSPHRASE_CHARS = 12


class AgeError(Exception):
    """The file is not one we can open: not age, another kind of recipient, a wrong
    passphrase, or changed or cut after it was written. The message is one short phrase."""


def read_passphrase_file(path: Path) -> tuple[bytes, bool]:
    """The passphrase in `path`'s first line (without its line end), and whether users other
    than the file's owner may read it. Raises OSError; never says what the line holds."""
    with path.open("rb") as f:
        line = f.readline()
        readable_by_others = bool(os.fstat(f.fileno()).st_mode & 0o077)
    return line.rstrip(b"\r\n"), readable_by_others


def too_short(passphrase: bytes) -> bool:
    return len(passphrase.decode("utf-8", "replace")) < MIN_PASSPHRASE_CHARS


def is_age(head: bytes) -> bool:
    """True when `head` (the file's first bytes) starts an age file."""
    return head[: len(MAGIC)] == MAGIC


class Encryptor:
    """A write-only file object: what is written to it goes to `out` encrypted.

    `close()` writes the last chunk; it does not close `out`."""

    def __init__(self, out: BinaryIO, passphrase: bytes, work_factor: int = WORK_FACTOR) -> None:
        file_key = os.urandom(16)
        salt = os.urandom(16)
        wrapped = _aead(_scrypt(passphrase, salt, work_factor)).encrypt(bytes(12), file_key, None)
        header = MAGIC + b"-> scrypt " + _b64(salt) + b" %d\n" % work_factor + _body(wrapped)
        header += b"---"
        mac = hmac.new(_hkdf(file_key, b"", b"header"), header, "sha256").digest()
        nonce = os.urandom(16)
        out.write(header + b" " + _b64(mac) + b"\n" + nonce)
        self._out = out
        self._aead = _aead(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._pending = bytearray()
        self.closed = False

    def write(self, data: bytes) -> int:
        self._pending += data
        # Keep the last full chunk back: only close() knows which chunk is the last.
        while len(self._pending) > CHUNK:
            self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._seal(bytes(self._pending), last=True)
            self._pending.clear()
            self.closed = True

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        self._out.write(self._aead.encrypt(_chunk_nonce(self._counter, last), chunk, None))
        self._counter += 1


class Decryptor:
    """A read-only file object over an age file: reads give the plaintext, each chunk
    authenticated before any of it is returned. Raises AgeError on any forgery."""

    def __init__(self, source: BinaryIO, passphrase: bytes) -> None:
        file_key = _open_header(source, passphrase)
        nonce = source.read(16)
        if len(nonce) != 16:
            raise AgeError("it is cut short")
        self._source = source
        self._aead = _aead(_hkdf(file_key, nonce, b"payload"))
        self._counter = 0
        self._buffer = b""
        self._ahead = source.read(CHUNK + _TAG)
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) < size) and not self._done:
            self._buffer += self._next_chunk()
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _next_chunk(self) -> bytes:
        sealed = self._ahead
        self._ahead = self._source.read(CHUNK + _TAG) if len(sealed) == CHUNK + _TAG else b""
        last = not self._ahead
        if len(sealed) < _TAG or (last and len(sealed) == _TAG and self._counter > 0):
            raise AgeError("it is cut short")
        from cryptography.exceptions import InvalidTag

        try:
            chunk = self._aead.decrypt(_chunk_nonce(self._counter, last), sealed, None)
        except InvalidTag:
            raise AgeError("it was changed or cut after it was written") from None
        self._counter += 1
        self._done = last
        return chunk


def _open_header(source: BinaryIO, passphrase: bytes) -> bytes:
    """The file key, from a header with exactly one scrypt stanza and a valid MAC."""
    lines: list[bytes] = []
    read = 0
    while True:
        line = source.readline(_HEADER_MAX - read)
        read += len(line)
        if not line.endswith(b"\n"):
            raise AgeError("it is not an age file" if not lines else "its header is damaged")
        lines.append(line[:-1])
        if line.startswith(b"---"):
            break
    if lines[0] + b"\n" != MAGIC:
        raise AgeError("it is not an age file")
    stanza = lines[1].split(b" ") if len(lines) > 1 else []
    if stanza[:2] != [b"->", b"scrypt"]:
        raise AgeError("it is encrypted for a key, not with a passphrase")
    if len(stanza) != 4 or len(lines) != 4 or not stanza[3].isdigit():
        raise AgeError("its header is damaged")
    salt, work_factor = _unb64(stanza[2]), int(stanza[3])
    wrapped = _unb64(lines[2])
    if len(salt) != 16 or len(wrapped) != 32 or not 1 <= work_factor <= MAX_WORK_FACTOR:
        raise AgeError("its header is damaged")
    from cryptography.exceptions import InvalidTag

    try:
        file_key = _aead(_scrypt(passphrase, salt, work_factor)).decrypt(bytes(12), wrapped, None)
    except InvalidTag:
        raise AgeError("the passphrase is wrong") from None
    mac_line = lines[3]
    if not mac_line.startswith(b"--- "):
        raise AgeError("its header is damaged")
    header = b"\n".join(lines[:3]) + b"\n---"
    expected = hmac.new(_hkdf(file_key, b"", b"header"), header, "sha256").digest()
    if not hmac.compare_digest(expected, _unb64(mac_line[4:])):
        raise AgeError("its header was changed")
    return file_key


# Restore reads a file twice (check, then unpack): one scrypt, not two. A command exits soon
# after; the server forgets the keys as soon as its backup or restore is done (forget_keys).
@functools.lru_cache(maxsize=2)
def _scrypt(passphrase: bytes, salt: bytes, work_factor: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=_SCRYPT_LABEL + salt, length=32, n=2**work_factor, r=8, p=1).derive(
        passphrase
    )


def forget_keys() -> None:
    """Drops the keys derived from passphrases (the running server, after a web backup)."""
    _scrypt.cache_clear()


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def _aead(key: bytes) -> ChaCha20Poly1305:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    return ChaCha20Poly1305(key)


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _body(data: bytes) -> bytes:
    """A stanza body: base64 in lines of 64, the last one always shorter (maybe empty)."""
    text = _b64(data)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"".join(line + b"\n" for line in lines)


def _unb64(text: bytes) -> bytes:
    """age's base64: standard alphabet, no padding, canonical."""
    if not _B64.match(text) or len(text) % 4 == 1:
        raise AgeError("its header is damaged")
    data = base64.b64decode(text + b"=" * (-len(text) % 4))
    if _b64(data) != text:
        raise AgeError("its header is damaged")
    return data
