"""Shards of a rate-distortion run pool into the result one process would have written."""

import pytest

from sfc_tf.evaluation import curves


def test_shards_cover_every_image_once():
    slices = [curves.shard(f"{k}/3", 10) for k in (1, 2, 3)]
    assert sorted(i for s in slices for i in range(10)[s]) == list(range(10))
    for bad in ("0/2", "3/2", "1-2", "x"):
        with pytest.raises(ValueError, match="shard"):
            curves.shard(bad, 10)
    with pytest.raises(ValueError, match="more shards"):
        curves.shard("1/11", 10)


def _result(shard: str, faces: int, offset: float) -> dict:
    def point(curve, parameter, bits, psnr, **extra):
        return {
            "curve": curve,
            "parameter": parameter,
            "bits_per_face": bits + offset,
            "psnr": psnr + offset,
            "images_at_psnr_ceiling": 1,
            "ms_ssim": 0.9 + offset / 100,
            "ms_ssim_images": faces // 2,
            **extra,
        }

    summary = {"psnr": 15.0 + offset, "images_at_psnr_ceiling": 0, "ms_ssim": 0.5, "ms_ssim_images": faces // 2}
    points = [point("a", q, 1000.0 * q, 30.0 + q) for q in (1, 2, 3, 4)]
    points += [point("b", q, 900.0 * q, 30.0 + q, modes_chosen={"none": faces - 1, "mmse": 1}) for q in (1, 2, 3, 4)]
    return {
        "command": f"python eval/rate_distortion.py --shard {shard}",
        "shard": shard,
        "num_images": faces,
        "folds": ["1", "2"],
        "base_file_bits_per_face": 240.0 + offset,
        "base_record_bits_per_face": 200.0,
        "reconstruction_only": summary,
        "mmse_prediction_only": summary,
        "mean_face_only": summary,
        "points": points,
        "bd_pairs": [["b", "a"]],
        "base_layer_accuracy": 0.98,
        "rate_accuracy_points": [{"codec": "b", "parameter": 1, "bits_per_face": 900.0 + offset, "accuracy": 0.98}],
        "wall_time_s": 10.0,
    }


def test_pooled_means_are_weighted_by_faces_and_bd_rows_recomputed():
    pooled = curves.pool_rd_shards([_result("2/2", 30, 1.0), _result("1/2", 10, 0.0)])
    first = pooled["points"][0]
    assert pooled["num_images"] == 40 and pooled["shard"] == "1-2/2"
    assert first["bits_per_face"] == pytest.approx(1000 + 30 / 40) and first["psnr"] == pytest.approx(31 + 30 / 40)
    assert first["ms_ssim"] == pytest.approx(0.9 + 0.01 * 15 / 20) and first["ms_ssim_images"] == 20
    assert first["images_at_psnr_ceiling"] == 2
    assert pooled["points"][4]["modes_chosen"] == {"mmse": 2, "none": 38}
    assert pooled["base_file_bits_per_face"] == pytest.approx(240.75)
    assert pooled["rate_accuracy_points"][0]["bits_per_face"] == pooled["points"][4]["bits_per_face"]
    assert pooled["wall_time_s"] == 20.0 and len(pooled["shard_commands"]) == 2
    (row,) = pooled["bd"]
    assert (row["test"], row["anchor"]) == ("b", "a") and row["bd_rate_percent"] < 0


def test_shards_of_different_runs_are_refused():
    with pytest.raises(ValueError, match="expected each"):
        curves.pool_rd_shards([_result("1/2", 10, 0.0), _result("1/2", 10, 0.0)])
    other = _result("2/2", 10, 0.0)
    other["points"] = other["points"][:-1]
    with pytest.raises(ValueError, match="different curves"):
        curves.pool_rd_shards([_result("1/2", 10, 0.0), other])
    other = _result("2/2", 10, 0.0)
    other["folds"] = ["3"]
    with pytest.raises(ValueError, match="folds"):
        curves.pool_rd_shards([_result("1/2", 10, 0.0), other])
