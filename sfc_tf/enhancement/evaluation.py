"""Rate-distortion points of the enhancement layer: bits per face of the coded residual and PSNR of the final
reconstruction (reconstruction + decoded residual, clipped), and of image codecs coding the crop directly.
PSNR is the mean over faces of per-face PSNR, each capped at ``metrics.PSNR_CEILING_DB``."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from sfc_tf import metrics
from sfc_tf.enhancement import LEARNED, ImageCodec, ResidualCodec, minmax


def _chunks(count: int, size: int, desc: str, progress: bool):
    return tqdm(range(0, count, size), desc=desc, disable=not progress, leave=False)


def code_residuals(codec: ResidualCodec, residuals: np.ndarray, batch_size: int = 32,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode every residual: (decoded float32 residuals, bits per face incl. the min/max field)."""
    decoded, bits = np.empty_like(residuals, np.float32), np.empty(len(residuals))
    for i in _chunks(len(residuals), batch_size, f"{codec.name} {codec.parameter}", progress):
        records = codec.encode_many(residuals[i:i + batch_size])
        decoded[i:i + batch_size] = codec.decode_many(records)
        bits[i:i + batch_size] = [8 * len(r) for r in records]
    return decoded, bits


def code_images(codec: ImageCodec, images: np.ndarray, batch_size: int = 32,
                progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode every uint8 image: (decoded images, bits per image)."""
    decoded, bits = np.empty_like(images), np.empty(len(images))
    for i in _chunks(len(images), batch_size, f"{codec.name} {codec.parameter}", progress):
        records = codec.encode_many(images[i:i + batch_size])
        decoded[i:i + batch_size] = codec.decode_many(records)
        bits[i:i + batch_size] = [8 * len(r) for r in records]
    return decoded, bits


def rate_estimate(codec: ImageCodec, images: np.ndarray, batch_size: int = 32) -> dict:
    """Learned codec only: mean coded latent bits (payload without its 2-byte shape header) against the
    entropy model's estimate for the same quantized latents."""
    coded, estimated = [], []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size]
        coded += [8 * (len(r) - 2) for r in codec.encode_many(batch)]
        estimated += list(codec.model.estimated_bits(batch))
    coded_mean, estimated_mean = float(np.mean(coded)), float(np.mean(estimated))
    return {"coded_latent_bits_per_face": coded_mean, "estimated_latent_bits_per_face": estimated_mean,
            "relative_difference": (coded_mean - estimated_mean) / estimated_mean}


ESTIMATE_IMAGES = 256     # images on which the learned codec's coded size is checked against its estimate


def residual_point(codec: ResidualCodec, crops: np.ndarray, reconstructions: np.ndarray,
                   residuals: np.ndarray, base_bits: float, progress: bool = True) -> tuple[dict, np.ndarray]:
    """One enhancement-layer operating point and the final decoded crops."""
    decoded, bits = code_residuals(codec, residuals, progress=progress)
    final = np.stack([minmax.add_residual(r, d) for r, d in zip(reconstructions, decoded)])
    psnr, capped = metrics.mean_psnr(crops, final)
    point = {"codec": codec.name, "input": "residual", "parameter": codec.parameter,
             "enhancement_bits_per_face": float(bits.mean()), "base_bits_per_face": base_bits,
             "bits_per_face": base_bits + float(bits.mean()), "bpp": (base_bits + bits.mean()) / crops[0, ..., 0].size,
             "psnr": psnr, "images_at_psnr_ceiling": capped}
    if codec.codec_id == LEARNED:
        images = np.stack([minmax.normalise(r)[0] for r in residuals[:ESTIMATE_IMAGES]])
        point["rate_estimate"] = rate_estimate(codec.codec, images)
    return point, final


def image_point(codec: ImageCodec, crops: np.ndarray, progress: bool = True) -> tuple[dict, np.ndarray]:
    """An image codec on the crops themselves (no base layer): the plain anchor."""
    decoded, bits = code_images(codec, crops, progress=progress)
    psnr, capped = metrics.mean_psnr(crops, decoded)
    point = {"codec": codec.name, "input": "original", "parameter": codec.parameter,
             "bits_per_face": float(bits.mean()), "bpp": float(bits.mean()) / crops[0, ..., 0].size,
             "psnr": psnr, "images_at_psnr_ceiling": capped}
    if codec.codec_id == LEARNED:
        point["rate_estimate"] = rate_estimate(codec, crops[:ESTIMATE_IMAGES])
    return point, decoded
