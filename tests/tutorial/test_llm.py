"""LLM mode against a local server that answers like Anthropic's Messages API (the real SDK, no
mocks): the request, the fall-backs to the offline guide, the deadline, the size cap and the
cleaning of terminal escapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.pace import slowdown
from tests.processes import cli_in_process, run_cli
from tests.tutorial.common import control_chars as _control_chars
from vitalmatch.synth.export import read_vital
from vitalmatch.tutorial import TutorialConfig, offline_tutorial, write_tutorial

LLM_TEXT = "# Tutorial from the fake API\n\nTurn the cutoff to 523.3 Hz.\n"


class FakeMessagesAPI:
    """A local HTTP server answering ``POST /v1/messages`` like Anthropic's Messages API.

    ``mode``: ``"ok"`` (a message with ``text``, default ``LLM_TEXT``), ``"error"`` (HTTP 500),
    ``"slow"`` (sleeps ``delay_s`` first) or ``"trickle"`` (the whole HTTP response, status line
    included, one byte per second: every read gets data well within any per-read timeout).
    Requests are kept in ``requests`` as (path, headers, body).
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 3.0
        self.text = LLM_TEXT
        self.requests: list[tuple[str, dict, dict]] = []
        self.stop = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                api.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if api.mode == "slow":
                    time.sleep(api.delay_s)
                if api.mode == "error":
                    self._send(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}})
                    return
                message = {
                    "id": "msg_fake_01",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", ""),
                    "content": [{"type": "text", "text": api.text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 20},
                }
                if api.mode == "trickle":
                    self._trickle(message)
                    return
                self._send(200, message)

            def _trickle(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                head += f"content-length: {len(data)}\r\n\r\n"
                for byte in head.encode() + data:
                    if api.stop.wait(1.0):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api(monkeypatch):
    api = FakeMessagesAPI()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    yield api
    api.close()


def test_llm_request_carries_the_parameters_and_its_text_is_used(changed_state, fake_api, capsys):
    config = TutorialConfig(llm=True, model="claude-test-model", base_url=fake_api.url, timeout_s=10)
    tutorial = write_tutorial(changed_state, config)
    assert (tutorial.source, tutorial.text, tutorial.note, tutorial.model) == (
        "llm",
        LLM_TEXT,
        None,
        "claude-test-model",
    )
    assert capsys.readouterr().err == ""
    [(path, headers, body)] = fake_api.requests
    assert path == "/v1/messages"
    assert "test-key" in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert body["model"] == "claude-test-model" and body["max_tokens"] == config.max_tokens
    prompt = body["messages"][0]["content"]
    for value in ("523.3 Hz", "My Table", "62.5 ms", "1/64", "LFO 1 -> Filter 1 Cutoff"):
        assert value in prompt, value
    assert offline_tutorial(changed_state) in prompt
    assert "invent" in json.dumps(body["system"])


def test_llm_http_error_falls_back_to_the_offline_guide(changed_state, fake_api, capsys):
    fake_api.mode = "error"
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10))
    assert tutorial.source == "offline" and tutorial.text == offline_tutorial(changed_state)
    assert "HTTP 500" in tutorial.note
    err = capsys.readouterr().err
    assert err.startswith("note: ") and "HTTP 500" in err and err.count("\n") == 1
    assert len(fake_api.requests) == 1  # no retries by default


def test_llm_timeout_falls_back_to_the_offline_guide(changed_state, fake_api, capsys):
    fake_api.mode = "slow"
    limit = 2.0 + 0.5 * slowdown()
    t0 = time.monotonic()
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=0.5))
    assert time.monotonic() - t0 < limit
    assert tutorial.source == "offline" and "no answer within 0.5 s" in tutorial.note
    assert "no answer within 0.5 s" in capsys.readouterr().err


def test_llm_without_a_key_falls_back_without_a_request(changed_state, fake_api, monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    tutorial = write_tutorial(changed_state, TutorialConfig(llm=True, base_url=fake_api.url))
    assert tutorial.source == "offline" and "ANTHROPIC_API_KEY is not set" in tutorial.note
    assert fake_api.requests == []
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


def test_cli_llm_end_to_end_uses_anthropic_base_url(tmp_path, changed_preset, fake_api):
    """``python -m vitalmatch tutorial --llm`` in a subprocess, pointed at the server by the SDK's
    standard ANTHROPIC_BASE_URL."""
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    run = subprocess.run(
        [sys.executable, "-m", "vitalmatch", "tutorial", str(preset), "--llm", "--model", "claude-x"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == LLM_TEXT and run.stderr == ""
    assert fake_api.requests[0][2]["model"] == "claude-x"


def test_cli_llm_timeout_is_a_deadline_for_the_whole_call(tmp_path, changed_preset, changed_state, fake_api):
    """A server that sends one byte per second never lets a per-read timeout fire: ``--timeout 4``
    must still end the call at the deadline and print the offline guide with a one-line note."""
    fake_api.mode = "trickle"
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    pace = slowdown()
    # the deadline includes importing the SDK (1-3 s idle): on a loaded machine (CI runs two test
    # processes) 4 s ran out before the request was sent, so the deadline grows with the pace
    deadline = max(4, round(6 * pace))
    limit = deadline + 5.0 * pace  # start, load and exit: ~2 s on an idle machine
    t0 = time.monotonic()
    try:
        run = run_cli("tutorial", preset, "--llm", "--timeout", str(deadline), env=env, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"tutorial --llm --timeout {deadline} was still running after {limit:.1f} s")
    elapsed = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    assert len(fake_api.requests) == 1
    assert elapsed > deadline  # it did wait for the server
    assert run.stdout == offline_tutorial(changed_state)
    assert run.stderr.startswith("note: ") and f"no answer within {deadline} s" in run.stderr
    assert run.stderr.count("\n") == 1


#: An answer with terminal escapes: clear screen, window title, a hyperlink, colours, 8-bit CSI,
#: and bare control characters; only the text, newlines and tabs may reach the terminal.
ESCAPED_TEXT = (
    "# Tutorial\x1b[2J\x1b[H\r\n\x1b]0;owned title\x07Turn the \x1b]8;;http://x\x07cutoff\x1b]8;;\x07 "
    "to \x1b[1;31m523.3 Hz\x1b[0m.\n\tThen play.\x00\x08\x7f\x9b2J\x1bc\x1b]2;t\x1b\\ Done.\n"
)
CLEAN_TEXT = "# Tutorial\nTurn the cutoff to 523.3 Hz.\n\tThen play. Done.\n"


def test_llm_answer_loses_terminal_escapes_on_stdout_and_in_files(tmp_path, changed_preset, fake_api, capsys):
    fake_api.text = ESCAPED_TEXT
    preset = tmp_path / "Changed.vital"
    preset.write_text(json.dumps(changed_preset))
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake_api.url}
    run = run_cli("tutorial", preset, "--llm", env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert _control_chars(run.stdout) == [] and run.stdout == CLEAN_TEXT and run.stderr == ""
    out = tmp_path / "guide.md"
    tutorial = write_tutorial(
        read_vital(preset), TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10)
    )
    assert tutorial.source == "llm" and tutorial.text == CLEAN_TEXT
    run = cli_in_process(capsys, "tutorial", preset, "--llm", "--base-url", fake_api.url, "-o", out)
    assert run.returncode == 0, run.stderr
    assert out.read_text(encoding="utf-8") == CLEAN_TEXT


def test_llm_answer_over_the_size_cap_falls_back(changed_state, fake_api, capsys):
    """No model writes more than max_tokens tokens; an answer far longer than that is rejected."""
    from vitalmatch import tutorial as tutorial_module

    config = TutorialConfig(llm=True, base_url=fake_api.url, timeout_s=10, max_tokens=100)
    fake_api.text = "Set the cutoff. " * 2000  # 32000 characters for 100 tokens
    tutorial = write_tutorial(changed_state, config)
    assert tutorial.source == "offline" and tutorial.text == offline_tutorial(changed_state)
    assert "characters" in tutorial.note and "max_tokens=100" in tutorial.note
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1
    cap = config.max_tokens * tutorial_module.LLM_MAX_CHARS_PER_TOKEN
    fake_api.text = "x" * cap  # at the cap: accepted
    assert write_tutorial(changed_state, config).source == "llm"
    fake_api.text = "x" * (cap + 1)
    assert write_tutorial(changed_state, config).source == "offline"
