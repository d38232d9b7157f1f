"""Checkpoints: one file holds everything needed to resume training or to predict.

Stage: learn (persistence). A checkpoint is a dict of tensors and plain Python values written by
``torch.save`` and read with ``torch.load(weights_only=True)``, so loading one never runs code.
Keys:

========================  ===================================================================
``format``, ``version``   ``"vitalmatch-checkpoint"``, 1
``model_config``          :class:`~vitalmatch.learn.model.ModelConfig` as a dict
``model``                 the model's state dict
``registry_json``         the predicted columns (:class:`~vitalmatch.synth.params.ParamRegistry`)
``features``              :class:`~vitalmatch.features.FeatureConfig` as a dict
``norm_mean/norm_std``    ``(n_mels,)`` per-band log-mel statistics of the training split
``fill_continuous``       ``(C_full,)`` / ``(K_full,)`` values for the dataset's columns that the
``fill_categorical``      model does not predict (the training split's means / modes)
``full_registry_json``    the dataset's full registry (the order of the fill vectors)
``input_frames``          frames of the training clips (inputs are cropped / padded to it)
``wavetables_json``       the dataset's wavetable catalog (what ``osc_N_wavetable`` indexes)
``render_settings``       how the dataset was rendered (sample rate, durations, notes, tier)
``baseline``              validation metrics of the predict-the-mean baseline
``train``                 the training state: config, optimiser, schedule, step, epoch, ...
========================  ===================================================================

Writes are atomic (temporary file, fsync, rename): a crash never leaves half a checkpoint.

**Model files** (:func:`save_model`, ``vitalmatch export-model``) hold what prediction needs and
nothing of training, as weights only: a ``.safetensors`` file whose tensors are the model's state
dict (``model.<name>``, optionally float16), ``norm_mean``, ``norm_std``, ``fill_continuous`` and
``fill_categorical``, and whose metadata header holds ``format`` (``"vitalmatch-model"``),
``version`` and every other entry above but ``train`` as JSON text, plus ``card`` (what the model
was trained on: data, steps, metrics). Such a file is read with ``safetensors`` (no pickle, no
code) into the same dict a training checkpoint gives, without ``train``. :func:`load` tells the two
apart by content (a safetensors header: 8-byte length, then ``{``), whatever the suffix; a file
named ``.safetensors`` that is not one is refused without unpickling it.

Loading checks the type (and, for tensors, the shape) of every entry above, because a file that
loads safely can still hold anything: a wrong entry is one ``ValueError`` line, never a traceback
later. The parameter ranges in ``registry_json`` / ``full_registry_json`` are *not* trusted to
drive the synth: prediction clamps to the live synth's own ranges
(:func:`vitalmatch.learn.predict.synth_vectors`).
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import math
import os
from pathlib import Path
from typing import Any

import torch

from vitalmatch.features import FeatureConfig
from vitalmatch.learn.model import ModelConfig, ParamNet
from vitalmatch.synth.params import ParamRegistry

FORMAT = "vitalmatch-checkpoint"
VERSION = 1
MODEL_FORMAT = "vitalmatch-model"
MODEL_VERSION = 1
#: Tensors of a model file besides the state dict (``model.<name>``).
MODEL_TENSORS = ("norm_mean", "norm_std", "fill_continuous", "fill_categorical")
#: Entries of a model file's metadata header, each JSON text.
MODEL_METADATA = (
    "model_config",
    "registry_json",
    "full_registry_json",
    "features",
    "input_frames",
    "wavetables_json",
    "render_settings",
    "baseline",
    "data_identity",
    "card",
)
#: The wavetable catalog is stored as an xz-compressed uint8 tensor of its JSON text (a
#: catalog with presets' custom tables is ~17 MB of text, 8 MB compressed: it would not fit the
#: 20 MB the package allows as header text); decompression stops at :data:`_MAX_CATALOG` bytes.
COMPRESSED = {"wavetables_json": "wavetables_json.xz"}
_MAX_CATALOG = 400_000_000
#: A safetensors header longer than this is not one of ours (ours are a few hundred kB).
_MAX_HEADER = 100_000_000
REQUIRED = (
    "model_config",
    "model",
    "registry_json",
    "features",
    "norm_mean",
    "norm_std",
    "fill_continuous",
    "fill_categorical",
    "full_registry_json",
    "input_frames",
)


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format and version) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a training checkpoint or a model file (told apart by content, see the module
    docstring); ``ValueError`` (one line) if it is missing, corrupt or foreign. A model file gives
    the same dict without ``train`` and with ``format`` :data:`MODEL_FORMAT` and ``card``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    if is_model_file(path):
        ckpt = _load_model_file(path, map_location)
    elif path.suffix.lower() == ".safetensors":
        raise ValueError(f"{path} is not a safetensors model file (a .safetensors file is never unpickled)")
    else:
        ckpt = _load_torch(path, map_location)
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise ValueError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    problem = _problem(ckpt)
    if problem:
        raise ValueError(f"{path} is not a valid checkpoint: {problem}")
    return ckpt


def _load_torch(path: Path, map_location) -> dict[str, Any]:
    """A ``torch.save`` checkpoint read with the weights-only unpickler (format and version checked)."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler raises anything on garbage
        what = e.strerror if isinstance(e, OSError) and e.strerror else "not a torch checkpoint file"
        raise ValueError(f"{path} is not a readable checkpoint ({what})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a vitalmatch checkpoint")
    if ckpt.get("version") != VERSION:
        raise ValueError(
            f"{path} has checkpoint version {ckpt.get('version')}, this vitalmatch reads {VERSION}"
        )
    return ckpt


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file: an 8-byte little-endian header length, then
    ``{`` (a torch checkpoint starts with a zip or pickle signature). Only the first 9 bytes are read."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= _MAX_HEADER


def _load_model_file(path: Path, map_location) -> dict[str, Any]:
    """A model file's entries as a checkpoint dict (types not yet checked: :func:`load` does)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            ours = meta.get("format") == MODEL_FORMAT
            keys = list(f.keys()) if ours else []
            tensors = {k: f.get_tensor(k) for k in keys}
    except Exception as e:  # noqa: BLE001 - the safetensors reader raises its own error types
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path} is not a readable model file (corrupt or truncated: {first})") from None
    if not ours:
        raise ValueError(f"{path} is not a vitalmatch model (a safetensors file without its metadata)")
    if meta.get("version") != str(MODEL_VERSION):
        raise ValueError(
            f"{path} has model file version {meta.get('version')}, this vitalmatch reads {MODEL_VERSION}"
        )
    ckpt: dict[str, Any] = {"format": MODEL_FORMAT, "version": MODEL_VERSION}
    for key in MODEL_METADATA:
        if key in meta:
            try:
                ckpt[key] = json.loads(meta[key])
            except ValueError:
                raise ValueError(f"{path} is not a valid model file: {key} is not JSON") from None
    model = {}
    for key, value in tensors.items():
        if key.startswith("model."):
            # float16 storage (--half) back to float32: the same dict a training checkpoint gives
            model[key[len("model.") :]] = value.float() if value.dtype == torch.float16 else value
        elif key in MODEL_TENSORS:
            ckpt[key] = value
        elif key in COMPRESSED.values() and value.dtype == torch.uint8 and value.ndim == 1:
            entry = next(k for k, v in COMPRESSED.items() if v == key)
            ckpt[entry] = _unpack_json(path, entry, value)
        else:
            raise ValueError(f"{path} is not a valid model file: unexpected tensor {key[:60]!r}")
    ckpt["model"] = model
    if "card" in ckpt and not isinstance(ckpt["card"], dict):
        raise ValueError(f"{path} is not a valid model file: card is {_kind(ckpt['card'])}, not a dict")
    if map_location not in ("cpu", None):
        ckpt = {k: v.to(map_location) if isinstance(v, torch.Tensor) else v for k, v in ckpt.items()}
        ckpt["model"] = {k: v.to(map_location) for k, v in model.items()}
    return ckpt


def _unpack_json(path: Path, key: str, value: torch.Tensor) -> Any:
    """The JSON entry ``key`` from its xz-compressed uint8 tensor (:data:`COMPRESSED`)."""
    try:
        d = lzma.LZMADecompressor()
        text = d.decompress(value.numpy().tobytes(), max_length=_MAX_CATALOG)
        if not d.eof:
            raise ValueError("truncated or too large")
        return json.loads(text.decode("utf-8"))
    except (lzma.LZMAError, ValueError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a valid model file: {key} is not compressed JSON") from None


def model_card(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The card a model file gets from a checkpoint (:func:`load`): a model file's own card, or
    for a training checkpoint its data, steps, epochs and best validation loss (``metrics``)."""
    if isinstance(ckpt.get("card"), dict):
        return dict(ckpt["card"])
    train = ckpt.get("train") if isinstance(ckpt.get("train"), dict) else {}
    config = train.get("config") if isinstance(train.get("config"), dict) else {}
    state = train.get("state") if isinstance(train.get("state"), dict) else {}
    best = state.get("best_val")
    return {
        "data": config.get("data"),
        "arch": ckpt["model_config"].get("arch"),
        "steps": state.get("step"),
        "epochs": state.get("epoch"),
        "metrics": {"best_val_loss": best if _is_number(best) else None, "best_step": state.get("best_step")},
    }


def save_model(
    path: str | os.PathLike, ckpt: dict[str, Any], *, half: bool = False, card: dict | None = None
) -> Path:
    """Write the model file of checkpoint dict ``ckpt`` (from :func:`load`) atomically to ``path``.

    Args:
        half: store the state dict's float32 tensors as float16 (about half the size; BatchNorm
            counters and the normalisation / fill vectors stay as they are).
        card: JSON-able dict merged over :func:`model_card` (the lead's data, steps, metrics).

    Raises:
        ValueError: a weight does not fit float16 (with ``half``), or ``card`` is not JSON-able.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in ckpt["model"].items():
        t = value.detach().cpu()
        if half and t.dtype == torch.float32:
            t = t.half()
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"weight {name} does not fit float16; export without --half")
        tensors[f"model.{name}"] = t.contiguous().clone()  # clone: no shared storage (safetensors)
    for name in MODEL_TENSORS:
        tensors[name] = ckpt[name].detach().cpu().contiguous().clone()
    entries = {k: ckpt[k] for k in MODEL_METADATA if k in ckpt and k != "card"}
    entries["card"] = {**model_card(ckpt), **(card or {})}
    try:
        meta = {k: json.dumps(v) for k, v in entries.items()}
    except (TypeError, ValueError) as e:
        raise ValueError(f"the model file's entries are not plain JSON ({e})") from None
    for key, tensor_name in COMPRESSED.items():
        if key in meta:
            packed = lzma.compress(meta.pop(key).encode("utf-8"), preset=6)
            tensors[tensor_name] = torch.frombuffer(bytearray(packed), dtype=torch.uint8).clone()
    meta.update(format=MODEL_FORMAT, version=str(MODEL_VERSION), dtype="float16" if half else "float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_resumable(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """``ValueError`` (one line) unless ``ckpt`` (from :func:`load`) holds a training state that
    ``train --resume`` can continue: ``train`` with ``config``, ``optimizer`` and ``state`` dicts,
    and ``weights`` ``(C,)`` (the loss weights of the predicted continuous columns)."""
    if ckpt.get("format") == MODEL_FORMAT:
        raise ValueError(
            f"{path} is a model file (weights only, no training state) and cannot be resumed; "
            "resume from the run's last.pt"
        )
    train = ckpt.get("train")
    problem = None
    if not isinstance(train, dict):
        problem = f"train is {_kind(train)}, not a dict"
    else:
        for key in ("config", "optimizer", "state"):
            if not isinstance(train.get(key), dict):
                problem = f"train.{key} is {_kind(train.get(key))}, not a dict"
                break
        else:
            if not isinstance(train["optimizer"].get("state"), dict) or not isinstance(
                train["optimizer"].get("param_groups"), list
            ):
                problem = "train.optimizer is not an optimiser state dict"
    if problem is None:
        n = len(registry(ckpt).continuous)
        problem = _tensor_problem(ckpt.get("weights"), "weights", (n,), floating=True)
    if problem:
        raise ValueError(f"{path} cannot be resumed: {problem}")


def _kind(value: object) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _tensor_problem(value: object, key: str, shape: tuple[int, ...], *, floating: bool) -> str | None:
    """Why ``value`` is not a tensor of ``shape`` (floating point or integer), or None."""
    if not isinstance(value, torch.Tensor):
        return f"{key} is {_kind(value)}, not a tensor"
    if value.is_floating_point() != floating or value.is_complex() or value.dtype == torch.bool:
        return (
            f"{key} has dtype {value.dtype}, expected {'a floating point' if floating else 'an integer'} type"
        )
    if tuple(value.shape) != shape:
        return f"{key} has shape {tuple(value.shape)}, expected {shape}"
    if floating and not bool(torch.isfinite(value).all()):
        return f"{key} holds NaN or Inf"
    return None


def _fields_problem(values: object, cls: type, key: str) -> str | None:
    """Why ``values`` is not a dict of ``cls``'s dataclass fields (a subset), or None."""
    if not isinstance(values, dict):
        return f"{key} is {_kind(values)}, not a dict"
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in values if k not in names)
    if unknown:
        return f"{key} has unknown field(s) {', '.join(unknown)}"
    return None


def _features_problem(values: object) -> str | None:
    """Why ``values`` is not a :class:`FeatureConfig` dict, or None."""
    problem = _fields_problem(values, FeatureConfig, "features")
    if problem:
        return problem
    for k in ("sample_rate", "n_fft", "hop_length", "n_mels"):
        if k in values and not (_is_int(values[k]) and values[k] >= 1):
            return f"features.{k} must be an integer >= 1, got {values[k]!r}"
    if "fmin" in values and not (_is_number(values["fmin"]) and values["fmin"] >= 0):
        return f"features.fmin must be a number >= 0, got {values['fmin']!r}"
    if "log_floor" in values and not (_is_number(values["log_floor"]) and values["log_floor"] > 0):
        return f"features.log_floor must be a number > 0, got {values['log_floor']!r}"
    fmax = values.get("fmax")
    if fmax is not None and not (_is_number(fmax) and fmax > 0):
        return f"features.fmax must be a number > 0 or None, got {fmax!r}"
    return None


def _model_config_problem(values: object) -> str | None:
    problem = _fields_problem(values, ModelConfig, "model_config")
    if problem:
        return problem
    sizes = values.get("categorical_sizes", [])
    if (
        not isinstance(values.get("arch", ""), str)
        or not _is_int(values.get("n_continuous", 0))
        or not isinstance(sizes, list)
        or not all(_is_int(k) for k in sizes)
        or not _is_int(values.get("freeze", 0))
        or not _is_number(values.get("dropout", 0.0))
    ):
        return "model_config has a field of the wrong type"
    try:
        ModelConfig(**values).check()
    except ValueError as e:
        return f"model_config: {e}"
    return None


def _registry_problem(text: object, key: str) -> tuple[ParamRegistry | None, str | None]:
    """``(registry, None)`` for a valid registry JSON text, else ``(None, why)``."""
    if not isinstance(text, str):
        return None, f"{key} is {_kind(text)}, not a JSON string"
    try:
        reg = ParamRegistry.from_json(text)
    except ValueError as e:
        return None, f"{key}: {e}"
    for want, specs in (("continuous", reg.continuous), ("categorical", reg.categorical)):
        for s in specs:
            ok = (
                isinstance(s.name, str)
                and s.kind == want
                and all(_is_number(v) for v in (s.min, s.max, s.default))
                and s.min <= s.max
                and isinstance(s.integer, bool)
                and isinstance(s.control, bool)
                and all(isinstance(o, str) for o in s.options)
            )
            if not ok:
                return None, f"{key}: parameter {str(s.name)[:60]!r} is not a valid {want} entry"
            if want == "categorical" and s.n_options > 1_000_000:
                return None, f"{key}: parameter {s.name!r} has {s.n_options} options"
    return reg, None


def _problem(ckpt: dict[str, Any]) -> str | None:
    """Why a checkpoint dict (with every REQUIRED key) is unusable, or None."""
    problem = _model_config_problem(ckpt["model_config"])
    if problem:
        return problem
    model = ckpt["model"]
    if not isinstance(model, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()
    ):
        return "model is not a state dict of tensors"
    reg, problem = _registry_problem(ckpt["registry_json"], "registry_json")
    if problem:
        return problem
    full, problem = _registry_problem(ckpt["full_registry_json"], "full_registry_json")
    if problem:
        return problem
    for s in reg.specs:
        if s.name not in full or full.locate(s.name)[0] != s.kind:
            return f"registry_json: parameter {s.name!r} is not a {s.kind} column of full_registry_json"
    config = ckpt["model_config"]
    if config.get("n_continuous", 0) != len(reg.continuous) or list(config.get("categorical_sizes", [])) != [
        s.n_options for s in reg.categorical
    ]:
        return "model_config does not match the parameters of registry_json"
    problem = _features_problem(ckpt["features"])
    if problem:
        return problem
    feats = FeatureConfig(**ckpt["features"])
    frames = ckpt["input_frames"]
    if not _is_int(frames) or frames < 1:
        return f"input_frames must be an integer >= 1, got {frames!r}"
    if (frames - 1) * feats.hop_length > 60 * feats.sample_rate:
        return f"input_frames {frames} is more than 60 s of audio"
    for key in ("norm_mean", "norm_std"):
        problem = _tensor_problem(ckpt[key], key, (feats.n_mels,), floating=True)
        if problem:
            return problem
    if not bool((ckpt["norm_std"] > 0).all()):
        return "norm_std must be > 0"
    problem = _tensor_problem(
        ckpt["fill_continuous"], "fill_continuous", (len(full.continuous),), floating=True
    ) or _tensor_problem(
        ckpt["fill_categorical"], "fill_categorical", (len(full.categorical),), floating=False
    )
    if problem:
        return problem
    for key, kind in (("wavetables_json", str), ("render_settings", dict), ("baseline", dict)):
        if key in ckpt and not isinstance(ckpt[key], kind):
            return f"{key} is {_kind(ckpt[key])}, not a {kind.__name__}"
    for key, value in ckpt.get("render_settings", {}).items():
        if key in ("render_duration_s", "note_duration_s", "velocity") and not _is_number(value):
            return f"render_settings.{key} must be a number, got {value!r}"
    return None


def build_model(ckpt: dict[str, Any]) -> ParamNet:
    """The network of a checkpoint with its weights loaded (``ValueError`` if they do not fit)."""
    try:
        model = ParamNet(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"the checkpoint's weights do not fit its model configuration ({first[:160]})"
        ) from None
    return model


def registry(ckpt: dict[str, Any]) -> ParamRegistry:
    """The predicted columns, in the model's output order."""
    return ParamRegistry.from_json(ckpt["registry_json"])


def features(ckpt: dict[str, Any]) -> FeatureConfig:
    """The log-mel settings the model was trained with."""
    return FeatureConfig(**ckpt["features"])


def wavetables(ckpt: dict[str, Any]):
    """The wavetable catalog of the training data (``WavetableCatalog``); ``ValueError`` if the
    checkpoint has none."""
    from vitalmatch.synth.wavetables import WavetableCatalog

    text = ckpt.get("wavetables_json") or ""
    if not text:
        raise ValueError("the checkpoint holds no wavetable catalog (trained on a dataset without one)")
    return WavetableCatalog.from_json_data(json.loads(text))
