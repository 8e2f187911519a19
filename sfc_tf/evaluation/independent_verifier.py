"""A face verifier independent of FaceNet, to score reconstructions trained against FaceNet.

A reconstructor trained with the identity term (``--identity_weight``) is optimised against the very FaceNet that
scores it, so FaceNet's verdict can be won with patterns no other verifier (or person) reads as the face. dlib's
ResNet face descriptor (``face_recognition_models``: trained on other data with another architecture, 99.38 % on
LFW) gives a second opinion. Every face, original or rebuilt, is aligned with the five landmarks found on the
original (a reconstruction is meant to sit in the original's geometry), into dlib's 150x150 chip.
"""

from __future__ import annotations

import numpy as np

from sfc_tf.errors import SfcError

INSTALL_HINT = "pip install dlib-bin face_recognition_models (the Makefile's set-up installs them)"
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's defaults for its face descriptor
FALLBACK_BOX = (20, 20, 140, 140)  # the face of a 160x160 facenet crop, when dlib's detector finds none


class DlibVerifier:
    """Aligned 160x160 uint8 RGB crops -> 128-d dlib face descriptors (compared by L2 distance)."""

    def __init__(self):
        try:
            import dlib
            import face_recognition_models as models
        except ImportError as exc:
            raise SfcError(f"the independent verifier needs dlib: {INSTALL_HINT}") from exc
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def landmarks(self, crops: np.ndarray) -> tuple[list, int]:
        """Five-point landmarks of each crop (largest detection, or ``FALLBACK_BOX``) and the number of fallbacks."""
        found, fallbacks = [], 0
        for crop in crops:
            boxes = self.detector(crop, 1)
            if len(boxes):
                box = max(boxes, key=lambda b: b.area())
            else:
                fallbacks += 1
                box = self._dlib.rectangle(*FALLBACK_BOX)
            found.append(self.shapes(crop, box))
        return found, fallbacks

    def __call__(self, crops: np.ndarray, landmarks: list) -> np.ndarray:
        """Descriptors of ``crops``, each aligned with the given landmarks (those of the matching original)."""
        if len(crops) != len(landmarks):
            raise ValueError(f"{len(crops)} crops but {len(landmarks)} landmark sets")
        chips = [
            self._dlib.get_face_chip(np.ascontiguousarray(crop), shape, CHIP_SIZE, CHIP_PADDING)
            for crop, shape in zip(crops, landmarks)
        ]
        if not chips:
            return np.zeros((0, 128), np.float32)
        return np.asarray(self.net.compute_face_descriptor(chips), np.float32)
