import json

import pytest
from PIL import Image

from imgcls.cli import main
from imgcls.data import make_split, open_dataset, write_split
from imgcls.errors import ConfigError, DataError


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    for cls, n in [("a", 20), ("b", 11), ("c", 9)]:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i * 10, ord(cls), 0)).save(root / cls / f"{cls}{i:02d}.png")
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


def test_force_replaces_only_an_earlier_split(source, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    s = make_split(source)
    for force in (False, True):  # a folder no split wrote is never emptied, not even with force
        with pytest.raises(DataError, match="holds no earlier imgcls split"):
            write_split(s, mine, force=force)
    out = tmp_path / "out"
    write_split(s, out)
    (out / "mine.txt").write_text("keep me")
    (out / "val" / "a" / "mine.png").write_bytes(b"mine")
    with pytest.raises(DataError, match="earlier split; pass --force"):
        write_split(s, out)
    write_split(make_split(source, val=0.5), out, force=True)  # a second split replaces the first
    assert (out / "mine.txt").read_text() == "keep me" and (out / "val" / "a" / "mine.png").read_bytes() == b"mine"
    assert len(list((out / "val").rglob("*.png"))) == 10 + 5 + 4 + 1
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


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


def test_duplicates_are_reported_or_dropped(source):
    import shutil

    shutil.copy(source / "a" / "a00.png", source / "c" / "c_from_a.png")  # two labels
    shutil.copy(source / "b" / "b03.png", source / "b" / "b03_copy.png")  # twice in b
    assert make_split(source).duplicates == []  # "ignore": nothing hashed
    s = make_split(source, val=0.5, duplicates="report")
    assert [[p.name for p, _ in g] for g in s.duplicates] == [["a00.png", "c_from_a.png"], ["b03.png", "b03_copy.png"]]
    assert sum(map(len, s.parts.values())) == 42
    part_of = {p.name: part for part, samples in s.parts.items() for p, _ in samples}
    leaks = [int(part_of["a00.png"] != part_of["c_from_a.png"]), int(part_of["b03.png"] != part_of["b03_copy.png"])]
    warnings = s.duplicate_warnings()
    assert [w.split(":")[0] for w in warnings] == [
        f"1 image(s) stored in two or more classes (no true label), {leaks[0]} of them in two parts (a leak)",
        f"1 image(s) stored more than once in one class, {leaks[1]} of them in two parts (a leak)"]
    d = make_split(source, val=0.5, duplicates="drop")
    names = {p.name for samples in d.parts.values() for p, _ in samples}
    assert len(names) == 39 and not names & {"a00.png", "c_from_a.png", "b03_copy.png"}
    assert d.duplicate_warnings()[1].startswith("1 image(s) stored more than once in one class; dropped all but "
                                                "the first copy (--dedup): b/b03.png == b/b03_copy.png")
    with pytest.raises(ConfigError, match="duplicates='keep'"):
        make_split(source, duplicates="keep")


def test_an_interrupted_split_is_replaceable(source, tmp_path):
    out = write_split(make_split(source), tmp_path / "out")
    for p in list((out / "train" / "a").iterdir())[:5]:  # as if it had stopped early
        p.unlink()
    write_split(make_split(source), out, force=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        json.loads((out / ".imgcls-split.json").read_text())["files"] + [".imgcls-split.json"])
