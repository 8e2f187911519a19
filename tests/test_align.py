"""Face crops: conversions, guards and both alignment modes."""

import io

import numpy as np
import pytest
from PIL import Image

from sfc_tf.base import align
from sfc_tf.errors import ImageError, NoFaceError


def encoded(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aligner():
    return align.MtcnnAligner()


def test_center_crop_shape_and_determinism(fixture_lfw_dir):
    path = next(fixture_lfw_dir.glob("*/*.jpg"))
    first, second = (align.center_crop(align.load_image(path)) for _ in range(2))
    assert first.shape == (160, 160, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16"])
def test_non_rgb_modes_become_rgb(mode):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).convert(
        "L" if mode == "I;16" else mode
    )
    if mode == "I;16":
        image = image.convert("I").point(lambda v: v * 200).convert("I;16")
    rgb = align.load_image(encoded(image, "TIFF" if mode in ("CMYK", "I;16") else "PNG"))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8


def test_alpha_is_composited_on_white():
    rgba = np.zeros((40, 40, 4), np.uint8)  # fully transparent black
    assert (align.load_image(encoded(Image.fromarray(rgba, "RGBA"))) == 255).all()
    assert (align.load_image(rgba) == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (80, 40))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    assert align.load_image(encoded(image, "JPEG", exif=exif)).shape == (80, 40, 3)


@pytest.mark.parametrize("source", [b"", b"not an image", encoded(Image.new("RGB", (64, 64)))[:40]])
def test_unreadable_input_raises_image_error(source):
    with pytest.raises(ImageError, match="cannot read"):
        align.load_image(source)


def test_missing_file_and_bad_arrays(tmp_path):
    with pytest.raises(ImageError, match="no such image"):
        align.load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="uint8"):
        align.load_image(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ImageError, match="HxW"):
        align.load_image(np.zeros((64, 64, 2), np.uint8))


def test_size_guards(monkeypatch):
    with pytest.raises(ImageError, match="at least"):
        align.load_image(np.zeros((20, 200, 3), np.uint8))
    monkeypatch.setattr(align, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="more than"):
        align.load_image(encoded(Image.new("RGB", (101, 100))))


def test_mtcnn_crop_of_a_real_face(aligner, fixture_lfw_dir):
    crop = aligner(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    assert crop.shape == (160, 160, 3) and crop.dtype == np.uint8


def test_mtcnn_on_a_non_face_raises_no_face_error(aligner):
    flat = np.full((120, 120, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        aligner(flat)


def test_mtcnn_handles_large_images_by_downscaling_detection(aligner, fixture_lfw_dir):
    face = Image.open(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    big = np.asarray(face.resize((2000, 2000)))
    assert aligner(big).shape == (160, 160, 3)


def test_margin_convention_picks_the_central_face():
    aligner = align.MtcnnAligner.__new__(align.MtcnnAligner)
    aligner.margin = 32
    rgb = np.zeros((200, 200, 3), np.uint8)
    boxes = np.array([[0, 0, 60, 60, 0.99], [70, 70, 130, 130, 0.99]], float)
    np.testing.assert_array_equal(aligner.crop_box(rgb, boxes), [54, 54, 146, 146])
    np.testing.assert_array_equal(aligner.crop_box(rgb, boxes[:1]), [0, 0, 76, 76])  # clipped at the border


def test_make_aligner_rejects_unknown_modes():
    with pytest.raises(ValueError):
        align.make_aligner("dlib")


def test_align_many_batches_and_falls_back_to_center(aligner, fixture_lfw_dir):
    faces = sorted(fixture_lfw_dir.glob("*/*.jpg"))[:3]
    flat = np.full((250, 250, 3), 128, np.uint8)
    crops, fallbacks = aligner.align_many([*faces, flat], center_fallback=True)
    assert crops.shape == (4, 160, 160, 3) and fallbacks == [3]
    np.testing.assert_array_equal(crops[3], align.center_crop(flat))
    np.testing.assert_array_equal(crops[0], aligner(faces[0]))  # batched detection == single
    with pytest.raises(NoFaceError):
        aligner.align_many([faces[0], flat])


def test_traced_mtcnn_networks_give_the_boxes_of_eager_ones(aligner, fixture_lfw_dir):
    from mtcnn import MTCNN

    eager = align.MtcnnAligner.__new__(align.MtcnnAligner)
    eager.margin, eager.size, eager.min_confidence = aligner.margin, aligner.size, aligner.min_confidence
    eager._detector = MTCNN()
    images = [align.load_image(p) for p in sorted(fixture_lfw_dir.glob("*/*.jpg"))]
    blank = np.full((120, 100, 3), 200, np.uint8)
    for rgbs in [[rgb] for rgb in images + [blank]] + [images[:4]]:
        for traced, untraced in zip(aligner.boxes(rgbs), eager.boxes(rgbs)):
            np.testing.assert_array_equal(traced, untraced)
