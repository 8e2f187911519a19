"""The package as a user installs it: ``pip install .`` into a fresh venv, used from outside the repository."""

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from sfc_tf import zoo
from sfc_tf.errors import WeightsError

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_install_copies_every_registered_model(tmp_path):
    target, size = zoo.install(REPO / "checkpoints", tmp_path / "checkpoints")
    data = (target / zoo.ZOO_FILE).read_text()
    assert data == (REPO / "checkpoints" / zoo.ZOO_FILE).read_text() and size > 1e6
    for relative in zoo.referenced_paths(json.loads(data)):
        assert (target / relative).exists(), relative
    with pytest.raises(WeightsError, match="no model registry"):
        zoo.install(tmp_path / "nothing", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_installed_wheel_compresses_and_decompresses_a_face(tmp_path):
    """A fresh venv (its dependencies borrowed from this one's site-packages, not its sfc_tf), ``pip install .``,
    ``sfc install-models``, then ``ScalableCodec.from_pretrained()`` from a directory outside the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # .pth files there are not run
    python = str(venv / "bin" / "python")
    env = {**os.environ, "SFC_TF_CACHE": str(tmp_path / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("SFC_TF_CHECKPOINTS", None)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(REPO)],
        check=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    subprocess.run(
        [str(venv / "bin" / "sfc"), "install-models", str(REPO / "checkpoints")],
        check=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    face = REPO / "tests" / "fixtures" / "lfw" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"
    script = f"""
import sfc_tf
from sfc_tf.codec import ScalableCodec
assert "site-packages" in sfc_tf.__file__ and {str(REPO)!r} not in sfc_tf.__file__, sfc_tf.__file__
codec = ScalableCodec.from_pretrained(align="center")
data = codec.encode({str(face)!r}, "jpeg", 50)
decoded = codec.decode(data)
print(len(data), decoded.feature.shape, decoded.image.shape)
"""
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    size, feature_shape, image_shape = result.stdout.split(" ", 2)
    assert int(size) > 100 and feature_shape == "(512,)" and image_shape.strip() == "(160, 160, 3)"


def test_model_set_by_id_as_typed_on_a_command_line():
    default = zoo.model_set()
    assert zoo.model_set(default.id) == zoo.model_set(str(default.id)) == zoo.model_set(default.name) == default
