"""Learning: datasets -> a trained network -> predictions (see docs/architecture.md).

``DEFAULT_MODEL`` is the model file packaged with vitalmatch (it may be absent); which model a
command uses is decided by :func:`vitalmatch.learn.default_model.resolve`.
"""

from vitalmatch.learn.default_model import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL"]
