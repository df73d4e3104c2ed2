"""Attribution methods, by name: Grad-CAM, occlusion, integrated gradients.

Each method maps a batch of model inputs ``(B, 1, n_mels, frames)`` to ``(B, n_mels, frames)``
attributions of one class's score (see :mod:`stetho.explain`). A method is a function with
the signature of :class:`AttributionMethod`; :func:`register_method` adds one under a name and
:func:`get_method` looks a name up, refusing an unknown one with the list of known ones.

How costly each method is, in forward-pass equivalents of one chunk, is given by its
registered ``cost`` function, so callers can say in advance how long an explanation takes
(:func:`forward_passes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, Occlusion

from stetho.models import HeartSoundClassifier

ScoreFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MethodSettings:
    """The knobs of the built-in methods.

    Attributes:
        occlusion_window: occlusion patch as ``(mel bands, seconds)``; patches overlap by half.
        ig_steps: integration steps of integrated gradients.
        show_progress: show a progress bar inside one recording's occlusion (Captum's tqdm).
    """

    occlusion_window: tuple[int, float] = (8, 0.25)
    ig_steps: int = 32
    show_progress: bool = False

    def __post_init__(self) -> None:
        bands, seconds = self.occlusion_window
        if int(bands) < 1 or not seconds > 0:
            raise ValueError(
                f"occlusion_window={self.occlusion_window}: expected (mel bands >= 1, seconds > 0)"
            )
        if int(self.ig_steps) < 1:
            raise ValueError(f"ig_steps={self.ig_steps}: expected at least 1 step")

    def occlusion_frames(self, model: HeartSoundClassifier) -> int:
        """The occlusion patch's length in frames of ``model``'s input."""
        fe = model.frontend
        return max(1, round(self.occlusion_window[1] * int(fe.sample_rate) / int(fe.hop)))


class AttributionMethod(Protocol):
    """``(model, spec (B, 1, M, T), extra, target, loss_function, settings) -> (B, M, T)``."""

    def __call__(
        self,
        model: HeartSoundClassifier,
        spec: torch.Tensor,
        extra: torch.Tensor | None,
        *,
        target: int,
        loss_function: str,
        settings: MethodSettings,
    ) -> torch.Tensor: ...


#: ``(model, settings, n_mels, frames) -> forward-pass equivalents for one chunk``.
CostFn = Callable[[HeartSoundClassifier, MethodSettings, int, int], float]


@dataclass(frozen=True)
class _Entry:
    method: AttributionMethod
    cost: CostFn
    label: str


_REGISTRY: dict[str, _Entry] = {}


def register_method(name: str, method: AttributionMethod, *, cost: CostFn, label: str) -> None:
    """Make ``method`` available under ``name`` (``label`` titles its figure rows).

    Refuses a name already taken, so a plug-in cannot silently replace a built-in.
    """
    if name in _REGISTRY:
        raise ValueError(f"attribution method {name!r} is already registered")
    _REGISTRY[name] = _Entry(method=method, cost=cost, label=label)


def method_names() -> tuple[str, ...]:
    """Every registered method's name, built-ins first."""
    return tuple(_REGISTRY)


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown attribution method {name!r}: expected one of {list(_REGISTRY)}"
        ) from None


def get_method(name: str) -> AttributionMethod:
    """The method registered as ``name``; ``ValueError`` listing the known names otherwise."""
    return _entry(name).method


def method_label(name: str) -> str:
    """Human-readable name of a method (the name itself when it is not registered)."""
    return _REGISTRY[name].label if name in _REGISTRY else name


def forward_passes(
    name: str, model: HeartSoundClassifier, settings: MethodSettings, *, n_mels: int, frames: int
) -> float:
    """Forward-pass equivalents (a backward pass counts as two) ``name`` costs on one chunk."""
    return float(_entry(name).cost(model, settings, n_mels, frames))


# --- scores --------------------------------------------------------------------------------


def class_scores(logits: torch.Tensor, loss_function: str) -> torch.Tensor:
    """``(B, n_classes)`` logits -> the per-class score attributed.

    Log-probability for cross-entropy models (evidence for a class relative to the others,
    which a raw logit is not); the logit (log-odds) for BCE models.
    """
    return logits if loss_function == "BCE" else torch.log_softmax(logits, dim=-1)


def _score_fn(model: HeartSoundClassifier, target: int, loss_function: str) -> ScoreFn:
    def score(spec: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return class_scores(model.forward_spec(spec, extra), loss_function)[:, target]

    return score


def _flat_baseline(spec: torch.Tensor) -> torch.Tensor:
    """Each chunk's mean level everywhere: "no evidence" at the chunk's own loudness."""
    return spec.mean(dim=(1, 2, 3), keepdim=True).expand_as(spec).contiguous()


# --- Grad-CAM ------------------------------------------------------------------------------


def gradcam(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
    settings: MethodSettings,
) -> torch.Tensor:
    """``(B, 1, M, T)`` -> ``(B, M, T)`` Grad-CAM on the last feature map."""
    with torch.enable_grad():
        fmap = model.forward_features(spec)
        score = class_scores(model.forward_head(fmap, extra), loss_function)[:, target]
        (grads,) = torch.autograd.grad(score.sum(), fmap)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * fmap).sum(dim=1)).detach()  # (B, f, t)
    rows = strided_interp(cam.shape[1], spec.shape[2]).to(cam)
    cols = strided_interp(cam.shape[2], spec.shape[3]).to(cam)
    return rows @ cam @ cols.T


def strided_interp(n_cells: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_cells)`` linear interpolation from a strided feature axis to the input axis.

    A "same"-padded convolution of stride ``s`` centres output cell ``i`` on input position
    ``s * i`` (not ``s * i + (s - 1) / 2`` as ``F.interpolate`` assumes), and a stack of them
    keeps that alignment; input position ``y`` therefore sits at cell coordinate ``y / s``.
    Getting this wrong shifts HeartNet's Grad-CAM by 7.5 mel bands (about 115 Hz).
    """
    pos = (torch.arange(n_out, dtype=torch.float64) * (n_cells / n_out)).clamp(max=n_cells - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n_cells - 1)
    w = pos - lo
    out = torch.zeros(n_out, n_cells, dtype=torch.float64)
    idx = torch.arange(n_out)
    out.index_put_((idx, lo), 1 - w, accumulate=True)
    out.index_put_((idx, hi), w, accumulate=True)
    return out


def _gradcam_cost(model: HeartSoundClassifier, s: MethodSettings, n_mels: int, t: int) -> float:
    return 3.0  # one forward and one backward pass


# --- occlusion -----------------------------------------------------------------------------


def _occlusion_patch(
    model: HeartSoundClassifier, settings: MethodSettings, n_mels: int, frames: int
) -> tuple[int, int, int, int]:
    """Patch size (bands, frames) and its strides (half a patch), for the method and its
    cost alike."""
    bands = min(int(settings.occlusion_window[0]), n_mels)
    width = min(settings.occlusion_frames(model), frames)
    return bands, width, max(1, bands // 2), max(1, width // 2)


def occlusion(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
    settings: MethodSettings,
) -> torch.Tensor:
    """``(B, 1, M, T)`` -> ``(B, M, T)``: score drop when a patch is set to the mean level."""
    bands, frames, sb, sf = _occlusion_patch(model, settings, spec.shape[2], spec.shape[3])
    occ = Occlusion(_score_fn(model, target, loss_function))
    attr = occ.attribute(
        spec,
        sliding_window_shapes=(1, bands, frames),
        strides=(1, sb, sf),
        baselines=_flat_baseline(spec),
        additional_forward_args=(extra,) if extra is not None else None,
        perturbations_per_eval=16,
        show_progress=settings.show_progress,
    )
    return attr[:, 0].detach()


def _occlusion_cost(model: HeartSoundClassifier, s: MethodSettings, n_mels: int, t: int) -> float:
    bands, frames, sb, sf = _occlusion_patch(model, s, n_mels, t)
    return float((1 + (n_mels - bands + sb - 1) // sb) * (1 + (t - frames + sf - 1) // sf) + 1)


# --- integrated gradients ------------------------------------------------------------------


def integrated_gradients(
    model: HeartSoundClassifier,
    spec: torch.Tensor,
    extra: torch.Tensor | None,
    *,
    target: int,
    loss_function: str,
    settings: MethodSettings,
) -> torch.Tensor:
    """``(B, 1, M, T)`` -> ``(B, M, T)`` integrated gradients, averaged over a small tile."""
    ig = IntegratedGradients(_score_fn(model, target, loss_function))
    with torch.enable_grad():
        attr = ig.attribute(
            spec,
            baselines=_flat_baseline(spec),
            additional_forward_args=(extra,) if extra is not None else None,
            n_steps=int(settings.ig_steps),
            internal_batch_size=max(1, spec.shape[0]) * 8,
        )
    return tile_mean(attr.detach(), frames=ig_tile_frames(model))[:, 0]


def ig_tile_frames(model: HeartSoundClassifier) -> int:
    """Frames in integrated gradients' smoothing tile: one STFT window, rounded up to odd."""
    frames = int(model.frontend.n_fft) // int(model.frontend.hop) + 1
    return frames + 1 - frames % 2


def tile_mean(attr: torch.Tensor, *, frames: int, bands: int = 3) -> torch.Tensor:
    """``(B, 1, M, T)`` -> the same, averaged over a centred ``bands x frames`` tile."""
    return F.avg_pool2d(
        attr,
        (bands, frames),
        stride=1,
        padding=(bands // 2, frames // 2),
        count_include_pad=False,
    )


def _ig_cost(model: HeartSoundClassifier, s: MethodSettings, n_mels: int, t: int) -> float:
    return 3.0 * int(s.ig_steps)


register_method("gradcam", gradcam, cost=_gradcam_cost, label="Grad-CAM (last conv block)")
register_method("occlusion", occlusion, cost=_occlusion_cost, label="Occlusion")
register_method(
    "integrated_gradients", integrated_gradients, cost=_ig_cost, label="Integrated gradients"
)

#: The built-in methods.
METHODS = ("gradcam", "occlusion", "integrated_gradients")
