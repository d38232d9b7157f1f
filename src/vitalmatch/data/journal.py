"""Crash safety of a dataset file: the page-overlay commit journal, recovery and the writer lock.

Stage: data (storage). Input: the file descriptor of a dataset file that HDF5 writes through
:class:`JournaledFile`. Output: commits that survive a kill at any instant, the journal file
``FILE.h5.journal`` beside the dataset, and the recovery that brings a killed file back to its last
commit. This module deals in bytes and file-system calls only; it knows nothing of the layout
(:mod:`vitalmatch.data.schema`). Used by :mod:`vitalmatch.data.writer` (commits, recovery, lock)
and :mod:`vitalmatch.data.reader` (reading a killed file at its last commit).

Why. The generator may be killed (SIGKILL, OOM killer) at any instant. HDF5 itself does not
survive that: it rewrites B-tree nodes and object headers in place, frees the space of rewritten
chunks and reuses it, so a kill between two flushes can damage rows that were already flushed
(measured: 41 of 60 random kills of a plain flush-then-record-progress writer left committed rows
unreadable or wrong; with SWMR the data survived but all 60 files refused to reopen for writing
until ``h5clear``). So the writer never lets HDF5 touch the bytes of the last commit. HDF5 writes
through a Python file object (h5py's ``fileobj`` driver) that:

* writes bytes past the committed file size straight to the file (new chunks, new metadata);
* keeps writes that land inside the committed size in an in-memory overlay of 4 KiB pages
  (and serves them back to HDF5's reads), so the committed bytes on disk stay as they were.

A commit flushes HDF5, fsyncs, writes the overlay pages and the new file size to the redo journal
``FILE.h5.journal`` (tmp file + fsync + atomic rename: the commit point), then copies the pages
into the file. Recovery replays the journal (idempotent) and truncates the file to the recorded
size, which restores the exact bytes of the last commit: a kill before the rename leaves the
previous commit, a kill after it the new one, whatever HDF5 was doing at the time. The journal
holds only the pages HDF5 rewrote since the last commit (metadata plus the odd reused chunk),
never a copy of the file. A clean close leaves a plain HDF5 file and removes the journal; the
first 512 bytes (an HDF5 user block) carry a random file id so that a journal is only ever
applied to the file it was written for.

Journal format (little-endian): magic ``VMJRNL01``, the 16-byte file id, the committed size
(bytes) and the number of pages; then per page its offset and length and its bytes; then the
sha256 of all that.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

#: Bytes of the HDF5 user block in front of every dataset file (holds the file id).
USERBLOCK = 512
_MAGIC = b"VITALMATCH-HDF5\x00"  # 16 bytes at offset 0, then a 16-byte file id
_PAGE = 4096
_JOURNAL_MAGIC = b"VMJRNL01"
_JOURNAL_HEAD = struct.Struct("<8s16sQQ")  # magic, file id, committed size, number of pages
_JOURNAL_PAGE = struct.Struct("<QI")  # offset, length
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# The journaled file object behind the writer (and behind readers of an interrupted file)


class JournaledFile:
    """File object for h5py's ``fileobj`` driver that never modifies the committed bytes.

    Bytes ``[0, base)`` are the last commit. HDF5's writes there go to ``pages`` (4 KiB pages,
    page ``p`` covering ``[p * 4096, min((p + 1) * 4096, base))``); writes past ``base`` go to the
    file. ``size`` is the logical end of file HDF5 sees. :meth:`checkpoint` turns the current
    state into the new commit. A read-only instance over a journal's pages shows a reader the
    committed state of a file whose writer was killed before its pages reached the file.
    """

    def __init__(self, fd: int, base: int, pages: dict[int, bytes] | None = None, *, writable: bool) -> None:
        self.fd = fd
        self.base = base
        self.size = base
        self.pages: dict[int, bytearray] = {p: bytearray(b) for p, b in (pages or {}).items()}
        self.writable = writable
        self._pos = 0

    # -- the file-object protocol used by h5py ------------------------------------------------

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        """Move the position; ``SEEK_END`` is relative to the logical size HDF5 has set."""
        if whence == os.SEEK_SET:
            self._pos = pos
        elif whence == os.SEEK_CUR:
            self._pos += pos
        else:
            self._pos = self.size + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        """Fill ``buf`` from the current position: overlay pages over the file, zeros past the end."""
        out = memoryview(buf).cast("B")
        self._read_at(self._pos, out)
        self._pos += len(out)
        return len(out)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = max(self.size - self._pos, 0)
        out = bytearray(n)
        self.readinto(out)
        return bytes(out)

    def write(self, data) -> int:
        """Write at the current position: below ``base`` into the overlay, above it to the file."""
        if not self.writable:
            raise OSError("dataset opened read-only")
        mv = memoryview(data).cast("B")
        n, pos = len(mv), self._pos
        if pos < self.base:
            k = min(n, self.base - pos)
            self._write_overlay(pos, mv[:k])
        if pos + n > self.base:
            start = max(pos, self.base)
            pwrite_all(self.fd, mv[start - pos :], start)
        self.size = max(self.size, pos + n)
        self._pos = pos + n
        return n

    def truncate(self, size: int | None = None) -> int:
        """Set the logical size (HDF5 calls this with its end of allocation at every flush)."""
        if not self.writable:
            raise OSError("dataset opened read-only")
        size = self._pos if size is None else size
        self.size = size
        os.ftruncate(self.fd, max(size, self.base))  # the committed bytes stay until the commit
        return size

    def flush(self) -> None:
        """Nothing to do: durability is handled by :meth:`checkpoint`."""

    # -- overlay ------------------------------------------------------------------------------

    def _read_at(self, pos: int, out: memoryview) -> None:
        """Bytes ``[pos, pos + len(out))`` as HDF5 last wrote them."""
        n = len(out)
        got = 0
        while got < n:
            k = os.preadv(self.fd, [out[got:]], pos + got)
            if k == 0:
                break
            got += k
        if got < n:
            out[got:] = bytes(n - got)
        if self.size < pos + n:  # past the logical end of file: HDF5 expects zeros
            cut = max(self.size - pos, 0)
            out[cut:] = bytes(n - cut)
        if not self.pages or pos >= self.base:
            return
        end = min(pos + n, self.base)
        first, last = pos // _PAGE, (end - 1) // _PAGE
        if last - first + 1 <= len(self.pages):
            hits = ((p, self.pages.get(p)) for p in range(first, last + 1))
        else:
            hits = ((p, page) for p, page in self.pages.items() if first <= p <= last)
        for p, page in hits:
            if page is None:
                continue
            lo, hi = max(pos, p * _PAGE), min(end, p * _PAGE + len(page))
            if lo < hi:
                out[lo - pos : hi - pos] = page[lo - p * _PAGE : hi - p * _PAGE]

    def _write_overlay(self, pos: int, data: memoryview) -> None:
        """Copy ``data`` into overlay pages, loading each page from the file on first touch."""
        end = pos + len(data)
        for p in range(pos // _PAGE, (end - 1) // _PAGE + 1):
            page = self.pages.get(p)
            if page is None:
                start = p * _PAGE
                page = bytearray(os.pread(self.fd, min(_PAGE, self.base - start), start))
                self.pages[p] = page
            lo, hi = max(pos, p * _PAGE), min(end, p * _PAGE + len(page))
            page[lo - p * _PAGE : hi - p * _PAGE] = data[lo - pos : hi - pos]

    def checkpoint(self, journal: Path, file_id: bytes, *, final: bool = False) -> None:
        """Make the current bytes the new commit (see the module docstring for the order).

        ``final``: the HDF5 file was closed; remove the journal once its pages are in place.
        """
        os.fsync(self.fd)  # bytes past base are durable before the journal points at them
        write_journal(journal, file_id, self.size, self.pages)  # <- the commit point
        _apply_pages(self.fd, self.pages, self.size)
        self.base, self.pages = self.size, {}
        if final:
            os.fsync(self.fd)
            os.unlink(journal)
            fsync_dir(journal.parent)

    def discard(self) -> None:
        """Forget every write since the last commit (the file goes back to it)."""
        self.pages = {}
        self.size = self.base
        os.ftruncate(self.fd, self.base)


def pwrite_all(fd: int, data: memoryview | bytes | bytearray, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (a write may be short, e.g. on a signal)."""
    mv = memoryview(data).cast("B")
    while len(mv):
        k = os.pwrite(fd, mv, offset)
        mv, offset = mv[k:], offset + k


def _apply_pages(fd: int, pages: Mapping[int, bytes | bytearray], size: int) -> None:
    """Copy journal pages into the file and cut it to ``size``: the redo step, idempotent."""
    for p in sorted(pages):
        pwrite_all(fd, pages[p], p * _PAGE)
    os.ftruncate(fd, size)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (needed for power loss, not for kills)."""
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# The journal file


def journal_path(path: Path) -> Path:
    """``FILE.h5`` -> ``FILE.h5.journal``."""
    return path.with_name(path.name + ".journal")


def write_journal(journal: Path, file_id: bytes, size: int, pages: Mapping[int, bytes | bytearray]) -> None:
    """Write the redo journal atomically: tmp file, fsync, rename, fsync of the directory."""
    parts = [_JOURNAL_HEAD.pack(_JOURNAL_MAGIC, file_id, size, len(pages))]
    for p in sorted(pages):
        parts += [_JOURNAL_PAGE.pack(p * _PAGE, len(pages[p])), bytes(pages[p])]
    body = b"".join(parts)
    tmp = journal.with_name(journal.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, body + hashlib.sha256(body).digest(), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal)
    fsync_dir(journal.parent)


def read_journal(journal: Path) -> tuple[bytes, int, dict[int, bytes]] | None:
    """``(file id, committed size, pages)`` of a journal, or None if there is none."""
    try:
        data = journal.read_bytes()
    except FileNotFoundError:
        return None
    body, digest = data[:-32], data[-32:]
    if len(data) < _JOURNAL_HEAD.size + 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError(f"commit journal {journal} is damaged; the dataset cannot be recovered")
    magic, file_id, size, n_pages = _JOURNAL_HEAD.unpack_from(body)
    if magic != _JOURNAL_MAGIC:
        raise ValueError(f"{journal} is not a vitalmatch commit journal")
    pages, off = {}, _JOURNAL_HEAD.size
    for _ in range(n_pages):
        offset, length = _JOURNAL_PAGE.unpack_from(body, off)
        off += _JOURNAL_PAGE.size
        pages[offset // _PAGE] = body[off : off + length]
        off += length
    return file_id, size, pages


def journal_stamp(path: Path) -> tuple[int, int, int] | None:
    """Identity of the current journal (changes at every commit); None when there is none."""
    try:
        st = os.stat(journal_path(path))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


# --------------------------------------------------------------------------------------------
# File identity, recovery and the writer lock


def read_file_id(fd: int) -> bytes | None:
    """The 16-byte id in a vitalmatch file's user block; None for any other file."""
    head = os.pread(fd, 32, 0)
    return head[16:32] if len(head) == 32 and head[:16] == _MAGIC else None


def write_file_id(fd: int, file_id: bytes) -> None:
    """Fill the user block of a new file: the magic, the 16-byte ``file_id``, then zeros."""
    pwrite_all(fd, _MAGIC + file_id + bytes(USERBLOCK - 32), 0)


def looks_like_hdf5(fd: int) -> bool:
    """Whether the file has an HDF5 superblock signature where HDF5 looks for one."""
    size = os.fstat(fd).st_size
    offset = 0
    while offset + 8 <= size:  # the superblock sits at 0, 512, 1024, 2048, ...
        if os.pread(fd, 8, offset) == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def recover(fd: int, path: Path, file_id: bytes) -> None:
    """Bring the file back to its last commit by replaying its journal (idempotent)."""
    journal = journal_path(path)
    found = read_journal(journal)
    if found is None:
        return
    jid, size, pages = found
    if jid != file_id:  # left over from a file that was since replaced by create(overwrite=True)
        os.unlink(journal)
        return
    _apply_pages(fd, pages, size)
    os.fsync(fd)


def lock_for_writing(fd: int, path: Path) -> None:
    """Take the exclusive writer lock (``flock``: released when the process dies).

    Children started with fork inherit it; the generator's worker pool uses spawn, which does not.
    """
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BlockingIOError(f"{path} is being written by another process") from None


def refuse_if_being_written(path: Path) -> None:
    """``BlockingIOError`` if a writer (this or another process) holds ``path``'s lock."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BlockingIOError(f"cannot overwrite {path}: it is being written by another process") from None
    except OSError:
        pass
    finally:
        os.close(fd)
