"""vitalmatch: turn a sound into a preset for the Vital wavetable synthesizer.

Pipeline order: synth (parameters, wavetables, rendering) -> data (sampling, storage,
generation) -> learn -> match -> demo.
"""

__version__ = "0.1.0"
