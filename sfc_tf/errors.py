"""Exceptions raised by sfc_tf. Every failure a user can cause maps to one of these."""

import re


class SfcError(Exception):
    """Base class of every error sfc_tf raises on purpose."""


class ImageError(SfcError):
    """An input image cannot be read or is unusable (unreadable file, too small, too large)."""


class NoFaceError(ImageError):
    """Face detection found no face in the image."""


class WeightsError(SfcError):
    """Model weights are missing, corrupt, or do not match the requested model."""


class BitstreamError(SfcError):
    """Encoded bytes are corrupt, truncated, of an unknown version, or inconsistent."""


class OutputError(SfcError):
    """An output file cannot be written (no such directory, no permission, disk full)."""


class ModelMismatchError(SfcError):
    """Bytes were produced with a model other than the one the decoder has."""


class AuthenticationError(BitstreamError):
    """An authenticated file whose tag does not verify under the key given, or whose key is missing; or a plain
    file where a key says an authenticated one is expected."""


def located(error: SfcError, where: str) -> SfcError:
    """``error`` again, of its own class, its message prefixed with where it happened (a file's name)."""
    return type(error)(f"{where}: {error}")


def op_error_reason(message: str) -> str:
    """The reason in a TensorFlow op error's message, on one line: graph execution errors put it after the Python
    stack of the node that failed; tensorflow-compression's end-of-payload assertion gets a sentence of its own."""
    if "Sanity check failed" in message:
        return "the range decoder did not end at the payload's end (a damaged payload, or one this model did not code)"
    noise = ("File ", "Graph execution error", "Detected at node", "[[")
    lines = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(noise)]
    reason = lines[-1] if lines else message.strip()
    return re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]$", "", reason) or "no reason given"
