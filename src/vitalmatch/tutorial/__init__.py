"""Tutorials: a ``.vital`` preset -> a step-by-step Markdown guide to build it by hand in Vital.

Stage: tutorial. Input: a Vital preset (the JSON dict of a ``.vital`` file). Output: a
:class:`ParamRow` table of every parameter with Vital's display value, and a Markdown guide
(:func:`offline_tutorial`), optionally rewritten by an LLM (:func:`write_tutorial`).

The package reads in the order of the data:

* :mod:`~vitalmatch.tutorial.table`: the preset loaded into the synth, clamped as vitalmatch drives
  it (:func:`load_state`), and the parameter table (:func:`parameter_table`);
* :mod:`~vitalmatch.tutorial.guide`: the offline guide made from the table;
* :mod:`~vitalmatch.tutorial.llm`: :func:`write_tutorial`, the stage's entry point, and LLM mode.

Vital's display units and names (MIDI notes in Hz, envelope stages in ms, tempo names, filter-style
names, the effect order) are facts about Vital and live in :mod:`vitalmatch.synth.display`.
"""

from vitalmatch.synth.state import ControlInfo, PresetState
from vitalmatch.tutorial.guide import offline_tutorial
from vitalmatch.tutorial.llm import (
    DEFAULT_MODEL,
    LLM_MAX_CHARS_PER_TOKEN,
    Tutorial,
    TutorialConfig,
    clean_llm_text,
    llm_prompt,
    write_tutorial,
)
from vitalmatch.tutorial.table import (
    ClampedState,
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
    "ClampedState",
    "ControlInfo",
    "ParamRow",
    "PresetState",
    "Tutorial",
    "TutorialConfig",
    "clamp_state",
    "clean_llm_text",
    "format_table",
    "llm_prompt",
    "load_state",
    "non_default",
    "offline_tutorial",
    "parameter_table",
    "write_tutorial",
]
