"""Pretrained backbone files (``stetho pretrain``): safetensors weights plus the front end they
were trained with.

The file holds the backbone's ``state_dict`` (no pickle, no code) and string metadata:
``format`` (:data:`FORMAT`), ``backbone`` (registry name), ``width``, and the front end
(:data:`FRONTEND_KEYS`: sample rate, STFT window and hop, mel bands, frequency range,
spectrogram and waveform normalisation), plus free-form facts (objective, steps, sources).
A backbone only understands spectrograms made the way it was trained on, so
:func:`load_pretrained_backbone` refuses a different front end instead of loading silently.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from stetho.config import AUTO, AudioConfig
from stetho.io import ArtifactError, atomic_path
from stetho.models.registry import get_backbone_fn

FORMAT = "stetho-pretrained-backbone/1"

#: ``architecture.pretrained_weights: stetho:NAME`` names a backbone shipped in stetho's
#: ``models/weights/NAME.safetensors`` (its model card is ``NAME.md`` beside it).
PACKAGED_PREFIX = "stetho:"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: The packaged heart-sound backbone that ``architecture.backbone: heartnet`` with
#: ``pretrained: true`` (and no ``pretrained_weights``) loads, as ``stetho:NAME``.
DEFAULT_BACKBONE = "heartnet-pcg-v2"
#: Registry backbone -> the packaged backbone its ``pretrained: true`` means.
DEFAULT_PACKAGED = {"heartnet": DEFAULT_BACKBONE}

#: Front-end metadata key -> AudioConfig field.
FRONTEND_KEYS = {
    "sample_rate": "sample_rate",
    "n_fft": "stft_window_size",
    "hop": "hop_size",
    "n_mels": "mel_frequency_bins",
    "f_min": "minimum_frequency",
    "f_max": "maximum_frequency",
    "spectrogram_normalization": "spectrogram_normalization",
    "waveform_normalization": "waveform_normalization",
}
_FLOAT_KEYS = ("f_min", "f_max")
_TEXT_KEYS = ("spectrogram_normalization", "waveform_normalization")


class PretrainedMismatchError(ValueError):
    """The pretrained file does not fit the model asked for (backbone, width or front end)."""


class FrontEndMismatchError(PretrainedMismatchError):
    """The backbone was pretrained on spectrograms made another way than the config's."""


def frontend_metadata(audio: AudioConfig) -> dict[str, str]:
    """The front-end facts of a *resolved* audio config, as safetensors metadata strings."""
    values = {key: getattr(audio, field) for key, field in FRONTEND_KEYS.items()}
    auto = [FRONTEND_KEYS[k] for k, v in values.items() if v == AUTO]
    if auto:
        raise ValueError(
            f"audio.{', audio.'.join(auto)} still 'Auto': resolve the config "
            "(stetho.config.resolve_config) before pretraining or loading a backbone"
        )
    return {
        key: str(float(v)) if key in _FLOAT_KEYS else str(v) if key in _TEXT_KEYS else str(int(v))
        for key, v in values.items()
    }


def save_pretrained_backbone(
    backbone: nn.Module,
    path: str | Path,
    *,
    name: str,
    width: int,
    audio: AudioConfig,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``backbone``'s weights and metadata to ``path`` atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    metadata = {"format": FORMAT, "backbone": name, "width": str(int(width))}
    metadata |= frontend_metadata(audio)
    metadata |= {k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def packaged_backbones() -> list[str]:
    """Names of the backbones shipped with stetho (``stetho:NAME``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def backbone_card(name: str) -> str:
    """The model card (Markdown) of packaged backbone ``name`` (or ``stetho:NAME``)."""
    path = resolve_backbone_path(
        name if name.startswith(PACKAGED_PREFIX) else PACKAGED_PREFIX + name
    ).with_suffix(".md")
    if not path.is_file():
        raise ArtifactError(path, "the packaged backbone has no model card", "reinstall stetho")
    return path.read_text(encoding="utf-8")


def default_packaged_backbone(backbone: str) -> str | None:
    """``stetho:NAME`` that ``pretrained: true`` loads for registry backbone ``backbone``
    (``None`` where stetho packages none: timm backbones fetch ImageNet weights instead).

    A packaged default that is absent from this install is a ``ValueError`` naming the file
    and the ways out, never a silent random initialisation.
    """
    name = DEFAULT_PACKAGED.get(backbone)
    if name is None:
        return None
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise ValueError(
            f"architecture.pretrained: true loads stetho's packaged {backbone} backbone "
            f"{PACKAGED_PREFIX}{name}, but {path} is not in this install; set "
            "architecture.pretrained: false to train from random initialisation, or pretrain "
            "a backbone with `stetho pretrain` and name its file in "
            "architecture.pretrained_weights"
        )
    return PACKAGED_PREFIX + name


def resolve_backbone_path(path: str | Path) -> Path:
    """``stetho:NAME`` -> the packaged file; any other value is a path, returned as is.

    An unknown packaged name is a ``ValueError`` that lists the shipped ones.
    """
    text = str(path)
    if not text.startswith(PACKAGED_PREFIX):
        return Path(path)
    name = text[len(PACKAGED_PREFIX) :]
    shipped = packaged_backbones()
    if name not in shipped:
        raise ValueError(
            f"architecture.pretrained_weights={text!r}: stetho ships no backbone {name!r}; "
            f"shipped: {', '.join(PACKAGED_PREFIX + n for n in shipped) or 'none'} "
            "(or give the path of a file written by `stetho pretrain`)"
        )
    return WEIGHTS_DIR / f"{name}.safetensors"


def is_pretrained_backbone(path: str | Path) -> bool:
    """Whether ``path`` is a stetho pretrained-backbone file (by its metadata, not its name).

    A ``stetho:NAME`` value always counts as one, so that an unknown name fails with the list
    of shipped backbones instead of reaching another loader.
    """
    if str(path).startswith(PACKAGED_PREFIX):
        return True
    try:
        read_metadata(path)
    except ArtifactError:
        return False
    return True


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a pretrained backbone file (or ``stetho:NAME``); :class:`ArtifactError`
    if unusable."""
    path = resolve_backbone_path(path)
    remedy = "pretrain a backbone with `stetho pretrain` or name the right file"
    if not path.is_file():
        raise ArtifactError(path, "no such pretrained backbone file", remedy)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ArtifactError(path, f"not a readable safetensors file ({exc})", remedy) from None
    if metadata.get("format") != FORMAT:
        raise ArtifactError(
            path,
            f"not a stetho pretrained backbone (format {metadata.get('format')!r}, expected "
            f"{FORMAT!r})",
            remedy,
        )
    missing = [k for k in ("backbone", "width", *FRONTEND_KEYS) if k not in metadata]
    if missing:
        raise ArtifactError(path, f"metadata lacks {', '.join(missing)}", remedy)
    return metadata


def _same(key: str, stored: str, wanted: str) -> bool:
    if key in _FLOAT_KEYS:
        return math.isclose(float(stored), float(wanted), rel_tol=1e-9, abs_tol=1e-9)
    return stored == wanted


def check_frontend(metadata: dict[str, str], audio: AudioConfig, *, path: str | Path) -> None:
    """Raise :class:`FrontEndMismatchError` naming every front-end value that differs."""
    wanted = frontend_metadata(audio)
    diffs = [
        f"audio.{FRONTEND_KEYS[k]}: pretrained {metadata[k]}, config {wanted[k]}"
        for k in FRONTEND_KEYS
        if not _same(k, metadata[k], wanted[k])
    ]
    if diffs:
        raise FrontEndMismatchError(
            f"{path}: the backbone was pretrained with another front end ({'; '.join(diffs)}); "
            "set the config's audio block to the pretrained values or pretrain a backbone for "
            "this front end"
        )


def load_pretrained_backbone(
    path: str | Path, *, backbone: str, audio_config: AudioConfig, width: int | None = None
) -> nn.Module:
    """A fresh ``backbone`` carrying the weights of the pretrained file ``path``.

    ``audio_config`` is the *resolved* audio block of the model that will use it; every
    front-end value must match the file's (:class:`FrontEndMismatchError` otherwise, naming
    both values). ``width`` defaults to the file's; a different backbone name or width is a
    :class:`PretrainedMismatchError`. Unreadable files raise :class:`~stetho.io.ArtifactError`.
    Loading runs no code from the file (safetensors). ``path`` may be ``stetho:NAME``, a
    backbone shipped with stetho (:func:`packaged_backbones`).
    """
    path = resolve_backbone_path(path)
    metadata = read_metadata(path)
    if metadata["backbone"] != backbone:
        raise PretrainedMismatchError(
            f"{path}: pretrained backbone is {metadata['backbone']!r}, the config asks for "
            f"{backbone!r}; set architecture.backbone: {metadata['backbone']} or use another file"
        )
    stored_width = int(metadata["width"])
    if width is not None and width != stored_width:
        raise PretrainedMismatchError(
            f"{path}: pretrained width is {stored_width}, the config asks for {width}; set "
            f"architecture.width: {stored_width} or use another file"
        )
    check_frontend(metadata, audio_config, path=path)
    model = get_backbone_fn(backbone)(pretrained=False, pretrained_weights=None, width=stored_width)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(
            path, f"cannot read the weights ({exc})", "re-run pretraining"
        ) from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise ArtifactError(
            path,
            f"weights do not fit {backbone} width {stored_width} ({str(exc)[:300]})",
            "re-run pretraining with this stetho version",
        ) from None
    return model


def _under(key: str, layer: str) -> bool:
    return key == layer or key.startswith(layer + ".")


def transfer_layers(pretrained: nn.Module, fresh: nn.Module, layers: list[str]) -> nn.Module:
    """``fresh`` (a randomly initialised twin of ``pretrained``) carrying ``pretrained``'s
    parameters and buffers under the module paths ``layers`` (``stem``, ``stages.0``, …);
    every other tensor keeps its random initialisation.

    A path that names no tensor is a :class:`PretrainedMismatchError` listing the backbone's
    layers, so that a typo cannot silently transfer nothing.
    """
    state = pretrained.state_dict()
    unknown = [layer for layer in layers if not any(_under(k, layer) for k in state)]
    if unknown:
        known = sorted({".".join(k.split(".")[:2]) for k in state})
        raise PretrainedMismatchError(
            f"architecture.pretrained_layers: {', '.join(map(repr, unknown))} names no layer of "
            f"the {type(pretrained).__name__} backbone; its layers: {', '.join(known)}"
        )
    kept = {k: v for k, v in state.items() if any(_under(k, layer) for layer in layers)}
    fresh.load_state_dict(kept, strict=False)
    return fresh
