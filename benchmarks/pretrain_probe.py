"""Linear-probe and kNN AUC of a pretrained backbone on a labelled dataset it did not hear.

Used to choose the pretraining objective (docs/pretraining.md) without touching the mission
set: embed every recording of a held-out PhysioNet database with the frozen backbone (mean
of the pooled embedding over 6 s chunks), then score normal vs abnormal by stratified
5-fold cross-validation of a logistic regression and of a 15-nearest-neighbour vote on the
standardised embeddings. ``random`` as a backbone path scores a freshly initialised backbone.

    python benchmarks/pretrain_probe.py --config configs/heartbeat.yaml \
        --data ../shared/data/physionet-2016/training-b --layout physionet2016 \
        runs/cmp-ssl/backbone.safetensors runs/cmp-both/backbone.safetensors random
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stetho.config import load_config, resolve_config
from stetho.data.audio import chunk, read_audio
from stetho.data.readers import read_dataset
from stetho.models.pretrained import load_pretrained_backbone
from stetho.pretrain.encoder import Encoder, build_backbone


def embed(path: str, frame, audio, chunk_s: float = 6.0) -> np.ndarray:
    """One row per recording: the mean pooled embedding over its ``chunk_s`` chunks."""
    if path == "random":
        torch.manual_seed(0)
        backbone = build_backbone("heartnet", width=16)
    else:
        backbone = load_pretrained_backbone(path, backbone="heartnet", audio_config=audio)
    encoder = Encoder(backbone=backbone, audio=audio).eval()
    rows = []
    n = int(chunk_s * audio.sample_rate)
    with torch.inference_mode():
        for file in frame["path"]:
            x = read_audio(file, sample_rate=audio.sample_rate, min_duration_s=0.0).samples
            chunks = chunk(x, chunk_samples=n)
            rows.append(encoder(torch.from_numpy(np.stack(chunks))).mean(0).numpy())
    return np.stack(rows)


def scores(features: np.ndarray, y: np.ndarray, seeds: int = 3) -> dict[str, float]:
    """Cross-validated AUC of a linear probe and of a kNN vote (mean over ``seeds`` splits)."""
    out: dict[str, list[float]] = {"linear_auc": [], "knn_auc": []}
    for seed in range(seeds):
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        for key, model in (
            ("linear_auc", LogisticRegression(C=0.1, max_iter=2000)),
            ("knn_auc", KNeighborsClassifier(15)),
        ):
            pipe = make_pipeline(StandardScaler(), model)
            p = cross_val_predict(pipe, features, y, cv=cv, method="predict_proba")[:, 1]
            out[key].append(float(roc_auc_score(y, p)))
    return {k: round(float(np.mean(v)), 4) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="+")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, action="append")
    parser.add_argument("--layout", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(1)
    audio = resolve_config(load_config(args.config))[0].audio
    for data in args.data:
        frame = read_dataset(data, layout=args.layout)
        frame = frame[frame["label"].isin(["normal", "abnormal"])].reset_index(drop=True)
        y = (frame["label"] == "abnormal").to_numpy().astype(int)
        for path in args.backbones:
            result = {"data": data, "backbone": path, "n": len(y), "abnormal": int(y.sum())}
            result |= scores(embed(path, frame, audio), y)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
