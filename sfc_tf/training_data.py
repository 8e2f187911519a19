"""The training set every network of the codec learns from: training-identity crops of an identity-folder dataset
(LFW here, VGGFace2 in the paper) with their FaceNet features, optionally mirrored (each mirror image with its
own feature) and joined by extra faces framed like LFW (``extra_faces``), minus held-out identities."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

from sfc_tf import data, extra_faces, facenet


@dataclasses.dataclass
class TrainingSet:
    crops: np.ndarray                 # (N, 160, 160, 3) uint8
    features: np.ndarray              # (N, D) float32, FaceNet features of the crops (not yet base-layer decoded)
    masks: np.ndarray | None          # (N, 160, 160) uint8, 1 on pixels of the image (None: every pixel)
    held_out_crops: np.ndarray        # crops of the held-out identities (never trained on)
    held_out_features: np.ndarray
    description: dict                 # what went in, for meta.json


def assemble(data_dir: str | os.PathLike, identities_file: str | None = None, align: str = "mtcnn",
             flip: bool = False, extra_dir: str | os.PathLike | None = None, validation_fraction: float = 0.05,
             seed: int = 0, extractor=None) -> TrainingSet:
    """Training-identity faces of ``data_dir`` (+ mirrors, + extra faces); ``validation_fraction`` of the
    identities, drawn with ``seed``, held out."""
    identities = data.read_identity_list(identities_file) if identities_file else None
    items = data.list_images(data_dir, identities)
    names = sorted({path.split("/")[0] for path, _ in items})
    held = set(np.random.default_rng(seed).permutation(names)[:int(len(names) * validation_fraction)])
    train_paths = [path for path, _ in items if path.split("/")[0] not in held]
    held_paths = [path for path, _ in items if path.split("/")[0] in held]
    extractor = extractor or facenet.FeatureExtractor()
    tag = f"{facenet.DEFAULT_KEY}-fixed"
    everything = data.load_faces(data_dir, [p for p, _ in items], align, extractor, tag)
    faces, held_faces = everything.subset(train_paths), everything.subset(held_paths)
    crops, features, masks = [faces.crops], [faces.features], [np.ones(faces.crops.shape[:3], np.uint8)]
    description = {"data_dir": str(data_dir), "identities": identities_file, "align": align,
                   "images": len(train_paths), "held_out_identities": sorted(held), "held_out_images": len(held_paths),
                   "facenet": facenet.DEFAULT_KEY, "flip": flip}
    if flip:
        mirrored = data.flipped_features(data_dir, everything, align, extractor, tag)
        index = everything.index()
        crops.append(faces.crops[:, :, ::-1])
        features.append(mirrored[[index[p] for p in train_paths]])
        masks.append(masks[0])
    if extra_dir:
        extra = extra_faces.load(pathlib.Path(extra_dir).expanduser(), extractor)
        crops.append(extra.crops)
        features.append(extra.features)
        masks.append(extra.masks)
        if flip:
            crops.append(extra.crops[:, :, ::-1])
            features.append(extra.flipped_features)
            masks.append(extra.masks[:, :, ::-1])
        description.update(extra_faces=str(extra_dir), extra_images=len(extra.paths),
                           extra_framing={"margin_fraction": extra_faces.MARGIN_FRACTION,
                                          "pad_fraction": extra_faces.PAD_FRACTION})
    description["examples"] = int(sum(len(c) for c in crops))
    return TrainingSet(np.ascontiguousarray(np.concatenate(crops)), np.concatenate(features),
                       np.ascontiguousarray(np.concatenate(masks)) if extra_dir else None,
                       held_faces.crops, held_faces.features, description)
