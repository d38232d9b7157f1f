"""Preset download: public repositories of free Vital presets into a local folder.

Stage: before ``generate --presets`` (``vitalmatch download-presets``). Input: repository URLs, each
either a git URL (cloned shallow, ``git clone --depth 1``) or an archive over http(s) (``.zip``,
``.tar.gz``, ``.tgz``, ``.tar``); by default :data:`DEFAULT_SOURCES`. Output: one folder
``DIR/<name>/`` per repository holding only its ``.vital``, ``.vitalbank`` and ``.vitaltable`` files
and the licence files beside them (relative paths kept), closed by a marker file
(:data:`MARKER`, JSON: URL, counts, bytes); and one :class:`RepoResult` per repository.

Safety. Everything fetched is treated as hostile: a member with an absolute path, a ``..`` part or
a drive letter, a symlink, a hardlink, a device or a FIFO is never written (it is counted as
refused); files are written only by this module, one by one, into folders it created, opened with
``x`` (a duplicate name never overwrites); a git clone runs without hooks or templates, without
prompts (``GIT_TERMINAL_PROMPT=0``), with only the file/git/http(s)/ssh transports, and only its
regular files are copied. Limits (:class:`DownloadConfig`) bound the bytes fetched, the bytes
written, the entries listed and the time per repository; a repository over one fails with its
reason and the others go on.

Resume. A repository is fetched into ``DIR/.<name>.partial-XXXX/`` and its kept files land in a
folder there that is renamed to ``DIR/<name>`` only after the marker is written into it, so a
final folder always holds a complete download, and a killed run leaves only a ``.partial`` folder,
removed when the repository is fetched again. A final folder with a marker for the same URL is
skipped; one without a marker is not this module's and is never replaced (the repository fails
with a line saying so).

Python's ``tarfile``/``zipfile`` extraction is not used because it writes every member and links
where an archive says; members are streamed here through :func:`safe_relpath` instead (with
``tarfile.data_filter`` as a second check on tar members).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import gzip
import http.client
import json
import lzma
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlsplit

from vitalmatch import __version__

#: Kept file suffixes (lower case) and the count each goes to.
PRESET_SUFFIXES = {".vital": "presets", ".vitalbank": "banks", ".vitaltable": "tables"}
#: Licence files are kept when their name starts with one of these (case-insensitive) and they sit in
#: a folder that holds, or lies above, a kept preset. READMEs count: several preset repositories
#: state their licence only there.
LICENCE_PREFIXES = ("license", "licence", "copying", "notice", "readme")
#: Written last into each completed repository folder.
MARKER = ".vitalmatch-download.json"
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
#: Hosts whose URLs name a repository as ``/owner/repo/...``: such a repository is named owner-repo.
FORGE_HOSTS = ("github.com", "gitlab.com", "codeberg.org", "bitbucket.org")
MB = 1_000_000
_KINDS = ("presets", "banks", "tables", "licences")  # what RepoResult.counts counts
# what a corrupt archive raises while it is listed or read
_BAD_ARCHIVE = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class RepoFailed(Exception):
    """A repository that cannot be downloaded; the message is the one-line reason."""


@dataclass(frozen=True)
class PresetSource:
    """One repository of presets.

    Attributes:
        name: its folder under the output folder (letters, digits, ``.``, ``_``, ``-``).
        url: git URL (https, ssh, file or a local path) or http(s) archive URL.
        licence: the licence the repository states, as a short name ("CC BY 4.0"); "" if unknown.
        author: whom to credit.
        exclude: glob patterns; a file is left out when any part of its path matches one.
    """

    name: str
    url: str
    licence: str = ""
    author: str = ""
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"repository name {self.name!r} must be letters, digits, '.', '_' or '-'")

    def line(self) -> str:
        """``name  url  licence, by author`` for ``download-presets --list``."""
        credit = f", by {self.author}" if self.author else ""
        skip = f"; leaves out {', '.join(self.exclude)}" if self.exclude else ""
        return f"{self.name:20} {self.url}  ({self.licence or 'licence unknown'}{credit}{skip})"


#: The default list: repositories of free Vital presets whose licences allow use and redistribution
#: (checked by hand in their READMEs/licence files; the presets in ``shared/presets`` came from them,
#: see its NOTICE.md). "UsingFactoryContent" presets need Vital's non-free factory wavetables.
DEFAULT_SOURCES: tuple[PresetSource, ...] = (
    PresetSource(
        "instatetragrammaton",
        "https://github.com/instatetragrammaton/Patches.git",
        "CC BY 4.0",
        "Instatetragrammaton",
        exclude=("UsingFactoryContent",),
    ),
    PresetSource("alanjyu", "https://github.com/alanjyu/vital_sounds.git", "CC BY-SA 4.0", "Alan Yu"),
    PresetSource(
        "abstractionmage", "https://github.com/abstractionmage/Vital-Presets.git", "CC0 1.0", "Thomas Fritz"
    ),
)


@dataclass(frozen=True)
class DownloadConfig:
    """Limits of ``download-presets``, each per repository (MB: 10^6 bytes).

    Attributes:
        max_download_mb: most MB one repository may fetch: the archive, or the clone's folder
            (.git included) while git runs; over it the repository fails.
        max_extracted_mb: most MB of kept files one repository may write (counted as read,
            whatever the archive declares).
        max_files: most entries (files, folders, links) one archive or clone may list; more fails
            the repository (a guard against archives of millions of entries).
        timeout_s: most seconds to fetch one repository (the clone or the HTTP download).
    """

    max_download_mb: float = 500.0
    max_extracted_mb: float = 200.0
    max_files: int = 50_000
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        for name in ("max_download_mb", "max_extracted_mb", "max_files", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class RepoResult:
    """What happened to one repository.

    Attributes:
        name, url: the source's.
        status: ``ok`` (downloaded now), ``skipped`` (complete from an earlier run) or ``failed``.
        reason: why it failed (one line); "" otherwise.
        counts: kept files per kind: presets, banks, tables, licences.
        bytes: bytes of the kept files.
        refused: entries not written because they were unsafe (links, devices, paths leaving the
            folder) or clashed with another entry's path.
    """

    name: str
    url: str
    status: str
    reason: str = ""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_KINDS, 0))
    bytes: int = 0
    refused: int = 0

    def line(self) -> str:
        """One summary line: ``name: ok, 12 presets, 1 banks, 0 tables, 2 licence files, 1.3 MB``."""
        if self.status == "failed":
            return f"{self.name}: failed ({self.reason})"
        c = self.counts
        text = (
            f"{self.name}: {self.status}, {c['presets']} presets, {c['banks']} banks, {c['tables']} tables, "
            f"{c['licences']} licence files, {_size(self.bytes)}"
        )
        return text + (f", {self.refused} unsafe entries refused" if self.refused else "")


def _size(n: int) -> str:
    return f"{n} bytes" if n < 10_000 else f"{n / MB:.1f} MB" if n >= 100_000 else f"{n / 1000:.0f} kB"


# ------------------------------------------------------------------------------------------ sources
def name_of(url: str) -> str:
    """A folder name for a repository URL: ``owner-repo`` on GitHub-like hosts (for clone and archive
    URLs alike), else the last path part without ``.git`` or the archive suffix."""
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        host, path = parts.hostname or "", parts.path
    else:  # scp-like git@host:owner/repo.git or a local path
        m = re.match(r"^[\w.-]+@([\w.-]+):(.*)$", url)
        host, path = (m.group(1), m.group(2)) if m else ("", url)
    pieces = [p for p in re.split(r"[/\\]", path) if p and p not in (".", "..")]
    if host.lower() in FORGE_HOSTS and len(pieces) >= 2:
        raw = f"{pieces[0]}-{_strip_suffix(pieces[1])}"
    else:
        raw = _strip_suffix(pieces[-1]) if pieces else host
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip(".-")
    return name or "repository"


def _strip_suffix(text: str) -> str:
    for suffix in (".git", *ARCHIVE_SUFFIXES):
        if text.lower().endswith(suffix):
            return text[: -len(suffix)]
    return text


def sources_from_urls(urls: Iterable[str]) -> tuple[PresetSource, ...]:
    """Sources for ``--repo`` URLs: a default's entry (name, licence, excludes) where the URL is one
    of :data:`DEFAULT_SOURCES`, else a source named by :func:`name_of` (``-2``, ``-3`` ... added to
    repeated names). The same URL twice is fetched once."""
    known = {s.url: s for s in DEFAULT_SOURCES}
    out: list[PresetSource] = []
    for url in dict.fromkeys(u.strip() for u in urls if u.strip()):
        src = known.get(url) or PresetSource(name_of(url), url)
        taken = {s.name for s in out}
        name, k = src.name, 2
        while name in taken:
            name, k = f"{src.name}-{k}", k + 1
        out.append(dataclasses.replace(src, name=name))
    return tuple(out)


def is_archive_url(url: str) -> bool:
    """True when the URL's path ends in an archive suffix (the rest are git URLs)."""
    return urlsplit(url).path.lower().endswith(ARCHIVE_SUFFIXES)


# ----------------------------------------------------------------------------------------- the run
def download_presets(
    out_dir: Path,
    sources: Iterable[PresetSource] = DEFAULT_SOURCES,
    config: DownloadConfig | None = None,
    progress: Callable[[PresetSource], None] | None = None,
) -> list[RepoResult]:
    """Download each source into ``out_dir/<name>/`` (see the module docstring); one result each.

    A repository that fails never stops the others. ``progress(source)`` is called before each.
    Raises ``ValueError`` only when ``out_dir`` exists and is not a folder.
    """
    config = config or DownloadConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for src in sources:
        if progress is not None:
            progress(src)
        results.append(download_one(out_dir, src, config))
    return results


def download_one(out_dir: Path, source: PresetSource, config: DownloadConfig) -> RepoResult:
    """One repository into ``out_dir/<source.name>/``: skipped if complete, else fetched afresh."""
    final = out_dir / source.name
    marker = final / MARKER
    if final.exists() or final.is_symlink():
        done = _read_marker(marker)
        if done is None:
            return _failed(
                source, f"{final} exists but is not a completed download; remove it to fetch again"
            )
        if done.get("url") != source.url:
            return _failed(source, f"{final} holds a download of {done.get('url')}")
        counts = {k: int(done.get("counts", {}).get(k, 0)) for k in _KINDS}
        return RepoResult(
            source.name, source.url, "skipped", counts=counts, bytes=int(done.get("bytes", 0)),
            refused=int(done.get("refused", 0)),
        )  # fmt: skip
    for stale in out_dir.glob(f".{source.name}.partial-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".{source.name}.partial-", dir=out_dir))
    try:
        keep = work / "keep"
        keep.mkdir()
        if is_archive_url(source.url):
            archive = work / "archive"
            _download(source.url, archive, config)
            with _archive_entries(archive, source.url, config) as entries:
                result = _keep_files(entries, keep, source, config, strip_root=True)
        else:
            clone = work / "clone"
            _git_clone(source.url, clone, work, config)
            result = _keep_files(_clone_entries(clone, config), keep, source, config, strip_root=False)
        _write_marker(keep / MARKER, source, result)
        os.rename(keep, final)
        return result
    except RepoFailed as e:
        return _failed(source, str(e))
    except OSError as e:  # our side: disk full, permissions
        return _failed(source, f"cannot write under {out_dir}: {e.strerror or e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _failed(source: PresetSource, reason: str) -> RepoResult:
    return RepoResult(source.name, source.url, "failed", reason=reason)


def summary_lines(results: list[RepoResult]) -> list[str]:
    """One line per repository, then the totals."""
    lines = [r.line() for r in results]
    n = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    presets = sum(r.counts["presets"] for r in results if r.status != "failed")
    banks = sum(r.counts["banks"] for r in results if r.status != "failed")
    tables = sum(r.counts["tables"] for r in results if r.status != "failed")
    lines.append(
        f"{len(results)} repositories: {n['ok']} ok, {n['skipped']} skipped, {n['failed']} failed; "
        f"{presets} presets, {banks} banks, {tables} tables"
    )
    return lines


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(path: Path, source: PresetSource, result: RepoResult) -> None:
    """The marker, written to a temporary name, flushed and renamed (never half-written)."""
    data = {
        "url": source.url,
        "name": source.name,
        "licence": source.licence,
        "author": source.author,
        "counts": result.counts,
        "bytes": result.bytes,
        "refused": result.refused,
        "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "vitalmatch": __version__,
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------ entries
@dataclass
class _Entry:
    """One member of an archive or file of a clone: its stored name, its kind (``file``, ``dir``,
    ``link`` or ``other``), its declared size in bytes and how to open it for reading."""

    name: str
    kind: str
    size: int
    open: Callable[[], IO[bytes]]


def safe_relpath(name: str) -> PurePosixPath | None:
    """The relative path a member may be written at, or None when its name could leave the target
    folder: absolute (``/x``, ``C:x``, ``\\\\host``), with a ``..`` part, empty, or with a NUL.
    Backslashes count as separators (zip files made on Windows)."""
    text = name.replace("\\", "/")
    if not text or "\x00" in text or text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


def _excluded(rel: PurePosixPath, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(part, pat) for part in rel.parts for pat in patterns)


def _keep_files(
    entries: list[_Entry], keep: Path, source: PresetSource, config: DownloadConfig, strip_root: bool
) -> RepoResult:
    """Write the preset and licence files among ``entries`` under ``keep``; counts, bytes, refusals.

    ``strip_root``: drop a first folder that every file shares (``repo-main/`` of GitHub archives).
    """
    refused = 0
    files: list[tuple[PurePosixPath, _Entry]] = []
    for e in entries:
        rel = safe_relpath(e.name)
        if rel is None or e.kind in ("link", "other"):
            refused += 1
        elif e.kind == "file":
            files.append((rel, e))
    if strip_root and files and all(len(r.parts) > 1 for r, _ in files):
        roots = {r.parts[0] for r, _ in files}
        if len(roots) == 1:
            files = [(PurePosixPath(*r.parts[1:]), e) for r, e in files]
    files = [(r, e) for r, e in files if not _excluded(r, source.exclude)]
    presets = [(r, e) for r, e in files if r.suffix.lower() in PRESET_SUFFIXES]
    folders = {p for r, _ in presets for p in r.parents}
    licences = [
        (r, e) for r, e in files if r.name.lower().startswith(LICENCE_PREFIXES) and r.parent in folders
    ]
    budget = int(config.max_extracted_mb * MB)
    declared = sum(e.size for _, e in presets + licences)
    if declared > budget:
        raise RepoFailed(f"kept files hold {_size(declared)}, over the {config.max_extracted_mb:g} MB limit")
    result = RepoResult(source.name, source.url, "ok")
    written = 0
    root = keep.resolve()
    for kind, chosen in [(None, presets), ("licences", licences)]:
        for rel, e in chosen:
            target = keep.joinpath(*rel.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):  # cannot happen: we make no links
                    raise FileExistsError
                n = _copy(e, target, budget - written, config)
            except (FileExistsError, NotADirectoryError):  # a duplicate name, or a file where a folder is
                refused += 1
                continue
            written += n
            result.counts[kind or PRESET_SUFFIXES[rel.suffix.lower()]] += 1
    result.bytes, result.refused = written, refused
    return result


def _copy(entry: _Entry, target: Path, allowed: int, config: DownloadConfig) -> int:
    """Stream one entry to a new file; bytes written. Raises RepoFailed past ``allowed`` bytes
    (counted as read, whatever the archive declared)."""
    n = 0
    try:
        with entry.open() as src, open(target, "xb") as dst:
            while chunk := src.read(1 << 16):
                n += len(chunk)
                if n > allowed:
                    raise RepoFailed(f"kept files exceed the {config.max_extracted_mb:g} MB limit")
                dst.write(chunk)
    except (*_BAD_ARCHIVE, RuntimeError, NotImplementedError) as e:  # corrupt, encrypted, odd compression
        raise RepoFailed(f"cannot read {entry.name}: {e}") from None
    return n


@contextlib.contextmanager
def _archive_entries(path: Path, url: str, config: DownloadConfig) -> Iterator[list[_Entry]]:
    """The members of a downloaded zip or tar (gzip, bz2, xz) archive, at most ``max_files``; the
    archive stays open (for the entries' ``open``) inside the ``with``."""
    kind = "zip" if urlsplit(url).path.lower().endswith(".zip") else "tar"
    try:
        archive = zipfile.ZipFile(path) if kind == "zip" else tarfile.open(path, "r:*")  # noqa: SIM115 (closed below)
    except _BAD_ARCHIVE as e:
        raise RepoFailed(f"not a valid {kind} archive ({e})") from None
    with archive:
        try:
            if isinstance(archive, zipfile.ZipFile):
                entries = _zip_entries(archive, config)
            else:
                entries = _tar_entries(archive, path.parent, config)
        except _BAD_ARCHIVE as e:
            raise RepoFailed(f"not a valid {kind} archive ({e})") from None
        yield entries


def _zip_entries(zf: zipfile.ZipFile, config: DownloadConfig) -> list[_Entry]:
    infos = zf.infolist()
    _check_count(len(infos), config)
    out = []
    for info in infos:
        mode = info.external_attr >> 16  # Unix mode when made on Unix, else 0
        if info.is_dir():
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "link"
        elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            kind = "other"
        else:
            kind = "file"
        out.append(_Entry(info.filename, kind, info.file_size, functools.partial(zf.open, info)))
    return out


def _tar_entries(tf: tarfile.TarFile, dest: Path, config: DownloadConfig) -> list[_Entry]:
    out: list[_Entry] = []
    for m in tf:  # read one header at a time, so a huge listing stops at the limit
        _check_count(len(out) + 1, config)
        if m.isdir():
            kind = "dir"
        elif m.issym() or m.islnk():
            kind = "link"
        elif m.isreg():
            kind = "file"
            try:  # the standard library's own verdict, beside safe_relpath
                tarfile.data_filter(m, str(dest))
            except tarfile.FilterError:
                kind = "other"
        else:
            kind = "other"
        out.append(_Entry(m.name, kind, m.size, functools.partial(_tar_member, tf, m)))
    return out


def _tar_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(m)
    if f is None:
        raise RepoFailed(f"cannot read {m.name}")
    return f


def _clone_entries(clone: Path, config: DownloadConfig) -> list[_Entry]:
    """The files, folders and links of a checked-out clone (not ``.git``), links not followed."""
    out: list[_Entry] = []
    for folder, dirs, names in os.walk(clone, followlinks=False):
        if Path(folder) == clone and ".git" in dirs:
            dirs.remove(".git")
        for name in dirs + names:
            path = Path(folder) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind = "link"
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                kind = "other"
            out.append(
                _Entry(
                    path.relative_to(clone).as_posix(), kind, st.st_size, functools.partial(_open_plain, path)
                )
            )
            _check_count(len(out), config)
    return out


def _open_plain(path: Path) -> IO[bytes]:
    """Open a regular file for reading without following a link put in its place."""
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def _check_count(n: int, config: DownloadConfig) -> None:
    if n > config.max_files:
        raise RepoFailed(f"more than {config.max_files} entries (the file-count limit)")


# ------------------------------------------------------------------------------------- fetching
def _download(url: str, dest: Path, config: DownloadConfig) -> None:
    """Stream an http(s) archive to ``dest``, at most ``max_download_mb`` and ``timeout_s``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RepoFailed(f"archives are fetched over http(s) only, not {parts.scheme or 'a local path'}")
    limit = int(config.max_download_mb * MB)
    over = f"over the {config.max_download_mb:g} MB download limit"
    deadline = time.monotonic() + config.timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": f"vitalmatch/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=min(config.timeout_s, 60.0)) as resp:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise RepoFailed(f"archive is {_size(int(length))}, {over}")
            n = 0
            with open(dest, "wb") as f:
                while chunk := resp.read(1 << 16):
                    n += len(chunk)
                    if n > limit:
                        raise RepoFailed(f"archive is larger, {over}")
                    if time.monotonic() > deadline:
                        raise RepoFailed(f"download took longer than {config.timeout_s:g} s")
                    f.write(chunk)
    except urllib.error.HTTPError as e:
        raise RepoFailed(f"HTTP {e.code} {e.reason} for {url}") from None
    except urllib.error.URLError as e:
        raise RepoFailed(
            f"cannot reach {parts.netloc}: {getattr(e.reason, 'strerror', None) or e.reason}"
        ) from None
    except TimeoutError:
        raise RepoFailed(f"no answer from {parts.netloc} within {min(config.timeout_s, 60.0):g} s") from None
    except (http.client.HTTPException, ConnectionError, ValueError) as e:
        raise RepoFailed(f"download from {parts.netloc} failed ({type(e).__name__}: {e})") from None


def _git_clone(url: str, dest: Path, work: Path, config: DownloadConfig) -> None:
    """``git clone --depth 1`` of ``url`` into ``dest``, killed past the size limit or the timeout.

    No hooks run (empty ``core.hooksPath``, no template), no prompts, no credential helper, no
    Git LFS downloads, only the file, git, http(s) and ssh transports (``ext::`` and the like are
    refused); submodules are not fetched.
    """
    git = shutil.which("git")
    if git is None:
        raise RepoFailed("git is not installed (needed for git URLs; archive URLs work without it)")
    if url.startswith("-"):
        raise RepoFailed(f"not a repository URL: {url}")
    hooks = work / "no-hooks"
    hooks.mkdir()
    cmd = [
        git, "-c", f"core.hooksPath={hooks}", "-c", "credential.helper=", "-c", "core.fsmonitor=false",
        "clone", "--depth", "1", "--single-branch", "--no-tags", "--template=", "--quiet",
        "--", url, str(dest),
    ]  # fmt: skip
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    limit = int(config.max_download_mb * MB)
    deadline = time.monotonic() + config.timeout_s
    err_path = work / "git-stderr.txt"
    with open(err_path, "wb") as err:
        # a new session, so that a kill reaches git's helpers (remote-https, index-pack) too
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            while True:
                try:
                    proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if time.monotonic() > deadline:
                    raise RepoFailed(f"git clone took longer than {config.timeout_s:g} s")
                if _tree_bytes(dest) > limit:
                    raise RepoFailed(f"clone is over the {config.max_download_mb:g} MB download limit")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode != 0:
        raise RepoFailed(f"git clone failed: {_git_error(err_path.read_text(errors='replace'))}")
    if _tree_bytes(dest) > limit:
        raise RepoFailed(f"clone is over the {config.max_download_mb:g} MB download limit")


def _git_error(text: str) -> str:
    """The line of git's stderr that says why (its ``fatal:`` line, else the last one)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    line = (fatal or lines or ["no message"])[0]
    return re.sub(r"^(fatal|error):\s*", "", line)


def _tree_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (links not followed; files vanishing meanwhile skipped)."""
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total
