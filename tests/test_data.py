"""Pairs protocol, identity lists, folder listing and the face cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sfc_tf import metrics
from sfc_tf.data import folders
from sfc_tf.errors import SfcError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_pairs(path, header, lines):
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_two_fold_header_and_default_folds(tmp_path):
    lines = ["A\t1\t2", "B\t1\tC\t1", "D\t3\t4", "E\t2\tF\t5"]
    pairs = folders.parse_pairs(write_pairs(tmp_path / "p.txt", "2\t1", lines))
    assert [p.fold for p in pairs] == [1, 1, 2, 2]
    assert pairs[0] == folders.Pair("A/A_0001.jpg", "A/A_0002.jpg", True, 1)
    assert pairs[3] == folders.Pair("E/E_0002.jpg", "F/F_0005.jpg", False, 2)
    assert [p.fold for p in folders.parse_pairs(tmp_path / "p.txt", [2])] == [2, 2]


def test_single_number_header_is_one_fold(tmp_path):
    pairs = folders.parse_pairs(write_pairs(tmp_path / "p.txt", "1", ["A\t1\t2", "B\t1\tC\t1"]))
    assert [(p.same, p.fold) for p in pairs] == [(True, 1), (False, 1)]


@pytest.mark.parametrize(
    "header,lines,message",
    [
        ("2\t1", ["A\t1\t2", "B\t1\tC\t1"], "promises"),
        ("x y", ["A\t1\t2"], "first line"),
        ("1\t1", ["A\t1", "B\t1\tC\t1"], "cannot parse"),
    ],
)
def test_malformed_pairs_files(tmp_path, header, lines, message):
    with pytest.raises(SfcError, match=message):
        folders.parse_pairs(write_pairs(tmp_path / "p.txt", header, lines))


def test_folds_outside_the_header_are_rejected(tmp_path):
    with pytest.raises(SfcError, match="declares 1 folds"):
        folders.parse_pairs(write_pairs(tmp_path / "p.txt", "1", ["A\t1\t2", "B\t1\tC\t1"]), [2])


def test_identity_list_and_folder_listing(tmp_path, fixture_lfw_dir):
    (tmp_path / "ids.txt").write_text("# training\nAJ_Cook\n\nAaron_Peirsol\n")
    identities = folders.read_identity_list(tmp_path / "ids.txt")
    assert identities == ["AJ_Cook", "Aaron_Peirsol"]
    items = folders.list_images(fixture_lfw_dir, identities)
    assert [label for _, label in items] == [0, 1, 1]
    assert items[0][0] == "AJ_Cook/AJ_Cook_0001.jpg"
    with pytest.raises(SfcError, match="not in"):
        folders.list_images(fixture_lfw_dir, ["Nobody"])


def test_load_faces_caches_crops(tmp_path, monkeypatch, fixture_lfw_dir):
    monkeypatch.setenv("SFC_TF_CACHE", str(tmp_path))
    paths = [p for p, _ in folders.list_images(fixture_lfw_dir)]
    calls = []

    def fake_extractor(crops, progress=False):
        calls.append(len(crops))
        return np.ones((len(crops), 4), np.float32)

    first = folders.load_faces(fixture_lfw_dir, paths, "center", fake_extractor, "fake", progress=False)
    second = folders.load_faces(fixture_lfw_dir, paths, "center", fake_extractor, "fake", progress=False)
    assert calls == [len(paths)]  # the second call read the cache
    np.testing.assert_array_equal(first.crops, second.crops)
    assert first.subset(paths[2:4]).crops.shape == (2, 160, 160, 3)


def test_verification_accuracy_uses_thresholds_from_other_folds():
    same = np.array([True, False] * 50)
    distances = np.where(same, 0.5, 1.5)
    folds = np.repeat([1, 2], 50)
    result = metrics.verification_accuracy(distances, same, folds)
    assert result.accuracy == 1.0 and 0.5 <= result.thresholds[0] < 1.5
    flipped = metrics.verification_accuracy(np.where(same, 1.5, 0.5), same, folds)
    assert flipped.accuracy == 0.5


def test_centered_features_are_unit_norm_and_shift_distances():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(6, 4)) + 3.0  # a shared offset dominates the raw features
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    mean = features.mean(axis=0)
    centred = metrics.centered(features, mean)
    np.testing.assert_allclose(np.linalg.norm(centred, axis=1), 1.0)
    assert (
        metrics.squared_distances(centred[:3], centred[3:]).mean()
        > metrics.squared_distances(features[:3], features[3:]).mean()
    )
    assert metrics.centered(features, None) is features


def test_psnr():
    a = np.zeros((2, 8, 8, 3))
    b = a.copy()
    b[1] += 255
    assert np.isinf(metrics.psnr(a, b)[0]) and metrics.psnr(a, b)[1] == pytest.approx(0.0)


def test_mean_psnr_caps_lossless_images():
    a = np.zeros((3, 8, 8, 3))
    b = a.copy()
    b[1] += 255
    b[2, 0, 0, 0] = 1  # one pixel off by one: 10 log10(255^2 * 192) = 70.9 dB
    mean, capped = metrics.mean_psnr(a, b, ceiling=60.0)
    assert capped == 2 and mean == pytest.approx((60.0 + 0.0 + 60.0) / 3)
    assert metrics.mean_psnr(a, b, ceiling=80.0)[0] == pytest.approx((80.0 + 10 * np.log10(255**2 * 192)) / 3)


def test_shared_pairs_protocol(shared_lfw_dir):
    pairs = folders.parse_pairs(shared_lfw_dir / "pairs.txt", [1, 2, 3, 4])
    assert len(pairs) == 2400 and sum(p.same for p in pairs) == 1200
    assert all((shared_lfw_dir / path).is_file() for path in folders.pair_images(pairs))
    train = set(folders.read_identity_list(shared_lfw_dir / "train_identities.txt"))
    assert not train & {p.first.split("/")[0] for p in pairs}  # evaluation identities never train


def test_verify_lfw_binary_on_a_small_protocol(tmp_path, shared_lfw_dir):
    """eval/verify_lfw.py end to end on 2 folds x (20 same + 20 different) pairs of real LFW faces."""
    lines = (shared_lfw_dir / "pairs.txt").read_text().splitlines()[1:]
    subset = lines[:20] + lines[300:320] + lines[600:620] + lines[900:920]
    pairs_file = write_pairs(tmp_path / "pairs.txt", "2\t20", subset)
    identities = tmp_path / "train_identities.txt"  # a few training identities give the mean to subtract
    identities.write_text("\n".join(folders.read_identity_list(shared_lfw_dir / "train_identities.txt")[:8]) + "\n")
    out = tmp_path / "result.json"
    env = dict(os.environ, SFC_TF_CACHE=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "eval", "verify_lfw.py"),
            "--lfw_dir",
            str(shared_lfw_dir),
            "--pairs",
            str(pairs_file),
            "--align",
            "center",
            "--identities",
            str(identities),
            "--output_json",
            str(out),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    result = json.loads(out.read_text())
    assert result["subtract_mean"] is True
    assert result["num_pairs"] == 80 and result["feature_dim"] == 512 and result["folds"] == [1, 2]
    assert result["accuracy"] >= 0.9 and set(result) >= {"accuracy", "accuracy_std", "num_pairs", "feature_dim"}


def test_tar_at_far_threshold_accepts_at_most_far_of_impostors():
    impostor = np.arange(1000, dtype=float)  # distances 0..999
    tar, threshold = metrics.tar_at_far(np.array([0.5, 1.5, 2.5, 50.0]), impostor, far=0.002)
    assert threshold == 2.0 and np.mean(impostor < threshold) == 0.002
    assert tar == 0.5
    with pytest.raises(ValueError, match="cannot resolve"):
        metrics.tar_at_far(np.zeros(3), impostor[:10], far=0.001)


def test_reconstruction_attacks_type_i_and_type_ii():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    identities = np.repeat([f"id{i}" for i in range(40)], 3)
    original = centres[np.arange(40).repeat(3)] + 0.05 * rng.normal(size=(120, 16))
    original /= np.linalg.norm(original, axis=1, keepdims=True)
    perfect = metrics.reconstruction_attacks(original, original, identities, far=0.01)
    assert perfect["tar_type_i"] == 1.0 and perfect["tar_type_ii"] == perfect["tar_originals"] == 1.0
    assert perfect["type_ii_comparisons"] == 40 * 3 * 2 and perfect["impostor_comparisons"] == 120 * 117 // 2
    wrong_person = np.roll(original, 3, axis=0)  # each "reconstruction" looks like the next identity
    attacked = metrics.reconstruction_attacks(wrong_person, original, identities, far=0.01)
    assert attacked["tar_type_i"] < 0.1 and attacked["tar_type_ii"] < 0.1  # impostor-like: about FAR


def test_type_i_pair_accuracy_compares_each_reconstruction_with_its_own_original():
    pairs = [folders.Pair(f"p{i}a", f"p{i}b", same=i % 2 == 0, fold=i // 10 + 1) for i in range(20)]
    index = {name: k for k, name in enumerate(sorted({p.first for p in pairs} | {p.second for p in pairs}))}
    rng = np.random.default_rng(1)
    original = rng.normal(size=(len(index), 8))
    original /= np.linalg.norm(original, axis=1, keepdims=True)
    assert metrics.evaluate_type_i(pairs, index, original, original).accuracy == 1.0


def test_missing_identity_list_is_named(tmp_path):
    with pytest.raises(SfcError, match="identity list not found"):
        folders.read_identity_list(tmp_path / "train_identities.txt")


def test_verify_lfw_names_the_identities_flag(tmp_path):
    """Without train_identities.txt the binary exits 1 with one line naming --identities, before loading FaceNet."""
    (tmp_path / "Someone").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "eval", "verify_lfw.py"),
            "--lfw_dir",
            str(tmp_path),
            "--output_json",
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("verify_lfw:") and "--identities" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out.json").exists()


def test_face_cache_is_keyed_by_content_not_by_path(fixture_lfw_dir, tmp_path, monkeypatch):
    """The same images in another folder hit the cache (no realignment); a changed image misses it."""
    import shutil

    from sfc_tf.base import align

    monkeypatch.setenv("SFC_TF_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a" / "lfw", tmp_path / "b" / "lfw"
    shutil.copytree(fixture_lfw_dir, first)
    shutil.copytree(fixture_lfw_dir, second)
    paths = [p for p, _ in folders.list_images(first)]
    crops = folders.load_faces(first, paths, "center", progress=False).crops

    def no_alignment(kind):
        raise AssertionError("aligned again")

    monkeypatch.setattr(align, "make_aligner", no_alignment)
    np.testing.assert_array_equal(folders.load_faces(second, paths, "center", progress=False).crops, crops)
    changed = second / paths[0]
    changed.write_bytes((second / paths[1]).read_bytes())
    with pytest.raises(AssertionError, match="aligned again"):
        folders.load_faces(second, paths, "center", progress=False)
