"""The Beam archive pipeline (DirectRunner) writes the same .sfc bytes as ``sfc compress`` and an index of them."""

import numpy as np
import pytest

from sfc_tf import cli

beam = pytest.importorskip("apache_beam")


def test_pipeline_files_are_sfc_compress_files(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    from sfc_tf.apps import archive
    from sfc_tf.apps.search import SearchIndex

    images = sorted(fixture_lfw_dir.glob("*/*.jpg"))
    out = tmp_path / "archive"
    with beam.Pipeline() as root:
        archive.pipeline(
            root, [str(fixture_lfw_dir / "*" / "*.jpg")], str(out), "jpeg", 50, align="center", batch_size=2
        )
    for image in images:
        expected = tmp_path / "cli" / (image.stem + ".sfc")
        assert (
            cli.run(
                ["compress", str(image), str(expected), "--enhancement", "jpeg", "--quality", "50", "--align", "center"]
            )
            == 0
        )
        written = out / image.parent.name / (image.stem + ".sfc")
        assert written.read_bytes() == expected.read_bytes(), image.name
    index = SearchIndex.load(out / archive.INDEX_FILE)
    assert index.sources == [str(p) for p in images] and index.labels == [p.parent.name for p in images]
    query = index.features[images.index(fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg")]
    assert index.search(query, 2).labels[0] == ["Abel_Pacheco", "Abel_Pacheco"]
    assert not list(out.rglob(".*"))  # no temporary files left


def test_pipeline_resumes_with_skip_existing(tiny_zoo, fixture_lfw_dir, tmp_path):
    from sfc_tf.apps import archive

    out = tmp_path / "archive"
    pattern = [str(fixture_lfw_dir / "A*" / "*.jpg")]
    with beam.Pipeline() as root:
        archive.pipeline(root, pattern, str(out), align="center")
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.sfc")}
    victim = sorted(first)[0]
    victim.unlink()
    with beam.Pipeline() as root:
        archive.pipeline(root, pattern, str(out), align="center", skip_existing=True)
    again = {p: p.stat().st_mtime_ns for p in out.rglob("*.sfc")}
    assert again.keys() == first.keys()
    assert all(again[p] == first[p] for p in first if p != victim)
    assert np.load(out / archive.INDEX_FILE)["features"].shape[0] == len(first)
