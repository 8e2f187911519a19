"""1:N search on base layers: the index against brute force, FAISS against exact search, the index file, and
``sfc index`` / ``sfc search`` on the fixture faces."""

import numpy as np
import pytest

from sfc_tf import cli
from sfc_tf.apps.search import SearchIndex, SearchIndexError


def unit_rows(rng, n, d=64):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gallery():
    rng = np.random.default_rng(0)
    features = unit_rows(rng, 3000)
    return SearchIndex(features, [f"id{i % 1000}" for i in range(3000)], [f"f{i}.sfc" for i in range(3000)], 9, None)


def test_exact_search_is_brute_force(gallery):
    rng = np.random.default_rng(1)
    queries = unit_rows(rng, 50)
    matches = gallery.search(queries, k=7, method="exact")
    brute = ((queries[:, None] - gallery.features[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(matches.rows, np.argsort(brute, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(matches.distances, np.sort(brute, axis=1)[:, :7], atol=1e-5)
    assert matches.labels[0][0] == gallery.labels[matches.rows[0, 0]]
    assert gallery.search(queries[:2], k=10_000, method="exact").rows.shape == (2, 3000)  # k clipped to N


def test_faiss_hnsw_finds_the_exact_nearest_neighbour(gallery):
    rng = np.random.default_rng(2)
    queries = gallery.features[:200] + 0.05 * unit_rows(rng, 200)
    exact = gallery.search(queries, k=1, method="exact")
    approximate = gallery.search(queries, k=1, method="faiss")
    assert np.mean(exact.rows[:, 0] == approximate.rows[:, 0]) >= 0.99
    np.testing.assert_array_equal(exact.rows[:, 0], np.arange(200))


def test_index_file_round_trip_and_bad_files(gallery, tmp_path):
    gallery.save(tmp_path / "g.npz")
    loaded = SearchIndex.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(loaded.features, gallery.features)
    assert (loaded.labels, loaded.sources, loaded.model_set, loaded.mean) == (gallery.labels, gallery.sources, 9, None)
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    for bad in (tmp_path / "junk.npz", tmp_path / "missing.npz"):
        with pytest.raises(SearchIndexError, match="not a search index"):
            SearchIndex.load(bad)
    with pytest.raises(SearchIndexError, match="64-d index"):
        gallery.search(np.zeros((1, 32), np.float32))
    with pytest.raises(SearchIndexError):
        SearchIndex(np.zeros((0, 64)), [], [], 9, None)
    with pytest.raises(ValueError):
        gallery.search(gallery.features[:1], method="annoy")


def test_mixed_model_sets_are_refused(tiny_zoo, fixture_crops):
    from sfc_tf.codec import ScalableCodec

    files = ScalableCodec.from_pretrained(9, align="center").encode_crops(
        fixture_crops[:1]
    ) + ScalableCodec.from_pretrained(12, align="center").encode_crops(fixture_crops[1:2])
    with pytest.raises(SearchIndexError, match="mixes model sets"):
        SearchIndex.from_files(ScalableCodec.from_pretrained(align="center"), files, ["a", "b"], ["a", "b"])


def test_cli_index_and_search(tiny_zoo, fixture_lfw_dir, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    people = ("AJ_Cook", "Akhmed_Zakayev", "Abel_Pacheco", "Aaron_Peirsol")
    for person in people:
        first = sorted((fixture_lfw_dir / person).glob("*.jpg"))[0]
        assert (
            cli.run(
                [
                    "compress",
                    str(first),
                    str(gallery / person / (first.stem + ".sfc")),
                    "--enhancement",
                    "jpeg",
                    "--align",
                    "center",
                ]
            )
            == 0
        )
    index = tmp_path / "gallery.npz"
    assert cli.run(["index", str(gallery), str(index)]) == 0
    assert "4 faces of 4 identities" in capsys.readouterr().out
    assert cli.run(["index", str(gallery), str(index)]) == 1  # no overwrite
    assert "exists" in capsys.readouterr().err

    probe = fixture_lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg"
    member = gallery / "Aaron_Peirsol" / "Aaron_Peirsol_0001.sfc"
    assert cli.run(["search", str(index), str(probe), str(member), "-k", "2", "--align", "center"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{probe}:" and lines[1].split()[:2] == ["1.", "Abel_Pacheco"]
    assert lines[3] == f"{member}:" and lines[4].split()[:3] == ["1.", "Aaron_Peirsol", "0.0000"]
    assert len(lines) == 6

    assert cli.run(["search", str(index), str(probe), "-k", "0"]) == 1
    assert cli.run(["search", str(tmp_path / "missing.npz"), str(probe)]) == 1
    assert "not a search index" in capsys.readouterr().err
