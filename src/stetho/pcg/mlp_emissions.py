"""A learned frame-wise emission model for the HSMM: a small multilayer perceptron.

The issue's second option: replace the logistic regression of :mod:`stetho.pcg.lr_hsmm` by a
non-linear classifier over a wider context, decoded by the same duration-aware Viterbi.  Each
frame sees Springer's four z-scored envelopes at :data:`MLP_CONTEXT_FRAMES` (+/- 200 ms at
50 Hz, every 40 ms): wide enough to take in the neighbouring sounds of a cycle at fast rates
(an infant's cycle is 300-450 ms), so the network can tell an S1 (followed by a short gap)
from an S2 (followed by a long one) and sees each sound's shape, which a linear model cannot
combine.

The network's hyper-parameters were fixed before any cross-validation: two hidden layers of
64 and 32 ReLU units (about 5 000 weights: under one per 20 training frames), L2 penalty
``1e-3``, Adam, 30 epochs over every second annotated frame (neighbouring frames at 50 Hz are
nearly duplicates), seed 0.  One choice is made from data, and only on training patients: the
inputs (:data:`INPUT_CHOICES`: Springer's four envelopes, or those and the 125-250 Hz band that
carries S2's higher pitch).  :func:`select_and_fit` fits both on three quarters of the training
patients, keeps the one of lower frame-wise log-loss on the remaining quarter (patient-grouped)
and refits it on all of them; the benchmark runs this inside each cross-validation fold, and the
shipped model is the same procedure run on all 100 dev patients.

Training uses scikit-learn's :class:`~sklearn.neural_network.MLPClassifier`; inference is a few
numpy matrix products, so no scikit-learn object is kept.  The model is stored as a plain
``.npz`` of arrays (loaded with ``allow_pickle=False``): the shipped
``data/mlp_emissions.npz`` is fitted on all 100 CirCor dev patients
(``python benchmarks/bench_pcg.py --train``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from stetho.pcg.lr_hsmm import Annotation, circor_recordings, read_circor_tsv, training_frames
from stetho.pcg.segmentation import DIASTOLE, S1, S2, SYSTOLE

#: Frame offsets each frame sees: +/- 200 ms every 40 ms (fixed a priori, see the docstring).
MLP_CONTEXT_FRAMES = tuple(range(-10, 11, 2))

#: Hidden layer sizes, L2 penalty, epochs and frame stride of the training (fixed a priori).
HIDDEN_UNITS = (64, 32)
L2_PENALTY = 1e-3
EPOCHS = 30
FRAME_STRIDE = 2

#: Envelope columns the features are built from, by default: Springer's four and the
#: 125-250 Hz band (:data:`stetho.pcg.lr_hsmm.FEATURE_ENVELOPES`).
MLP_ENVELOPES = 5

#: The inputs :func:`select_and_fit` chooses among: name -> number of leading envelope columns.
INPUT_CHOICES = {"springer-4": 4, "with-125-250-hz": 5}

#: File name of the shipped model inside the package.
MLP_MODEL_FILE = "mlp_emissions.npz"


@dataclass(frozen=True)
class MLPEmissionModel:
    """A ReLU perceptron from frame features to the four states.

    ``mean`` and ``scale`` standardise the features; ``weights[k]`` (inputs, outputs) and
    ``biases[k]`` are the layers, the last giving the four state logits in state order;
    ``log_prior`` (4,) is the log share of each state in the training frames.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    mean: np.ndarray
    scale: np.ndarray
    log_prior: np.ndarray
    context: tuple[int, ...] = MLP_CONTEXT_FRAMES
    n_envelopes: int = MLP_ENVELOPES

    def log_posterior(self, features: np.ndarray) -> np.ndarray:
        """``log P(state | features)``, (frames, 4)."""
        h = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w + b, 0.0)
        logits = h @ self.weights[-1] + self.biases[-1]
        return logits - special.logsumexp(logits, axis=1, keepdims=True)

    def save(self, path: str | Path) -> None:
        """Write the model as a plain ``.npz`` (no pickled objects)."""
        arrays: dict[str, Any] = {
            "n_layers": np.int64(len(self.weights)),
            "mean": self.mean,
            "scale": self.scale,
            "log_prior": self.log_prior,
            "context": np.asarray(self.context, dtype=np.int64),
            "n_envelopes": np.int64(self.n_envelopes),
        }
        arrays |= {f"w{k}": w for k, w in enumerate(self.weights)}
        arrays |= {f"b{k}": b for k, b in enumerate(self.biases)}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLPEmissionModel:
        """Read a model written by :meth:`save`; raises ``ValueError`` for a malformed file."""
        with np.load(path, allow_pickle=False) as f:
            required = {"n_layers", "mean", "scale", "log_prior", "context", "n_envelopes"}
            missing = required - set(f.files)
            if missing:
                raise ValueError(f"{path}: not an MLP emission model, missing {sorted(missing)}")
            n_layers = int(f["n_layers"])
            names = [f"{p}{k}" for k in range(n_layers) for p in ("w", "b")]
            absent = sorted(set(names) - set(f.files))
            if absent:
                raise ValueError(f"{path}: not an MLP emission model, missing {absent}")
            model = cls(
                weights=tuple(f[f"w{k}"].astype(np.float64) for k in range(n_layers)),
                biases=tuple(f[f"b{k}"].astype(np.float64) for k in range(n_layers)),
                mean=f["mean"].astype(np.float64),
                scale=f["scale"].astype(np.float64),
                log_prior=f["log_prior"].astype(np.float64),
                context=tuple(int(c) for c in f["context"]),
                n_envelopes=int(f["n_envelopes"]),
            )
        _check_shapes(model, path)
        return model


def _check_shapes(model: MLPEmissionModel, path: str | Path) -> None:
    n_in = model.n_envelopes * len(model.context)
    shapes = [w.shape for w in model.weights]
    ok = (
        len(shapes) >= 1
        and model.mean.shape == (n_in,)
        and model.scale.shape == (n_in,)
        and np.all(model.scale > 0)
        and shapes[0][0] == n_in
        and shapes[-1][1] == 4
        and all(a[1] == b[0] for a, b in zip(shapes[:-1], shapes[1:], strict=True))
        and all(b.shape == (w.shape[1],) for w, b in zip(model.weights, model.biases, strict=True))
        and model.log_prior.shape == (4,)
    )
    if not ok:
        raise ValueError(f"{path}: layer shapes {shapes} do not fit {n_in} features and 4 states")


def fit_mlp_emissions(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    context: Sequence[int] = MLP_CONTEXT_FRAMES,
    n_envelopes: int = MLP_ENVELOPES,
    seed: int = 0,
) -> MLPEmissionModel:
    """Fit the perceptron on frames (n, features) with state labels (n,) in 0-3.

    ``features`` are :func:`stetho.pcg.lr_hsmm.training_frames` of the first ``n_envelopes``
    columns at the ``context`` offsets.  Every :data:`FRAME_STRIDE`-th frame is used; the
    hyper-parameters are the module constants.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    labels = np.asarray(labels)
    if set(np.unique(labels)) != {S1, SYSTOLE, S2, DIASTOLE}:
        raise ValueError("fit_mlp_emissions: the labels must contain all four states")
    x = np.asarray(features, dtype=np.float64)[::FRAME_STRIDE]
    y = labels[::FRAME_STRIDE]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    net = MLPClassifier(
        hidden_layer_sizes=HIDDEN_UNITS,
        alpha=L2_PENALTY,
        batch_size=256,
        max_iter=EPOCHS,
        random_state=seed,
        early_stopping=False,
    )
    with warnings.catch_warnings():
        # A fixed epoch budget is the design; not converging to sklearn's tol is expected.
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit((x - mean) / scale, y)
    if list(net.classes_) != [S1, SYSTOLE, S2, DIASTOLE]:
        raise ValueError("fit_mlp_emissions: unexpected class order")
    prior = np.bincount(labels, minlength=4) / len(labels)
    return MLPEmissionModel(
        weights=tuple(np.asarray(w, dtype=np.float64) for w in net.coefs_),
        biases=tuple(np.asarray(b, dtype=np.float64) for b in net.intercepts_),
        mean=mean,
        scale=scale,
        log_prior=np.log(prior),
        context=tuple(context),
        n_envelopes=n_envelopes,
    )


@functools.cache
def default_mlp_emission_model() -> MLPEmissionModel:
    """The shipped model (fitted on all 100 CirCor dev patients), read once."""
    with resources.as_file(resources.files("stetho.pcg") / "data" / MLP_MODEL_FILE) as path:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the MLP emission model is missing; fit it with "
                "`python benchmarks/bench_pcg.py --train`"
            )
        return MLPEmissionModel.load(path)


def select_and_fit(
    items: Sequence[tuple[np.ndarray, Annotation]], groups: Sequence[str]
) -> tuple[MLPEmissionModel, dict[str, float]]:
    """Choose the inputs on an inner patient-grouped split, then fit on all ``items``.

    ``items`` are (z-scored envelopes (frames, 5), annotation) pairs and ``groups`` their
    patient ids.  Returns the model and the inner validation log-loss of each
    :data:`INPUT_CHOICES` entry.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupKFold

    groups_arr = np.asarray(groups)
    if len(items) != len(groups_arr) or len(set(groups_arr.tolist())) < 4:
        raise ValueError("select_and_fit: need one patient id per item and >= 4 patients")
    inner_train, inner_val = next(
        GroupKFold(n_splits=4).split(np.zeros(len(items)), groups=groups_arr)
    )
    losses: dict[str, float] = {}
    for name, n_env in INPUT_CHOICES.items():

        def frames(idx: np.ndarray, n_env: int = n_env) -> tuple[np.ndarray, np.ndarray]:
            return training_frames(
                (items[i] for i in idx), context=MLP_CONTEXT_FRAMES, n_envelopes=n_env
            )

        model = fit_mlp_emissions(*frames(inner_train), n_envelopes=n_env)
        x, y = frames(inner_val)
        losses[name] = float(log_loss(y, np.exp(model.log_posterior(x)), labels=[0, 1, 2, 3]))
    n_env = INPUT_CHOICES[min(losses, key=lambda k: losses[k])]
    frames_all = training_frames(items, context=MLP_CONTEXT_FRAMES, n_envelopes=n_env)
    return fit_mlp_emissions(*frames_all, n_envelopes=n_env), losses


def train_mlp_emissions(data_dir: str | Path, out: str | Path | None = None) -> MLPEmissionModel:
    """Choose and fit the perceptron (:func:`select_and_fit`) on every annotated CirCor
    recording in ``data_dir``.

    With ``out``, the model is also written there (:meth:`MLPEmissionModel.save`).
    """
    from stetho.data.audio import read_audio
    from stetho.pcg.analysis import recording_envelopes

    items, groups = [], []
    for audio_path, tsv, patient in circor_recordings(data_dir):
        audio = read_audio(audio_path)
        z = recording_envelopes(audio.samples, audio.sample_rate).features
        items.append((z, read_circor_tsv(tsv)))
        groups.append(patient)
    model, _ = select_and_fit(items, groups)
    if out is not None:
        model.save(out)
    return model
