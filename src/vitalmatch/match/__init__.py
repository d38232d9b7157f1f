"""Matching: a sound -> a ``.vital`` preset that sounds like it (the product's main job).

Stage: match. Input: an audio file, a folder of them, or mono samples. Output: presets, their
renders and the distances reached (:class:`MatchResult`, :class:`BatchReport`).

Modules, in the order a match uses them:

* :mod:`~vitalmatch.match.start_set`: the built-in starting set, rendered once and looked up by
  sound;
* :mod:`~vitalmatch.match.matcher`: :class:`Matcher` -- start candidates, the search with the synth
  in the loop, the final full-quality choice;
* :mod:`~vitalmatch.match.batch`: a file or a folder of sounds, its outputs and summary table.
"""

from vitalmatch.match.batch import (
    AUDIO_SUFFIXES,
    SUMMARY_COLUMNS,
    Batch,
    BatchItem,
    BatchReport,
    match_batch,
    plan_batch,
    write_match,
)
from vitalmatch.match.matcher import MAX_BUDGET_S, Candidate, MatchConfig, Matcher, MatchResult
from vitalmatch.match.start_set import (
    MAX_START_SET,
    START_NOTES,
    START_SET_RATE,
    START_SET_SEED,
    START_SET_VERSION,
    StartSet,
    cache_dir,
    check_start_set_size,
    ensure_start_set,
    start_set_path,
)

__all__ = [
    "AUDIO_SUFFIXES",
    "MAX_BUDGET_S",
    "MAX_START_SET",
    "START_NOTES",
    "START_SET_RATE",
    "START_SET_SEED",
    "START_SET_VERSION",
    "SUMMARY_COLUMNS",
    "Batch",
    "BatchItem",
    "BatchReport",
    "Candidate",
    "MatchConfig",
    "MatchResult",
    "Matcher",
    "StartSet",
    "cache_dir",
    "check_start_set_size",
    "ensure_start_set",
    "match_batch",
    "plan_batch",
    "start_set_path",
    "write_match",
]
