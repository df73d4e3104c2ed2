"""Why a recording was given a class: attributions over time x frequency on the log-mel input.

Three methods, each answering "which seconds and which frequency bands raised the score of
class *c*" on the ``(n_mels, frames)`` grid the model actually sees:

``gradcam``
    Grad-CAM (Selvaraju et al., ICCV 2017) on the backbone's last feature map
    (``model.forward_features``): channel weights are the spatially averaged gradients, the
    map is ``ReLU(sum_c w_c A_c)`` interpolated linearly to the input grid. Cheap (one forward
    and one backward pass) and never negative, but coarse: a cell of HeartNet's last block is
    16 mel bands x 8 frames (about 245 Hz x 130 ms for the default config) and its receptive
    field spans about a second, so the map is a broad blob around the evidence. Not among the
    default methods: in the synthetic-truth test (``tests/test_explain.py``) 55 % of its
    positive mass lies within one cell of the evidence (a region of 17 % of the map), against
    98 % for occlusion within one patch (16 %) and 68 % for integrated gradients within half a
    tile (3 %).
``occlusion``
    Occlusion (Zeiler & Fergus, ECCV 2014; Captum's ``Occlusion``): a ``window_bands`` x
    ``window_s`` patch is set to the chunk's mean level and the drop in score is credited to
    that patch. Model-agnostic and easy to read ("hiding this patch lowers the murmur score"),
    signed, at patch resolution; costs one forward pass per patch.
``integrated_gradients``
    Integrated gradients (Sundararajan et al., ICML 2017; Captum) from a flat baseline at the
    chunk's mean level, then averaged over a sliding tile of 3 mel bands x one STFT window
    (``n_fft / hop + 1`` frames). Neighbouring frames share most of their samples and
    neighbouring mel filters overlap, so detail finer than that tile is not in the input; at
    single-cell resolution the map is speckled with gradient noise that cancels in any sum
    (the raw map's total is the score difference, by completeness, and the tile average keeps
    it up to the edges). Signed; costs ``ig_steps`` forward and backward passes per chunk.

The score attributed is the log-probability of the class for cross-entropy models (evidence
for *c* relative to the other classes, which a raw logit is not) and the logit (log-odds) for
BCE models. Recordings are cut into the chunks the scorer uses and each chunk is explained on
its own (:mod:`stetho.explain.attribution`).

Modules: :mod:`~stetho.explain.methods` (the methods, by name: :func:`register_method`,
:func:`get_method`), :mod:`~stetho.explain.attribution` (one recording, any models),
:mod:`~stetho.explain.recording` (one recording with a loaded run: :func:`explain_with_run`),
:mod:`~stetho.explain.files` (:func:`explain_files`: figures, maps and an index, laid out as
:class:`stetho.runs.folder.ExplanationFolder`), :mod:`~stetho.explain.select`
(:func:`select_worst`), :mod:`~stetho.explain.budget` (progress, ETA and a time budget) and
:mod:`~stetho.explain.hook` (:func:`interpretations_hook`: after training, the worst-classified
validation recordings, ``logging.number_of_audios`` of them, each explained by the fold model
that did not train on it, within ``training.interpretation_budget_s`` seconds).

Cost: occlusion needs one forward pass per patch, so it dominates on long chunks. Backbones
above :data:`LARGE_MODEL_PARAMETERS` parameters get :data:`LARGE_MODEL_SETTINGS` (coarser
patches, fewer integration steps) unless the caller sets them.
"""

from stetho.explain.attribution import (
    DEFAULT_METHODS,
    LARGE_MODEL_PARAMETERS,
    LARGE_MODEL_SETTINGS,
    Attribution,
    default_settings,
    estimate_forward_passes,
    explain_recording,
    explain_waveform,
)
from stetho.explain.budget import DEFAULT_BUDGET_S, Budget, budget_from_config
from stetho.explain.files import ExplainedFile, explain_files, explanation_title, read_index
from stetho.explain.hook import interpretations_hook
from stetho.explain.methods import (
    METHODS,
    AttributionMethod,
    MethodSettings,
    get_method,
    ig_tile_frames,
    method_label,
    method_names,
    register_method,
)
from stetho.explain.plot import plot_explanation
from stetho.explain.recording import explain_with_run, fold_models, run_extras, run_probabilities
from stetho.explain.select import select_worst

__all__ = [
    "DEFAULT_BUDGET_S",
    "DEFAULT_METHODS",
    "LARGE_MODEL_PARAMETERS",
    "LARGE_MODEL_SETTINGS",
    "METHODS",
    "Attribution",
    "AttributionMethod",
    "Budget",
    "ExplainedFile",
    "MethodSettings",
    "budget_from_config",
    "default_settings",
    "estimate_forward_passes",
    "explain_files",
    "explain_recording",
    "explain_waveform",
    "explain_with_run",
    "explanation_title",
    "fold_models",
    "get_method",
    "ig_tile_frames",
    "interpretations_hook",
    "method_label",
    "method_names",
    "plot_explanation",
    "read_index",
    "register_method",
    "run_extras",
    "run_probabilities",
    "select_worst",
]
