"""Writing a tutorial: the offline guide, or in LLM mode an LLM's rewrite of it.

Stage: tutorial (entry point). Input: a Vital preset (JSON dict) or a
:class:`~vitalmatch.synth.state.PresetState`, and a :class:`TutorialConfig`. Output: a
:class:`Tutorial` (Markdown text and where it came from).

LLM mode sends the offline guide and the non-default parameter table (:func:`llm_prompt`) to
Anthropic's Messages API in one call with a deadline for the whole call (:func:`_ask_llm`). Any
failure (no key, connection or HTTP error, no answer in time, an empty, truncated or oversized
answer, see :data:`LLM_MAX_CHARS_PER_TOKEN`) falls back to the offline guide with a one-line note.
Every text that reaches a terminal or a file, the LLM's answer and the preset's own names in the
offline guide, is cleaned of terminal escapes by :func:`clean_llm_text`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import sys
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vitalmatch.synth.state import PresetState
from vitalmatch.tutorial.guide import offline_tutorial
from vitalmatch.tutorial.table import (
    ParamRow,
    clamp_state,
    format_table,
    load_state,
    non_default,
    parameter_table,
)

__all__ = [
    "DEFAULT_MODEL",
    "LLM_MAX_CHARS_PER_TOKEN",
    "Tutorial",
    "TutorialConfig",
    "clean_llm_text",
    "llm_prompt",
    "write_tutorial",
]


#: Claude model used when none is given.
DEFAULT_MODEL = "claude-sonnet-5"

#: Most characters an LLM answer may have per token of ``max_tokens``. Claude's tokens average
#: about 4 characters of English prose or Markdown, so an answer longer than ``max_tokens`` times
#: this did not come from a model that kept to ``max_tokens``: it is rejected (the offline guide
#: is used) rather than cut, like an answer cut at ``max_tokens``.
LLM_MAX_CHARS_PER_TOKEN = 8


@dataclass
class TutorialConfig:
    """How to write a tutorial.

    Attributes:
        llm: have an LLM (Anthropic's Messages API) rewrite the offline guide.
        model: Claude model id.
        timeout_s: seconds the whole LLM call may take (connecting, sending, every retry and
            reading the answer) before it is cancelled and the offline guide is used. Also each
            read's own timeout.
        max_tokens: longest answer the LLM may give (tokens); an answer of more than
            ``max_tokens * LLM_MAX_CHARS_PER_TOKEN`` characters is rejected.
        base_url: API base URL; None: ``$ANTHROPIC_BASE_URL``, else Anthropic's.
        max_retries: retries of a failed request by the SDK (0: fall back at once).
        load_timeout_s: seconds the synth may take to load the preset.
    """

    llm: bool = False
    model: str = DEFAULT_MODEL
    timeout_s: float = 30.0
    max_tokens: int = 4096
    base_url: str | None = None
    max_retries: int = 0
    load_timeout_s: float = 30.0


@dataclass(frozen=True)
class Tutorial:
    """A written tutorial.

    Attributes:
        text: Markdown.
        source: ``"offline"`` or ``"llm"``.
        note: why the LLM was not used when it was asked for (one line), else None.
        model: the LLM's model id when ``source == "llm"``.
    """

    text: str
    source: str
    note: str | None = None
    model: str | None = None


_SYSTEM_PROMPT = """\
You are a sound-design teacher. You turn a factual guide to a Vital synthesizer preset into a \
clear, friendly step-by-step tutorial a beginner can follow in Vital.

Rules:
- Use only the parameters, values, units, wavetable names and modulations given to you. Copy \
every value exactly as written (with its unit). Never invent a parameter, a value, a wavetable, an \
effect or a modulation; anything not listed stays at Vital's init value.
- Keep the order of the steps: init preset, oscillators, sample, filters, envelopes, LFOs, \
effects, modulations, macros, global settings.
- For each step, say in one short sentence what it does to the sound.
- Answer with the tutorial only, in Markdown, with a title and numbered sections."""


def llm_prompt(guide: str, rows: Sequence[ParamRow], name: str) -> str:
    """The user message sent to the LLM: the offline guide and the non-default parameter listing."""
    return (
        f'Preset: "{name}"\n\n'
        f"<guide>\n{guide.strip()}\n</guide>\n\n"
        "<parameters>\nEvery parameter that differs from Vital's init preset, with Vital's display "
        "value. Some belong to modules that are off or settings the guide leaves out because they "
        "do not change the sound: follow the guide for what to set.\n\n"
        f"{format_table(non_default(rows))}\n</parameters>\n\n"
        "Write the tutorial."
    )


def write_tutorial(
    preset: Mapping | PresetState, config: TutorialConfig | None = None, name: str | None = None
) -> Tutorial:
    """The offline guide, or with ``config.llm`` the LLM's rewrite of it.

    In LLM mode any failure (no ``ANTHROPIC_API_KEY``, connection error, HTTP error, no answer
    within ``config.timeout_s`` in all, an empty, truncated or oversized answer) falls back to the
    offline guide: ``note`` says why and the same line goes to stderr as ``note: ...``. The LLM's
    text is cleaned by :func:`clean_llm_text` (no terminal escape sequences or control
    characters) before it is returned.

    Raises:
        ValueError: the preset cannot be loaded (one line).
    """
    config = config or TutorialConfig()
    if isinstance(preset, PresetState):
        state = clamp_state(preset, timeout_s=config.load_timeout_s)
    else:
        state = load_state(preset, timeout_s=config.load_timeout_s)
    title = name or state.meta.get("preset_name") or "this preset"
    # The file's own text (name, author, comments, wavetable and macro names) reaches the guide:
    # it gets the same cleaning as an LLM answer, so a preset cannot send terminal escapes either.
    guide = clean_llm_text(offline_tutorial(state, name=title))
    if not config.llm:
        return Tutorial(guide, "offline")
    try:
        text = _ask_llm(llm_prompt(guide, parameter_table(state), title), config)
    except Exception as exc:  # noqa: BLE001 - the LLM is optional: any failure falls back
        reason = clean_llm_text(_describe_llm_error(exc, config)).replace("\n", " ").replace("\t", " ")
        note = f"LLM tutorial unavailable ({reason}); using the offline guide"
        print(f"note: {note}", file=sys.stderr)
        return Tutorial(guide, "offline", note=note)
    return Tutorial(text.strip() + "\n", "llm", model=config.model)


class _LLMUnavailable(Exception):
    """The LLM cannot be asked or gave no usable answer (message: why, one line)."""


def _ask_llm(prompt: str, config: TutorialConfig) -> str:
    """One Messages API call within ``config.timeout_s`` in all; the answer's cleaned text.

    The deadline starts before the SDK is imported (1-3 s the first time; an import cannot be cut
    short, so a first call takes at least that long). The call runs on its own asyncio
    event loop (in a helper thread if the caller's thread already runs one) under
    ``asyncio.wait_for``: at the deadline the request is cancelled wherever it is (connecting,
    waiting, retrying, or reading an answer that trickles in, which httpx's per-read timeout never
    ends) and its connection is closed. Raises on any failure.
    """
    deadline = time.monotonic() + config.timeout_s
    key = os.environ.get("ANTHROPIC_API_KEY", "").strip()
    if not key:
        raise _LLMUnavailable("ANTHROPIC_API_KEY is not set")
    import anthropic

    async def ask():
        async with anthropic.AsyncAnthropic(
            api_key=key,
            base_url=config.base_url or None,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        ) as client:
            request = client.messages.create(
                model=config.model,
                max_tokens=config.max_tokens,
                system=_SYSTEM_PROMPT,
                messages=[{"role": "user", "content": prompt}],
            )
            return await asyncio.wait_for(request, max(0.0, deadline - time.monotonic()))

    try:
        message = _run_coroutine(ask)
    except TimeoutError:  # asyncio.wait_for's (builtin TimeoutError on Python 3.11)
        raise _LLMUnavailable(f"no answer within {config.timeout_s:g} s") from None
    text = "".join(getattr(block, "text", "") for block in message.content if block.type == "text")
    if message.stop_reason == "max_tokens":
        raise _LLMUnavailable(f"the answer was cut at max_tokens={config.max_tokens}")
    cap = config.max_tokens * LLM_MAX_CHARS_PER_TOKEN
    if len(text) > cap:
        raise _LLMUnavailable(
            f"the answer has {len(text)} characters, over {cap} "
            f"(max_tokens={config.max_tokens} x {LLM_MAX_CHARS_PER_TOKEN})"
        )
    text = clean_llm_text(text)
    if not text.strip():
        raise _LLMUnavailable("the answer was empty")
    return text


def _run_coroutine(make):
    """``make()``'s coroutine run to the end on a new event loop; in a helper thread when this
    thread already runs a loop (``asyncio.run`` cannot nest). The loop is closed without waiting
    for its default executor (a stuck DNS look-up must not outlast the deadline)."""

    def run():
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(make())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


#: Terminal escape sequences (ECMA-48), 7- and 8-bit: CSI (``ESC [`` ... final byte), the
#: string commands OSC, DCS, SOS, PM and APC up to BEL or ST (or the line's end when
#: unterminated), and the other two- or three-byte ``ESC`` sequences.
_ESCAPE_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]"
)


def clean_llm_text(text: str) -> str:
    """Text from the LLM, safe to print or write: no terminal escape sequences (``\\x1b[2J``,
    ``\\x1b]0;title\\x07``, ``\\x1b]8;;url\\x07`` hyperlinks, 8-bit ``\\x9b`` CSI, ...), with
    their parameters, and no other control characters (Unicode category Cc) except ``\\n`` and
    ``\\t``; ``\\r\\n`` becomes ``\\n``."""
    text = _ESCAPE_RE.sub("", text.replace("\r\n", "\n"))
    return "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")


def _describe_llm_error(exc: BaseException, config: TutorialConfig) -> str:
    """One short line for a failed LLM call."""
    if isinstance(exc, _LLMUnavailable):
        return str(exc)
    try:
        import anthropic
    except ImportError:
        return "the anthropic package is not installed"
    if isinstance(exc, anthropic.APITimeoutError):
        return f"no answer within {config.timeout_s:g} s"
    if isinstance(exc, anthropic.APIStatusError):
        return f"HTTP {exc.status_code} from the API"
    if isinstance(exc, anthropic.APIConnectionError):
        return "cannot connect to the API"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
