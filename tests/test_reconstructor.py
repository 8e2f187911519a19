"""Reconstructor network, loss, schedule and checkpoints."""

import json

import numpy as np
import pytest
import tensorflow as tf

from sfc_tf.errors import WeightsError
from sfc_tf.reconstruction import losses, reconstructor
from sfc_tf.reconstruction import training as training
from sfc_tf.training import resume


@pytest.mark.parametrize("dim", [128, 512])
def test_output_shape_and_range(dim):
    model = reconstructor.Reconstructor(dim)
    out = model(tf.random.normal((3, dim)) * 10)
    assert out.shape == (3, 160, 160, 3) and model.output_size() == 160
    assert float(tf.reduce_min(out)) >= -1 and float(tf.reduce_max(out)) <= 1
    assert reconstructor.to_uint8(out).dtype == np.uint8


def test_blocks_are_dconvops_with_he_init_and_tanh_last():
    model = reconstructor.Reconstructor(128)
    assert all(isinstance(b, reconstructor.DconvOp) for b in model.blocks)
    assert [b.config["activation"] for b in model.blocks] == ["relu"] * 6 + ["tanh"]
    assert isinstance(model.blocks[0].deconv.kernel_initializer, tf.keras.initializers.HeNormal)


def test_schedule_hits_both_ends():
    schedule = training.learning_rate_schedule(0.01, 0.0001, 1000)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(1000)) == pytest.approx(0.0001)


def test_warmup_ramps_up_to_the_decay_then_follows_it():
    warm, paper = (
        training.learning_rate_schedule(0.01, 0.0001, 1000, 100),
        training.learning_rate_schedule(0.01, 0.0001, 1000),
    )
    assert float(warm(0)) == pytest.approx(float(paper(0)) / 100)
    assert float(warm(49)) == pytest.approx(float(paper(49)) / 2)
    for step in (99, 500, 1000):
        assert float(warm(step)) == pytest.approx(float(paper(step)))


def test_one_training_step_lowers_the_loss(fixture_crops):
    tf.keras.utils.set_random_seed(0)
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 128)).astype(np.float32)
    targets = reconstructor.to_unit_range(fixture_crops)
    model = reconstructor.Reconstructor(128)
    model.compile(tf.keras.optimizers.Adam(1e-3), losses.ReconstructionLoss(None, 0.0))
    before = model.evaluate(features, targets, verbose=0)
    for _ in range(3):
        model.train_on_batch(features, targets)
    assert model.evaluate(features, targets, verbose=0) < before


def test_perceptual_loss_with_the_shared_vgg_weights(shared_vgg_weights, fixture_crops):
    vgg = losses.vgg_feature_model("block3_conv2", shared_vgg_weights)
    loss = losses.ReconstructionLoss(vgg, 1e-5, perceptual_downsample=2)
    x = reconstructor.to_unit_range(fixture_crops[:2])
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(x, tf.reverse(x, axis=[2]))) > 0


def test_deeper_layer_than_the_weights_file_holds_is_refused(shared_vgg_weights):
    with pytest.raises(WeightsError, match="block4_conv1"):
        losses.vgg_feature_model("block4_conv2", shared_vgg_weights)


def test_missing_vgg_file_and_unknown_layer(tmp_path, shared_vgg_weights):
    with pytest.raises(WeightsError, match="not found"):
        losses.vgg_feature_model("block3_conv2", tmp_path / "none.h5")
    with pytest.raises(WeightsError, match="no layer"):
        losses.vgg_feature_model("block9_conv1", shared_vgg_weights)


def test_checkpoint_round_trip_and_tamper_check(tmp_path):
    model = reconstructor.Reconstructor(128).build_for_inference()
    features = tf.random.normal((2, 128))
    meta = reconstructor.save(model, tmp_path / "ckpt", note="test")
    loaded = reconstructor.load(tmp_path / "ckpt")
    np.testing.assert_array_equal(model(features).numpy(), loaded(features).numpy())
    assert loaded.model_id == meta["sha256"] and meta["layers"][0] == [5, 512, 1, "valid"]
    with open(tmp_path / "ckpt" / reconstructor.WEIGHTS_FILE, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(WeightsError, match="sha256"):
        reconstructor.load(tmp_path / "ckpt")


def test_noisy_features_stay_unit_norm():
    features = np.eye(4, dtype=np.float32)
    noisy = training.noisy_features(features, [0.1], np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.norm(noisy, axis=1), 1.0, atol=1e-6)
    assert not np.allclose(noisy, features)


def test_training_dataset_draws_a_new_rate_each_time_an_image_comes_round():
    views = np.stack([np.full((4, 2), rate, np.float32) for rate in range(3)])  # (R=3, N=4, D=2)
    crops = np.zeros((4, 160, 160, 3), np.uint8)
    batches = training.training_dataset(views, crops, batch_size=4).take(12)
    rates_per_pass = [tuple(np.sort(f.numpy()[:, 0])) for f, _ in batches]
    assert len(set(rates_per_pass)) > 1


def test_training_dataset_keeps_each_feature_with_its_own_crop_and_mask():
    num_images = 6
    views = np.stack([np.stack([[r, i] for i in range(num_images)]) for r in range(2)]).astype(np.float32)
    crops = np.stack([np.full((160, 160, 3), 10 * i, np.uint8) for i in range(num_images)])
    masks = np.stack([np.full((160, 160), i % 2, np.uint8) for i in range(num_images)])
    for features, targets in training.training_dataset(views, crops, 4, masks=masks).take(6):
        index = features.numpy()[:, 1].astype(int)
        np.testing.assert_allclose(targets.numpy()[:, 0, 0, 0], (10 * index) / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_array_equal(targets.numpy()[:, 0, 0, 3], index % 2)
        assert targets.shape == (4, 160, 160, 4)


def test_train_writes_checkpoint_with_validation_metrics(tmp_path, fixture_crops):
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    config = training.TrainConfig(str(tmp_path / "ckpt"), epochs=1, batch_size=2, perceptual_weight=0.0, verbose=0)
    meta = training.train(config, features[None], fixture_crops, {"data": {}}, (features[:2], fixture_crops[:2]))
    assert {"loss", "val_loss", "val_mae"} <= set(meta["final_metrics"])
    assert reconstructor.load(tmp_path / "ckpt")(features[:1]).shape == (1, 160, 160, 3)
    assert meta["epochs_done"] == 1 and meta["steps"] == meta["steps_this_session"] == 3


def test_a_run_in_two_sessions_reports_its_whole_cost(tmp_path, fixture_crops):
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    config = training.TrainConfig(str(tmp_path / "ckpt"), epochs=1, batch_size=2, perceptual_weight=0.0, verbose=0)
    first = training.train(config, features[None], fixture_crops, {"data": {}})
    progress = tmp_path / "ckpt" / resume.STATE_DIR / resume.PROGRESS_FILE
    assert json.loads(progress.read_text())["step"] == 3
    progress.write_text(json.dumps({"step": 3, "wall_time_s": 1000.0}))  # as if the first session took longer
    config.epochs = 2
    meta = training.train(config, features[None], fixture_crops, {"data": {}})
    assert first["epochs_done"] == 1 and meta["epochs_this_session"] == 1  # epoch 1 was not redone
    assert meta["epochs_done"] == 2 and meta["steps"] == 6 and meta["steps_this_session"] == 3
    assert 1000 < meta["wall_time_s"] < 1000 + meta["wall_time_s_this_session"] + 60


def test_identity_term_compares_facenet_features_of_target_and_reconstruction():
    stand_in = tf.keras.Sequential([tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(8)])
    stand_in.build((None, 160, 160, 3))
    loss = losses.ReconstructionLoss(None, 0.0, facenet=stand_in, identity_weight=0.5)
    rng = np.random.default_rng(0)
    target = tf.constant(rng.uniform(-1, 1, (2, 160, 160, 3)), tf.float32)
    np.testing.assert_allclose(loss.identity(target, target), 0.0, atol=1e-6)  # same face: cosine 1
    guess = tf.Variable(tf.reverse(target, [0]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(target)
        value = loss(target, guess)
        identity = loss.identity(target, guess)
        plain = losses.ReconstructionLoss(None, 0.0)(target, guess)
    assert float(value) > float(plain)  # the identity term adds to the MAE
    held = tape.gradient(identity, target)
    assert held is None or not np.any(held.numpy())  # the target's features are held fixed
    assert np.any(tape.gradient(identity, guess).numpy() != 0)
    with pytest.raises(ValueError):
        losses.ReconstructionLoss(None, 0.0, identity_weight=0.5)


def test_training_starts_from_another_checkpoint(tmp_path, fixture_crops):
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    source = reconstructor.Reconstructor(16).build_for_inference()
    source_meta = reconstructor.save(source, tmp_path / "source")
    config = training.TrainConfig(
        str(tmp_path / "ckpt"),
        epochs=1,
        batch_size=2,
        initial_lr=1e-12,
        final_lr=1e-12,
        perceptual_weight=0.0,
        init_from=str(tmp_path / "source"),
        verbose=0,
    )
    meta = training.train(config, features[None], fixture_crops, {"data": {}}, (features[:2], fixture_crops[:2]))
    tuned = reconstructor.load(tmp_path / "ckpt")
    for a, b in zip(tuned.trainable_weights, source.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)  # a learning rate of ~0: the source's weights
    assert meta["warm_start"]["sha256"] == source_meta["sha256"]
    check = meta["warm_start_check"]  # held-out loss before the first update and at the end
    assert check["faces"] == "held-out" and check["images"] == 2 and {"loss", "mae"} <= set(check["after"])
    assert check["worse"] == (check["after"]["loss"] > check["before"]["loss"])


def test_batch_norm_recalibration_matches_the_training_batch_statistics():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 16)).astype(np.float32)
    model = reconstructor.Reconstructor(16).build_for_inference()
    before = np.abs(model(features) - model(features, training=True))  # fresh moving stats: 0 and 1
    assert training.recalibrate_batch_norm(model, features[None], batch_size=8) == 1
    after = np.abs(model(features) - model(features, training=True))  # equal up to Bessel's correction
    assert after.max() < 3e-2 and after.mean() < before.mean() / 20
    assert all(block.norm.momentum == 0.99 for block in model.blocks)


def test_batch_norm_recalibration_averages_over_batches():
    features = np.random.default_rng(1).normal(size=(1, 12, 16)).astype(np.float32)
    model = reconstructor.Reconstructor(16).build_for_inference()
    assert training.recalibrate_batch_norm(model, features, batch_size=4, seed=0) == 3
    order = np.random.default_rng(0).permutation(12)
    first = model.blocks[0]
    means = [
        tf.reduce_mean(first.deconv(tf.reshape(features[0, order[i : i + 4]], (-1, 1, 1, 16))), axis=(0, 1, 2))
        for i in (0, 4, 8)
    ]
    np.testing.assert_allclose(first.norm.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-6)


def test_offline_without_vgg_file_is_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(losses.tf.keras.utils, "get_file", offline)
    with pytest.raises(WeightsError, match="--vgg_weights"):
        losses.vgg_feature_model("block3_conv2")


def test_a_session_cut_short_by_the_time_limit_saves_no_final_model(tmp_path, fixture_crops, capsys):
    """Only the training state is saved (a final meta.json would make the run look finished); the next session
    continues from it and saves the model."""
    features = np.random.default_rng(0).normal(size=(len(fixture_crops), 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    config = training.TrainConfig(
        str(tmp_path / "ckpt"), epochs=2, batch_size=2, perceptual_weight=0.0, max_minutes=0, verbose=0
    )
    assert training.train(config, features[None], fixture_crops, {"data": {}}) is None
    assert "stopped by the time limit at step 3 of 6: re-run to continue" in capsys.readouterr().out
    assert not (tmp_path / "ckpt" / "meta.json").exists()
    config.max_minutes = None
    meta = training.train(config, features[None], fixture_crops, {"data": {}})
    assert meta["steps"] == 6 and meta["steps_this_session"] == 3
