"""vitalmatch: turn a sound into a preset for the Vital wavetable synthesizer.

The main entry points, in pipeline order (each stage's module has the details):

* synth: :class:`ParamRegistry` (Vital's parameters, from the live synth), :class:`RenderEngine`
  (vectors -> audio), :class:`WavetableCatalog`, :func:`read_vital` / :func:`write_vital`;
* data: :func:`generate` with :class:`GenerateConfig`, :class:`DatasetReader`;
* learn: :func:`fit` with :class:`TrainConfig`, :class:`Predictor`;
* search and match: :func:`refine`, :class:`Matcher` with :class:`MatchConfig`;
* evaluation: :class:`EvaluateConfig` for ``vitalmatch.evaluate.evaluate`` (the module of that
  name is the package's attribute ``evaluate``, so the function is not re-exported);
* people: :func:`write_tutorial`, :func:`serve` (the demo).

They are imported on first use (``vitalmatch.Matcher`` imports :mod:`vitalmatch.match`), so that
``import vitalmatch`` stays light: the command line imports only what a stage needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> module, in pipeline order.
_EXPORTS = {
    "ParamRegistry": "vitalmatch.synth.params",
    "RenderConfig": "vitalmatch.synth.render",
    "RenderEngine": "vitalmatch.synth.render",
    "WavetableCatalog": "vitalmatch.synth.wavetables",
    "read_vital": "vitalmatch.synth.export",
    "write_vital": "vitalmatch.synth.export",
    "GenerateConfig": "vitalmatch.data.generate",
    "generate": "vitalmatch.data.generate",
    "DatasetReader": "vitalmatch.data.reader",
    "TrainConfig": "vitalmatch.learn.config",
    "fit": "vitalmatch.learn.train",
    "Predictor": "vitalmatch.learn.predict",
    "RefineConfig": "vitalmatch.search",
    "refine": "vitalmatch.search",
    "MatchConfig": "vitalmatch.match",
    "Matcher": "vitalmatch.match",
    "EvaluateConfig": "vitalmatch.evaluate",
    "TutorialConfig": "vitalmatch.tutorial",
    "write_tutorial": "vitalmatch.tutorial",
    "DemoConfig": "vitalmatch.demo",
    "serve": "vitalmatch.demo",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public entry point on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vitalmatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
