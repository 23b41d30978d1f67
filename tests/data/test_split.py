import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.data import make_split, open_dataset, write_split
from imgcls.errors import DataError


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    for cls, n in [("a", 20), ("b", 11), ("c", 9)]:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / cls / f"{cls}{i:02d}.png")
    return root


def _names(samples):
    return sorted(p.name for p, _ in samples)


def test_stratified_counts_round_down_per_class(source):
    s = make_split(source, val=0.25, test=0.1)
    assert s.counts() == {"train": [13, 8, 7], "val": [5, 2, 2], "test": [2, 1, 0]}
    every = [p for part in s.parts.values() for p, _ in part]
    assert len(every) == len(set(every)) == 40  # a partition: nothing lost, nothing twice


def test_reproducible_for_a_seed_and_different_across_seeds(source):
    a, b, c = make_split(source, seed=1), make_split(source, seed=1), make_split(source, seed=2)
    assert _names(a.parts["val"]) == _names(b.parts["val"]) != _names(c.parts["val"])


@pytest.mark.parametrize("mode", ["copy", "link", "index"])
def test_modes_give_the_same_datasets(source, tmp_path, mode):
    s = make_split(source, val=0.2, seed=3)
    before = sorted(p.relative_to(source) for p in source.rglob("*"))
    write_split(s, tmp_path / "out", mode=mode)
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == before  # source untouched
    for part in ("train", "val"):
        ds = open_dataset(tmp_path / "out", part)
        assert ds.classes == ["a", "b", "c"]
        assert sorted(p.name for p, _ in ds.samples) == _names(s.parts[part])
        assert ds[0][0].size == (8, 8)


def test_refuses_non_empty_destination_without_force(source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    s = make_split(source)
    with pytest.raises(DataError, match="not empty.*--force"):
        write_split(s, out)
    write_split(s, out, force=True)
    write_split(s, out, force=True)  # a second split replaces the first
    assert (out / "mine.txt").read_text() == "keep me"
    assert len(list((out / "val").rglob("*.png"))) == 2 + 1 + 0


def test_bad_fractions_and_dest_inside_source(source):
    with pytest.raises(DataError, match="fractions"):
        make_split(source, val=0.6, test=0.5)
    with pytest.raises(DataError, match="inside the source"):
        write_split(make_split(source), source / "a" / "out")


def test_cli_split(source, tmp_path, capsys):
    assert main(["split", str(source), "-o", str(tmp_path / "o"), "--mode", "index", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "total" in out and "split.json" in out
    assert main(["split", str(source), "-o", str(tmp_path / "o"), "--mode", "index"]) == 2
    assert "--force" in capsys.readouterr().err
