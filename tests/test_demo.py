"""The demo: its pieces in-process, then the real server driven by headless Chromium (Playwright).

The browser test starts ``python -m vitalmatch demo`` on a free port with the tests' cache (an
8-preset starting set), uploads a bad file and a rendered WAV, runs a 3-second
match, and checks every output and the downloaded ``.vital``. It skips, with the reason, only
where Debian's Chromium (``/usr/bin/chromium``, installed by ``.ci/run``) is missing or cannot start.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile as sf

from tests.pace import slowdown
from tests.processes import default_sigint
from tests.sounds import START_SET, render_vital, write_audible_wavs
from tests.vital_app import assert_app_loads
from vitalmatch.synth.export import read_vital

CHROMIUM = Path("/usr/bin/chromium")


# ------------------------------------------------------------------------------------ helpers
def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sound(tmp_path_factory, registry, catalog) -> Path:
    """A 1-second synthetic target (a random Tier-1 preset at MIDI 57) as a WAV file."""
    folder = tmp_path_factory.mktemp("sound")
    return write_audible_wavs(registry, catalog, folder, ["my sound.wav"], seed=5, note_s=0.5, render_s=1.0)[
        0
    ]


# ------------------------------------------------------------------------------------ pieces
def test_spectrogram_image_is_a_png_of_the_documented_size(tmp_path):
    from vitalmatch.demo import spectrogram_image

    t = np.arange(44100) / 44100
    target = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    match = np.stack([target * 0.5, target * 0.5])
    path = spectrogram_image(target, match, 44100, tmp_path / "s.png")
    assert path == tmp_path / "s.png"
    assert _png_size(path) == (1000, 360)  # as the docstring says


def test_app_builds_with_examples_and_defaults_to_localhost(tmp_path, monkeypatch):
    from vitalmatch.audio import load_audio
    from vitalmatch.demo import DemoConfig, build_app
    from vitalmatch.examples import EXAMPLES

    monkeypatch.setenv("VITALMATCH_CACHE", str(tmp_path))
    config = DemoConfig()
    assert config.host == "127.0.0.1" and config.max_upload_mb == 20
    app = build_app(DemoConfig(start_set_size=0))
    try:
        assert type(app).__name__ == "Blocks" and app.analytics_enabled is False
        examples = sorted((tmp_path / "examples").glob("*.wav"))
        assert [p.stem for p in examples] == sorted(EXAMPLES)
        for p in examples:  # rendered by the synth, audible, not clipping
            clip = load_audio(p, 44100)
            assert 0.01 < np.abs(clip.samples).max() <= 0.95
        # a bad upload gives one line in the status box and no outputs, before any worker starts
        bad = tmp_path / "notes.wav"
        bad.write_text("this is text, not audio")
        status, *outputs = app.vitalmatch_session.run(str(bad), 3, 1, lambda *a, **k: None)
        assert status.startswith("**Could not match this sound.** notes.wav")
        assert str(tmp_path) not in status and "\n" not in status
        assert outputs[0] is None and outputs[-1] is None
        assert app.vitalmatch_session.matcher is None
        status, *_ = app.vitalmatch_session.run(None, 3, 1, lambda *a, **k: None)
        assert "Upload or record a sound first" in status
    finally:
        app.vitalmatch_session.close()


def test_bad_options_give_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "vitalmatch", "demo", "--checkpoint", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"error: checkpoint {tmp_path / 'nope.pt'} does not exist"


# ------------------------------------------------------------------------------------ server
@pytest.fixture(scope="module")
def server(tmp_path_factory, match_cache):
    """``python -m vitalmatch demo`` on a free port with the tests' cache (its starting set is
    shared with the match tests); yields its URL."""
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    log = folder / "server.log"
    env = {**os.environ, "VITALMATCH_CACHE": str(match_cache), "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vitalmatch", "demo", "--port", str(port), "--start-set", str(START_SET)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=default_sigint,  # stopped with SIGINT below
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180  # the first start renders the starting set and the examples
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the demo server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    # the page can answer a moment before the server prints its URL line
                    if r.status == 200 and f"vitalmatch demo: {url}" in log.read_text():
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"the demo server did not answer in time:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        assert f"vitalmatch demo: {url}" in log.read_text()
        yield {"url": url, "port": port, "log": log, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # SIGINT: the server closes its workers
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_server_listens_on_localhost_only(server):
    table = Path("/proc/net/tcp")
    if not table.is_file():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    listening = set()
    for path in (table, Path("/proc/net/tcp6")):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == "0A" and int(port, 16) == server["port"]:  # 0A: LISTEN
                listening.add(address)
    assert listening == {"0100007F"}, listening  # 127.0.0.1 only, no 0.0.0.0 or ::


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import Error, sync_playwright

    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (.ci/run installs it with apt-get)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            )
        except Error as e:
            pytest.skip(f"Chromium at {CHROMIUM} cannot start: {str(e).strip().splitlines()[0]}")
        yield b
        b.close()


def test_browser_upload_match_and_download(browser, server, sound, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server["url"])
    page.wait_for_selector("#match-btn", timeout=30_000)
    upload = page.locator("#upload input[type=file]")

    # a bad upload: a clear one-line message in the page
    bad = tmp_path / "not audio.wav"
    bad.write_text("this is text, not audio")
    upload.set_input_files(str(bad))
    page.click("#match-btn")
    status = page.locator("#status")
    status.get_by_text("Could not match this sound").wait_for(timeout=30_000)
    assert "not audio.wav" in status.inner_text()

    # an upload over the size limit: Gradio's message in the page
    big = tmp_path / "big.wav"
    noise = np.random.default_rng(0).standard_normal((44100 * 125, 2)) * 0.1
    sf.write(big, noise.astype(np.float32), 44100, subtype="PCM_16")  # 22 MB
    page.reload()
    page.wait_for_selector("#match-btn", timeout=30_000)
    page.locator("#upload input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size of 20").wait_for(timeout=30_000)
    big.unlink()

    # a real sound on a 3-second budget
    page.reload()
    page.wait_for_selector("#match-btn", timeout=30_000)
    page.locator("#upload input[type=file]").set_input_files(str(sound))
    page.locator("#upload a[data-testid=download-link]").wait_for(state="attached", timeout=30_000)
    budget_s = min(30, round(3 * slowdown()))  # 3 s; more on a loaded machine, to search past the starts
    budget = page.locator("#budget input[type=number]")
    budget.fill(str(budget_s))
    budget.press("Enter")
    page.click("#match-btn")
    page.locator("#tutorial").get_by_text("Oscillator").first.wait_for(timeout=(120 + 4 * budget_s) * 1000)

    assert page.locator("#status").inner_text().strip() == ""
    for player, name in (("#original", "original.wav"), ("#matched", "matched.wav")):
        src = page.locator(f"{player} a[data-testid=download-link]").first.get_attribute("href")
        assert src and src.endswith(name), (player, src)
        wav = page.request.get(src)
        assert wav.ok and wav.body()[:4] == b"RIFF", (player, wav.status)
    image = page.locator("#spectrogram img").first
    image.wait_for(timeout=10_000)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 1000
    table = page.locator("#params [role=grid]")
    assert int(table.get_attribute("aria-rowcount")) > 2  # the header and the changed parameters
    assert "Oscillator" in table.inner_text()
    distances = page.locator("#distances").inner_text()
    assert "init preset" in distances and "after refinement" in distances and "Detected pitch" in distances
    renders = re.search(r"Search: (\d+) renders", distances)
    assert renders and int(renders.group(1)) > 7, distances  # it searched beyond the 7 starting candidates
    assert "How to build" in page.locator("#tutorial").inner_text()
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)

    with page.expect_download(timeout=30_000) as info:
        page.locator("#download a").first.click()
    download = info.value
    assert download.suggested_filename == "my sound.vital"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert_app_loads(saved)  # the Vital app's checks: version stamp, strict JSON
    preset = read_vital(saved)
    assert preset["preset_name"] == "my sound"
    assert np.abs(render_vital(preset)).max() > 1e-3  # loads in a fresh synth and sounds

    outside = sorted({urlparse(u).netloc for u in requests if urlparse(u).scheme in ("http", "https")})
    assert outside == [f"127.0.0.1:{server['port']}"], outside  # no CDN, no telemetry
    assert (tmp_path / "demo.png").stat().st_size > 10_000
