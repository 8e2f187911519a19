"""Sharded TFRecord training data (sfc_tf.data.records): building from an identity folder and from tensorflow-datasets,
resuming an interrupted build, refusing damaged folders, streaming with held-out identities and flips, and short
CPU training jobs of both training binaries fed by records and by a tfds dataset."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sfc_tf.base import align
from sfc_tf.data import records, training_set
from sfc_tf.enhancement import learned
from sfc_tf.errors import SfcError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ColourFeatures:
    """A cheap deterministic stand-in for FaceNet: the L2-normalised mean colour of each third of the crop."""

    key, dim = "colour-thirds", 9

    def __call__(self, crops, progress=False):
        crops = np.asarray(crops, np.float32)
        parts = [crops[:, :, i * 53 : (i + 1) * 53].mean(axis=(1, 2)) + 1 for i in range(3)]
        features = np.concatenate(parts, axis=1)
        return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def built(fixture_lfw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    return records.build(
        out, data_dir=fixture_lfw_dir, align="center", shard_size=4, extractor=ColourFeatures(), progress=False
    )


def test_records_hold_the_crops_and_features_of_the_folder(built, fixture_lfw_dir):
    paths = sorted(p.relative_to(fixture_lfw_dir) for p in fixture_lfw_dir.glob("*/*.jpg"))
    crops = np.stack([align.center_crop(align.load_image(fixture_lfw_dir / p)) for p in paths])
    manifest = records.open_records(built.directory, verify=True).manifest
    assert manifest["examples"] == len(paths) == 6 and len(manifest["shards"]) == 2
    assert dict(zip(manifest["identities"], manifest["identity_counts"])) == {
        "AJ_Cook": 1,
        "Aaron_Peirsol": 2,
        "Abel_Pacheco": 2,
        "Akhmed_Zakayev": 1,
    }
    read = list(records.dataset(built, shuffle=False).as_numpy_iterator())
    got = np.stack([crop for crop, _ in read])
    np.testing.assert_array_equal(got, crops)  # PNG: lossless, in folder order
    np.testing.assert_allclose(np.stack([f for _, f in read]), ColourFeatures()(crops), atol=1e-6)


def test_stream_leaves_out_held_identities_and_mirrors_with_the_mirror_feature(built):
    read = list(records.dataset(built, {"Aaron_Peirsol", "Abel_Pacheco"}, shuffle=False).as_numpy_iterator())
    assert len(read) == 2
    held = list(records.dataset(built, {"Aaron_Peirsol"}, keep_held_out=True, shuffle=False).as_numpy_iterator())
    assert len(held) == 2
    flipped = list(records.dataset(built, shuffle=False, flip=True, seed=3).as_numpy_iterator())
    plain = list(records.dataset(built, shuffle=False).as_numpy_iterator())
    mirrored = [i for i, ((a, _), (b, _)) in enumerate(zip(flipped, plain)) if not np.array_equal(a, b)]
    assert 0 < len(mirrored) < 6
    for i in mirrored:
        np.testing.assert_array_equal(flipped[i][0], plain[i][0][:, ::-1])
        np.testing.assert_allclose(flipped[i][1], ColourFeatures()(plain[i][0][None, :, ::-1])[0], atol=1e-6)


def test_training_stream_holds_out_identities_like_assemble(built):
    stream = training_set.stream(built.directory, validation_fraction=0.5, seed=0)
    held = training_set.held_out_identities(built.identities, 0.5, 0)
    assert set(stream.description["held_out_identities"]) == held and len(held) == 2
    assert stream.num_examples + len(stream.held_out_crops) == 6
    assert sum(1 for _ in stream.examples) == stream.num_examples


def test_interrupted_build_keeps_finished_shards(built, fixture_lfw_dir, tmp_path):
    out = tmp_path / "again"
    records.build(
        out, data_dir=fixture_lfw_dir, align="center", shard_size=4, extractor=ColourFeatures(), progress=False
    )
    first = (out / "shard-00000.tfrecord").stat().st_mtime_ns
    (out / records.MANIFEST).unlink()  # as if killed while writing the second shard
    (out / "shard-00001.tfrecord").rename(out / "shard-00001.tfrecord.tmp")
    (out / "shard-00001.tfrecord.json").unlink()
    with pytest.raises(SfcError, match="records.json missing"):
        records.open_records(out)
    again = records.build(
        out, data_dir=fixture_lfw_dir, align="center", shard_size=4, extractor=ColourFeatures(), progress=False
    )
    assert (out / "shard-00000.tfrecord").stat().st_mtime_ns == first
    assert again.manifest["shards"] == built.manifest["shards"] and not list(out.glob("*.tmp"))


def test_damaged_or_incomplete_folders_are_refused(built, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in built.directory.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    data = bytearray((copy / "shard-00001.tfrecord").read_bytes())
    data[40] ^= 1
    (copy / "shard-00001.tfrecord").write_bytes(bytes(data))
    with pytest.raises(SfcError, match="damaged"):
        records.open_records(copy, verify=True)
    (copy / "shard-00001.tfrecord").unlink()
    with pytest.raises(SfcError, match="shard-00001.tfrecord is missing"):
        records.open_records(copy)
    manifest = json.loads((copy / records.MANIFEST).read_text())
    manifest["shards"][0]["file"] = "../elsewhere.tfrecord"
    (copy / records.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SfcError, match="missing"):
        records.open_records(copy)


def test_unknown_tfds_dataset_is_one_clear_error(tmp_path):
    with pytest.raises(SfcError, match="not available"):
        records.tfds_examples("no_such_dataset_here", str(tmp_path))


def run(args, env):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def environment(tmp_path_factory, shipped_checkpoints):
    """The binaries' environment: a fresh cache, and the shipped checkpoints (their default base layers) even when
    an earlier test module pointed ``SFC_TF_CHECKPOINTS`` at the tiny zoo."""
    cache = tmp_path_factory.mktemp("cache")
    checkpoints = str(shipped_checkpoints)
    return dict(os.environ, SFC_TF_CACHE=str(cache), SFC_TF_CHECKPOINTS=checkpoints, TF_CPP_MIN_LOG_LEVEL="3")


def test_binaries_train_from_records(fixture_lfw_dir, tmp_path, environment, shipped_checkpoints):
    """build_records.py writes shards with real FaceNet features; the reconstructor and a conditional face codec
    (warm-started from the shipped end-to-end model) each complete a short CPU job streaming them."""
    shards = tmp_path / "shards"
    run(
        [
            "train/build_records.py",
            "--data_dir",
            str(fixture_lfw_dir),
            "--align",
            "center",
            "--shard_size",
            "4",
            "--output_dir",
            str(shards),
        ],
        environment,
    )
    assert records.open_records(shards, verify=True).manifest["facenet"] == "20180408-102900"
    run(
        [
            "train/train_reconstructor.py",
            "--records",
            str(shards),
            "--flip",
            "--epochs",
            "2",
            "--steps_per_epoch",
            "2",
            "--batch_size",
            "2",
            "--perceptual_weight",
            "0",
            "--validation_fraction",
            "0.5",
            "--checkpoint_dir",
            str(tmp_path / "reconstructor"),
        ],
        environment,
    )
    meta = json.loads((tmp_path / "reconstructor" / "meta.json").read_text())
    assert meta["data"]["streamed"] and meta["steps_this_session"] == 4 and "val_loss" in meta["final_metrics"]
    assert meta["batch_norm_recalibrated_on_batches"] == 2
    start = tmp_path / "end_to_end"  # an (untrained) end-to-end model to warm-start from
    learned.save(learned.BLS2017(0.01), start, input="original")
    run(
        [
            "train/train_face_codec.py",
            "--records",
            str(shards),
            "--kind",
            "conditional",
            "--steps",
            "2",
            "--batch_size",
            "2",
            "--lmbdas",
            "0.001,0.01",
            "--predictor",
            str(shipped_checkpoints / "predictor"),
            "--base_layer",  # with a colour thumbnail: each streamed batch's predictions take it from its crops
            str(shipped_checkpoints / "base_layer" / "thumbnail2" / "step_0.08.npz"),
            "--init_from",
            str(start),
            "--checkpoint_dir",
            str(tmp_path / "conditional"),
        ],
        environment,
    )
    meta = json.loads((tmp_path / "conditional" / "meta.json").read_text())
    assert meta["steps"] == 2 and meta["data"]["streamed"] and meta["train_images"] == 6
    assert meta["warm_start"]["sha256"] == json.loads((start / "meta.json").read_text())["sha256"]
    # in memory, on patches, conditional on the reconstruction of the reconstructor just trained, every identity
    args = [
        "train/train_face_codec.py",
        "--data_dir",
        str(fixture_lfw_dir),
        "--align",
        "center",
        "--kind",
        "conditional",
        "--prediction_mode",
        "reconstruction",
        "--reconstructor",
        str(tmp_path / "reconstructor"),
        "--base_layer",
        str(shipped_checkpoints / "base_layer" / "step_0.08.npz"),
        "--validation_fraction",
        "0",
        "--noflip",
        "--prior",
        "channel",
        "--patch_size",
        "64",
        "--steps",
        "2",
        "--batch_size",
        "2",
        "--lmbdas",
        "0.01",
        "--checkpoint_dir",
        str(tmp_path / "conditional_patches"),
    ]
    run(args, environment)
    meta = json.loads((tmp_path / "conditional_patches" / "meta.json").read_text())
    assert meta["prediction"]["mode"] == "reconstruction" and meta["prediction"]["network"] == str(
        tmp_path / "reconstructor"
    )
    assert meta["data"]["held_out_images"] == 0 and meta["train_images"] == meta["data"]["images"]
    assert meta["training"]["patch_size"] == 64 and meta["held_out"] is None
    reconstructor_meta = json.loads((tmp_path / "reconstructor" / "meta.json").read_text())
    assert meta["prediction"]["network_sha256"] == reconstructor_meta["sha256"]
    # a fine-tune of that codec on the predictions of a base layer with a colour thumbnail
    thumbnail_base = str(shipped_checkpoints / "base_layer" / "thumbnail2" / "step_0.08.npz")
    fine_tune = [a if a != str(shipped_checkpoints / "base_layer" / "step_0.08.npz") else thumbnail_base for a in args]
    fine_tune[fine_tune.index("--checkpoint_dir") + 1] = str(tmp_path / "conditional_thumbnail")
    run([*fine_tune, "--init_from", str(tmp_path / "conditional_patches")], environment)
    meta = json.loads((tmp_path / "conditional_thumbnail" / "meta.json").read_text())
    source = json.loads((tmp_path / "conditional_patches" / "meta.json").read_text())
    assert meta["warm_start"]["sha256"] == source["sha256"] and meta["prediction"]["base_layer"] == thumbnail_base


def test_reconstructor_trains_from_a_tfds_dataset(fixture_lfw_dir, tmp_path, environment):
    """--tfds NAME: tfds finds the prepared dataset by name, the binary builds its records once in the cache and
    streams them."""
    tfds_dir = tmp_path / "tfds"
    run(
        [
            "tests/make_tfds_dataset.py",
            "--data_dir",
            str(fixture_lfw_dir),
            "--name",
            "lfw_fixture",
            "--tfds_data_dir",
            str(tfds_dir),
        ],
        environment,
    )
    args = [
        "train/train_reconstructor.py",
        "--tfds",
        "lfw_fixture",
        "--tfds_data_dir",
        str(tfds_dir),
        "--align",
        "center",
        "--epochs",
        "1",
        "--steps_per_epoch",
        "2",
        "--batch_size",
        "2",
        "--perceptual_weight",
        "0",
        "--validation_fraction",
        "0.5",
        "--checkpoint_dir",
        str(tmp_path / "reconstructor"),
    ]
    run(args, environment)
    meta = json.loads((tmp_path / "reconstructor" / "meta.json").read_text())
    assert (
        meta["data"]["source"]["tfds"] == "lfw_fixture"
        and meta["data"]["images"] + meta["data"]["held_out_images"] == 6
    )
    built = list((tmp_path.parent / environment["SFC_TF_CACHE"] / "records").glob("tfds-lfw_fixture-*"))
    assert len(built) == 1 and (built[0] / records.MANIFEST).is_file()


def test_binaries_refuse_two_sources(tmp_path, environment):
    result = subprocess.run(
        [
            sys.executable,
            "train/train_reconstructor.py",
            "--records",
            str(tmp_path),
            "--tfds",
            "lfw",
            "--checkpoint_dir",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPO,
    )
    assert result.returncode != 0 and "exactly one of --data_dir, --records and --tfds" in result.stderr
