"""CLAP audio embeddings: how alike two sounds are to a pretrained audio-text model.

Stage: evaluation (an optional metric). Input: a local folder holding a transformers CLAP
checkpoint (``config.json`` of ``model_type`` ``clap``, ``model.safetensors`` and the
``preprocessor_config.json`` of its ``ClapFeatureExtractor``, as ``save_pretrained`` writes them,
e.g. a copy of ``laion/clap-htsat-unfused``) and mono audio at any rate. Output: L2-normalised
audio embeddings ``(n, D)`` (:meth:`Clap.embed`) and their cosine similarity (:func:`cosine`, 1 for
the same sound, lower for sounds the model hears as different).

CLAP (Wu et al. 2023, "Large-scale contrastive language-audio pretraining with feature fusion and
keyword-to-caption augmentation") is transformers' ``ClapModel``: the laion-clap package does not
import with this CPU torch. The model runs on log-mels of 48 kHz audio (the feature extractor's
rate): other rates are resampled with soxr ``HQ`` first. Clips longer than the extractor's
``max_length_s`` (10 s for LAION's checkpoints) are cut to their first ``max_length_s`` seconds
rather than cropped at random as the extractor would, so an embedding is deterministic; shorter
clips are repeated and padded as the extractor's ``padding`` says (``repeatpad``).

Loading never executes code: the weights load from safetensors only (no pickle; a folder with
only ``pytorch_model.bin`` is refused), from the folder only (no hub look-up). A missing folder, a
folder of another model, corrupt or incomplete weights: one ``ValueError`` line.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import soxr
import torch

#: ``model_type`` of a CLAP ``config.json``.
MODEL_TYPE = "clap"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b``.

    Args:
        a, b: ``(n, D)`` (or ``(D,)``) embeddings; rows need not be normalised.

    Returns:
        ``(n,)`` float64 in [-1, 1] (a float for 1-D inputs); NaN where a row is all zeros.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"cosine needs embeddings of one shape, got {a64.shape} and {b64.shape}")
    norms = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.clip(np.sum(a64 * b64, axis=-1) / norms, -1.0, 1.0)
    return float(out) if out.ndim == 0 else out


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' load report and progress bars off (a CLI prints one line per problem)."""
    from transformers.utils import logging

    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


class Clap:
    """A CLAP model and its feature extractor, loaded from a local folder (state: the network).

    Args:
        folder: ``save_pretrained`` folder of a ``ClapModel`` and its ``ClapFeatureExtractor``.
        device: torch device of the network.

    Attributes:
        folder: the folder.
        sample_rate: Hz the model hears (the extractor's, 48 kHz for LAION's checkpoints).
        dim: embedding size ``D`` (the projection dimension).
        max_samples: clip length the model sees, in samples at ``sample_rate``.

    Raises:
        ValueError: one line, for a missing folder, a folder without a CLAP ``config.json`` or
            ``preprocessor_config.json``, weights that are missing, not safetensors, corrupt or
            of another shape.
    """

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from transformers import ClapFeatureExtractor, ClapModel

        self.folder = Path(folder)
        where = f"CLAP folder {self.folder}"
        if not self.folder.is_dir():
            raise ValueError(
                f"{where} {'is a file, not a folder' if self.folder.exists() else 'does not exist'}"
            )
        config = self.folder / "config.json"
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except FileNotFoundError:
            raise ValueError(f"{where} has no config.json (not a transformers CLAP checkpoint)") from None
        except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
            raise ValueError(f"{where}: config.json is not a JSON object ({_first_line(e)})") from None
        if model_type != MODEL_TYPE:
            raise ValueError(f"{where} holds a {model_type!r} model, not CLAP (model_type 'clap')")
        if not (self.folder / "model.safetensors").is_file():
            raise ValueError(f"{where} has no model.safetensors (CLAP weights load from safetensors only)")
        if not (self.folder / "preprocessor_config.json").is_file():
            raise ValueError(f"{where} has no preprocessor_config.json (its ClapFeatureExtractor)")
        with _quiet_transformers():
            try:
                model, info = ClapModel.from_pretrained(
                    self.folder, local_files_only=True, use_safetensors=True, output_loading_info=True
                )
                extractor = ClapFeatureExtractor.from_pretrained(self.folder, local_files_only=True)
            except Exception as e:  # safetensors, JSON and shape errors come as many types
                raise ValueError(f"{where} does not load: {_first_line(e)}") from None
        missing = sorted(info.get("missing_keys") or ()) + sorted(info.get("mismatched_keys") or ())
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(f"{where}: the weights lack {', '.join(map(str, missing[:3]))}{more}")
        bins = model.config.audio_config.num_mel_bins
        if extractor.feature_size != bins:
            raise ValueError(
                f"{where}: the extractor makes {extractor.feature_size} mel bands, the model takes {bins}"
            )
        self.model = model.to(device).eval()
        self.extractor = extractor
        self.device = torch.device(device)
        self.sample_rate = int(extractor.sampling_rate)
        self.dim = int(model.config.projection_dim)
        self.max_samples = int(extractor.nb_max_samples)
        # A fused model takes four mels per clip; an unfused one a single mel.
        self._truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"

    def _prepare(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """One clip ``(T,)`` or ``(C, T)`` -> mono float32 ``(T',)`` at the model's rate, at most
        ``max_samples`` long."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"CLAP needs mono (T,) or (channels, T) audio, got shape {np.shape(audio)}")
        if not np.isfinite(x).all():
            raise ValueError("CLAP got audio with NaN or Inf")
        if sample_rate != self.sample_rate:
            # cut first, so a long file is not resampled whole
            x = x[: int(np.ceil(self.max_samples * sample_rate / self.sample_rate)) + 1]
            x = soxr.resample(x, sample_rate, self.sample_rate, quality="HQ").astype(np.float32, copy=False)
        return x[: self.max_samples]

    @torch.inference_mode()
    def embed(self, audio, sample_rate: int, batch_size: int = 8) -> np.ndarray:
        """L2-normalised CLAP audio embeddings.

        Args:
            audio: mono clips as ``(n, T)`` or ``(T,)`` float, or a list of ``(T_i,)`` (or
                ``(channels, T_i)``, mixed to mono) clips of any lengths.
            sample_rate: Hz of ``audio`` (resampled to :attr:`sample_rate` when it differs).
            batch_size: clips per forward pass.

        Returns:
            ``(n, D)`` float32, each row of unit norm.
        """
        if isinstance(audio, np.ndarray) and audio.ndim == 1:
            audio = [audio]
        clips = [self._prepare(a, int(sample_rate)) for a in audio]
        out = []
        for s in range(0, len(clips), batch_size):
            chunk = clips[s : s + batch_size]
            inputs = self.extractor(
                chunk, sampling_rate=self.sample_rate, truncation=self._truncation, return_tensors="pt"
            )
            # No clip is longer than max_samples (cut above): the extractor's random "longer" flag
            # (a training trick of the fused model) would make an embedding depend on its batch.
            is_longer = torch.zeros(len(chunk), 1, dtype=torch.bool)
            features = inputs["input_features"].to(self.device, torch.float32)
            got = self.model.get_audio_features(input_features=features, is_longer=is_longer.to(self.device))
            pooled = got.pooler_output if hasattr(got, "pooler_output") else got  # a tensor before v5
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def similarity(self, a, b, sample_rate: int) -> np.ndarray:
        """``(n,)`` cosine similarity of the embeddings of clips ``a[i]`` and ``b[i]`` (see
        :meth:`embed` for the shapes)."""
        return cosine(self.embed(a, sample_rate), self.embed(b, sample_rate))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
