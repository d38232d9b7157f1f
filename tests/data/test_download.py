"""``download-presets`` against real local sources: a bare git repository cloned over ``file://``
and archives served by an HTTP server on 127.0.0.1 (good ones, malicious ones, oversized ones, a
404); the real CLI in a child process for the summary, ``error:`` line and exit codes."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from tests.processes import cli_in_process, run_cli
from vitalmatch.data.download import (
    DEFAULT_SOURCES,
    MARKER,
    DownloadConfig,
    PresetSource,
    RepoFailed,
    _Entry,
    _keep_files,
    download_one,
    download_presets,
    name_of,
    safe_relpath,
    sources_from_urls,
    summary_lines,
)

PRESET = json.dumps({"preset_name": "Sub", "settings": {"volume": 0.5}}).encode()


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every path under ``root`` (links not followed): file contents, ``"<dir>"`` or ``"-> target"``."""
    out: dict[str, bytes | str] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            p = Path(folder) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = p.read_bytes()
    return out


def _files(root: Path) -> set[str]:
    return {k for k, v in _tree(root).items() if v != "<dir>"}


# -------------------------------------------------------------------------------------- fixtures
def _git(*args: str, cwd: Path | None = None) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def _bare_repo(base: Path, name: str, files: dict[str, bytes], links: dict[str, str]) -> str:
    """A bare repository holding ``files`` and symlinks ``links`` (path -> target); its file:// URL."""
    bare, work = base / f"{name}.git", base / f"{name}-work"
    _git("init", "--bare", "-q", "-b", "main", str(bare))
    _git("init", "-q", "-b", "main", str(work))
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    for rel, target in links.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / rel)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "presets", cwd=work)
    _git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=work)
    return bare.as_uri()


GIT_FILES = {
    "LICENSE": b"CC BY 4.0\n",
    "Presets/README.md": b"# presets, CC BY 4.0\n",
    "Presets/Bass/Sub.vital": PRESET,
    "Presets/Keys.vitalbank": b"PK-not-really-a-bank",
    "Wavetables/Saw.vitaltable": b"table",
    "UsingFactoryContent/Factory.vital": PRESET,
    "Other/LICENSE": b"other licence, no presets beside it\n",
    "src/tool.py": b"print('junk')\n",
    "images/pic.png": b"\x89PNG junk",
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A git URL and an HTTP base URL; ``outside`` holds a secret file the attacks aim at."""
    base = tmp_path_factory.mktemp("sources")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.vital").write_bytes(b"secret")
    links = {"Presets/Link.vital": str(outside / "secret.vital"), "Presets/linkdir": str(outside)}
    git_url = _bare_repo(base, "presets", GIT_FILES, links)
    big_git = _bare_repo(base, "big", {"Big.vital": os.urandom(400_000)}, {})

    served = base / "served"
    served.mkdir()
    _make_archives(served, outside)
    handler = functools.partial(_Handler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "git": git_url,
        "big_git": big_git,
        "http": f"http://127.0.0.1:{server.server_address[1]}",
        "outside": outside,
        "base": base,
    }
    server.shutdown()
    server.server_close()


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of a folder; under ``/nolength/`` without Content-Length (the body ends at close), so
    the byte limit must stop the stream itself."""

    def log_message(self, *args) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/nolength/"):
            path = Path(self.directory) / self.path.removeprefix("/nolength/")
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.end_headers()
            self.wfile.write(path.read_bytes())
            self.close_connection = True
            return
        super().do_GET()


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None, deflate=False) -> None:
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=mode)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777) << 16  # S_IFLNK
            zf.writestr(info, target)


def _tar(path: Path, mode: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def _make_archives(served: Path, outside: Path) -> None:
    _zip(
        served / "good.zip",
        {
            "good-main/Presets/A.vital": PRESET,
            "good-main/Tables/T.vitaltable": b"table",
            "good-main/LICENSE.txt": b"CC0\n",
            "good-main/junk.bin": b"\0" * 100,
        },
    )
    _tar(
        served / "good.tar.gz",
        "w:gz",
        [
            (_member("pack/Bank.vitalbank"), b"bank"),
            (_member("pack/COPYING"), b"GPL\n"),
            (_member("pack/notes.txt"), b"junk"),
            (_member("pack/sub/B.vital"), PRESET),
        ],
    )
    # every classic trick, beside one good preset
    _tar(
        served / "evil.tar",
        "w",
        [
            (_member("ok/Good.vital"), PRESET),
            (_member("../../../evil1.vital"), b"escaped"),
            (_member("../../../../../evil1b.vital"), b"escaped further"),
            (_member(str(outside / "evil2.vital")), b"absolute"),
            (_member("ok/link.vital", tarfile.SYMTYPE, str(outside / "secret.vital")), None),
            (_member("ok/ldir", tarfile.SYMTYPE, str(outside)), None),
            (_member("ok/ldir/evil3.vital"), b"through the link"),
            (_member("ok/hard.vital", tarfile.LNKTYPE, str(outside / "secret.vital")), None),
            (_member("ok/dev.vital", tarfile.CHRTYPE), None),
            (_member("ok/fifo.vital", tarfile.FIFOTYPE), None),
        ],
    )
    _zip(
        served / "evil.zip",
        {
            "Presets/Fine.vital": PRESET,
            "../../../evil4.vital": b"escaped",
            str(outside / "evil5.vital"): b"absolute",
            "..\\..\\..\\..\\..\\evil6.vital": b"windows escape",
            "C:/evil7.vital": b"drive",
        },
        links={"Presets/zlink.vital": str(outside / "secret.vital")},
    )
    _zip(served / "big.zip", {"Big.vital": os.urandom(300_000)})
    _zip(served / "bomb.zip", {"Bomb.vital": b"\0" * 2_000_000}, deflate=True)
    _zip(served / "many.zip", {f"P{i}.vital": PRESET for i in range(30)})
    (served / "notzip.zip").write_bytes(b"this is not an archive")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one(url: str, name: str | None = None, **exclude) -> PresetSource:
    return PresetSource(name or name_of(url), url, **exclude)


# ------------------------------------------------------------------------------------------ git
def test_git_clone_keeps_presets_and_licences_only(sources, tmp_path):
    out = tmp_path / "out"
    src = _one(sources["git"], "plain")
    excl = _one(sources["git"], "excl", exclude=("UsingFactoryContent",))
    plain, excluded = download_presets(out, [src, excl], DownloadConfig(timeout_s=60))
    assert plain.status == excluded.status == "ok", (plain.reason, excluded.reason)
    kept = {
        "LICENSE",
        "Presets/README.md",
        "Presets/Bass/Sub.vital",
        "Presets/Keys.vitalbank",
        "Wavetables/Saw.vitaltable",
        "UsingFactoryContent/Factory.vital",
    }
    assert _files(out / "plain") == kept | {MARKER}
    assert _files(out / "excl") == kept - {"UsingFactoryContent/Factory.vital"} | {MARKER}
    for rel in kept:  # byte for byte, and as plain files
        p = out / "plain" / rel
        assert not p.is_symlink() and p.read_bytes() == GIT_FILES[rel]
    assert plain.counts == {"presets": 2, "banks": 1, "tables": 1, "licences": 2}
    assert excluded.counts["presets"] == 1
    assert plain.bytes == sum(len(GIT_FILES[r]) for r in kept)
    assert plain.refused == 2  # the file link and the folder link
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert sorted(p.name for p in out.iterdir()) == ["excl", "plain"]  # no partial folders left
    marker = json.loads((out / "plain" / MARKER).read_text())
    assert marker["url"] == sources["git"] and marker["counts"] == plain.counts


def test_git_clone_over_the_size_limit_fails_and_others_continue(sources, tmp_path):
    out = tmp_path / "out"
    big = _one(sources["big_git"], "big")
    good = _one(sources["git"], "good")
    r_big, r_good = download_presets(out, [big, good], DownloadConfig(max_download_mb=0.2, timeout_s=60))
    assert r_big.status == "failed" and "download limit" in r_big.reason
    assert r_good.status == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["good"]


def test_git_errors_are_one_line(sources, tmp_path):
    missing = (sources["base"] / "nope.git").as_uri()
    (r,) = download_presets(tmp_path / "out", [_one(missing)], DownloadConfig(timeout_s=30))
    assert r.status == "failed" and r.reason.startswith("git clone failed:") and "\n" not in r.reason
    assert "nope.git" in r.reason
    (r,) = download_presets(tmp_path / "out", [_one(f"ext::sh -c touch% {tmp_path}/pwned", "ext")])
    assert r.status == "failed" and "git clone failed" in r.reason
    assert not (tmp_path / "pwned").exists()


# -------------------------------------------------------------------------------------- archives
def test_good_archives_land_without_their_top_folder(sources, tmp_path):
    out = tmp_path / "out"
    zip_r, tar_r = download_presets(
        out, sources_from_urls([f"{sources['http']}/good.zip", f"{sources['http']}/good.tar.gz"])
    )
    assert (zip_r.name, zip_r.status, tar_r.name, tar_r.status) == ("good", "ok", "good-2", "ok")
    assert _files(out / "good") == {"Presets/A.vital", "Tables/T.vitaltable", "LICENSE.txt", MARKER}
    assert _files(out / "good-2") == {"Bank.vitalbank", "COPYING", "sub/B.vital", MARKER}
    assert (out / "good-2" / "sub" / "B.vital").read_bytes() == PRESET
    assert zip_r.counts == {"presets": 1, "banks": 0, "tables": 1, "licences": 1}
    assert tar_r.counts == {"presets": 1, "banks": 1, "tables": 0, "licences": 1}


@pytest.mark.parametrize(
    "archive, kept, refused",
    [
        ("evil.tar", {"Good.vital", "ldir/evil3.vital"}, 8),
        ("evil.zip", {"Fine.vital"}, 5),  # the one safe file's folder is the common root
    ],
)
def test_malicious_archives_write_nothing_outside(sources, tmp_path, archive, kept, refused):
    base = sources["base"]
    before = {k: v for k, v in _tree(base).items() if not k.startswith("runs")}
    run = base / "runs" / tmp_path.name  # ../../../ from a repository's folder lands here
    out = run / "out"
    (r,) = download_presets(out, [_one(f"{sources['http']}/{archive}")])
    assert r.status == "ok", r.reason
    assert _files(out / r.name) == kept | {MARKER}
    assert r.refused == refused
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert os.listdir(run) == ["out"]
    after = {k: v for k, v in _tree(base).items() if not k.startswith("runs")}
    assert after == before  # outside untouched: no evil files, secret unchanged, nothing new
    assert not any(p.name.startswith("evil") for p in base.parent.iterdir())


def test_safe_relpath_refuses_escapes():
    for bad in (
        "../x.vital",
        "a/../../x",
        "/etc/passwd",
        "C:/x",
        "c:x",
        "\\\\host\\x",
        "..\\x",
        "",
        "a\x00b",
    ):
        assert safe_relpath(bad) is None, bad
    assert str(safe_relpath("./a//b/./c.vital")) == "a/b/c.vital"


@pytest.mark.parametrize(
    "path, config, reason",
    [
        ("big.zip", DownloadConfig(max_download_mb=0.1), "download limit"),
        ("nolength/big.zip", DownloadConfig(max_download_mb=0.1), "download limit"),
        ("bomb.zip", DownloadConfig(max_extracted_mb=1.0), "1 MB limit"),
        ("many.zip", DownloadConfig(max_files=10), "more than 10 entries"),
        ("missing.zip", DownloadConfig(), "HTTP 404"),
        ("notzip.zip", DownloadConfig(), "not a valid zip archive"),
    ],
)
def test_limits_and_bad_archives_fail_one_repository(sources, tmp_path, path, config, reason):
    out = tmp_path / "out"
    bad = _one(f"{sources['http']}/{path}", "bad")
    good = _one(f"{sources['http']}/good.zip", "good")
    r_bad, r_good = download_presets(out, [bad, good], config)
    assert r_bad.status == "failed" and reason in r_bad.reason, r_bad.reason
    assert r_good.status == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # nothing of the failed one left


def test_a_zip_that_lies_about_sizes_fails_cleanly(sources, tmp_path):
    """A member whose central-directory size says 10 bytes (it holds 2 MB): the pre-check passes,
    the read fails its CRC, the repository fails with a reason and leaves nothing."""
    served = tmp_path / "liar.zip"
    _zip(served, {"Liar.vital": b"\0" * 2_000_000}, deflate=True)
    data = bytearray(served.read_bytes())
    cd = data.rindex(b"PK\x01\x02")  # uncompressed size: offset 24 of the central-directory record
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    (Path(sources["base"]) / "served" / "liar.zip").write_bytes(bytes(data))
    (r,) = download_presets(tmp_path / "out", [_one(f"{sources['http']}/liar.zip")], DownloadConfig(1, 1))
    assert r.status == "failed" and "cannot read Liar.vital" in r.reason, r.reason
    assert sorted(os.listdir(tmp_path / "out")) == []


def test_bytes_are_counted_as_read_not_as_declared(tmp_path):
    """An entry that declares 0 bytes but streams 2 MB stops at the extracted limit."""
    keep = tmp_path / "keep"
    keep.mkdir()
    entry = _Entry("Big.vital", "file", 0, lambda: io.BytesIO(b"\0" * 2_000_000))
    with pytest.raises(RepoFailed, match="exceed the 1 MB limit"):
        _keep_files(
            [entry],
            keep,
            PresetSource("x", "https://x.org/x.zip"),
            DownloadConfig(max_extracted_mb=1),
            strip_root=False,
        )
    config = DownloadConfig(max_extracted_mb=3)
    r = _keep_files([entry], tmp_path / "keep2", PresetSource("x", "u"), config, strip_root=False)
    assert r.bytes == 2_000_000 and r.counts["presets"] == 1


def test_unreachable_and_unsupported_urls(tmp_path):
    port = _free_port()
    (r1, r2) = download_presets(
        tmp_path / "out",
        [_one(f"http://127.0.0.1:{port}/x.zip", "closed"), _one("ftp://127.0.0.1/x.zip", "ftp")],
    )
    assert r1.status == "failed" and r1.reason.startswith(f"cannot reach 127.0.0.1:{port}")
    assert r2.status == "failed" and "http(s) only" in r2.reason


# ---------------------------------------------------------------------------------------- resume
def test_resume_skips_done_redoes_partial_and_keeps_foreign_folders(sources, tmp_path):
    out = tmp_path / "out"
    src = _one(f"{sources['http']}/good.zip")
    out.mkdir()
    first = download_one(out, src, DownloadConfig())
    assert first.status == "ok"
    stamp = (out / "good" / MARKER).stat().st_mtime_ns
    again = download_one(out, src, DownloadConfig())
    assert again.status == "skipped" and again.counts == first.counts and again.bytes == first.bytes
    assert (out / "good" / MARKER).stat().st_mtime_ns == stamp

    # a killed run leaves a .partial folder only: it is removed and the repository redone
    tar_src = _one(f"{sources['http']}/good.tar.gz", "pack")
    stale = out / ".pack.partial-killed"
    (stale / "keep").mkdir(parents=True)
    (stale / "keep" / "half.vital").write_bytes(b"half")
    r = download_one(out, tar_src, DownloadConfig())
    assert r.status == "ok" and not stale.exists()
    assert "half.vital" not in _files(out / "pack")

    # a run that fails midway (limit) leaves nothing under the final name; a later run completes
    bomb = _one(f"{sources['http']}/bomb.zip")
    assert download_one(out, bomb, DownloadConfig(max_extracted_mb=1.0)).status == "failed"
    assert not (out / "bomb").exists()
    assert download_one(out, bomb, DownloadConfig(max_extracted_mb=3.0)).status == "ok"

    # a folder without a marker is not ours: never replaced
    (out / "mine").mkdir()
    (out / "mine" / "precious.vital").write_bytes(b"mine")
    r = download_one(out, _one(f"{sources['http']}/good.zip", "mine"), DownloadConfig())
    assert r.status == "failed" and "not a completed download" in r.reason
    assert _files(out / "mine") == {"precious.vital"}
    # a marker for another URL: refused too
    r = download_one(out, _one(f"{sources['http']}/good.tar.gz", "good"), DownloadConfig())
    assert r.status == "failed" and "holds a download of" in r.reason


def test_sources_from_urls_names_and_defaults():
    default = DEFAULT_SOURCES[0]
    srcs = sources_from_urls(
        [default.url, "https://github.com/o/r.git", "https://x.org/a/r.zip", default.url]
    )
    assert [s.name for s in srcs] == [default.name, "o-r", "r"]
    assert srcs[0] == default  # licence and excludes kept for a default URL
    assert all(s.licence for s in DEFAULT_SOURCES) and len({s.name for s in DEFAULT_SOURCES}) == 3
    with pytest.raises(ValueError):
        PresetSource("../x", "https://x.org/x.git")
    with pytest.raises(ValueError):
        DownloadConfig(max_files=0)
    lines = summary_lines([])
    assert lines == ["0 repositories: 0 ok, 0 skipped, 0 failed; 0 presets, 0 banks, 0 tables"]


# ------------------------------------------------------------------------------------------- CLI
def test_cli_summary_and_exit_codes(sources, tmp_path):
    out = tmp_path / "out"
    good, missing = f"{sources['http']}/good.zip", f"{sources['http']}/missing.zip"
    r = run_cli("download-presets", "-o", out, "--repo", good, "--repo", missing, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("good: ok, 1 presets, 0 banks, 1 tables, 1 licence files")
    assert lines[1].startswith("missing: failed (HTTP 404")
    assert lines[2].startswith("2 repositories: 1 ok, 0 skipped, 1 failed")
    assert "Traceback" not in r.stderr and "error:" not in r.stderr

    # all failed (one skipped would count as success): one error line, exit 1
    port = _free_port()
    r = run_cli("download-presets", "-o", out, "--repo", missing, "--repo", f"http://127.0.0.1:{port}/x.zip")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == "error: all 2 repositories failed (reasons above)"
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["good"]  # the earlier download kept


def test_cli_bad_options(capsys, tmp_path):
    r = cli_in_process(capsys, "download-presets", "-o", tmp_path, "--max-files", "0")
    assert r.returncode == 1 and r.stderr.strip() == "error: max_files must be > 0, got 0"
    (tmp_path / "file").write_text("x")
    r = cli_in_process(capsys, "download-presets", "-o", tmp_path / "file", "--repo", "https://x.org/a.zip")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {tmp_path / 'file'} is not a folder"
    r = cli_in_process(capsys, "download-presets")
    assert r.returncode == 2 and "missing option -o/--output" in r.stderr
    r = cli_in_process(capsys, "download-presets", "--list")
    assert r.returncode == 0 and all(s.url in r.stdout and s.licence in r.stdout for s in DEFAULT_SOURCES)
