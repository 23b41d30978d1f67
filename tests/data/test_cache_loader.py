import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import ImageFolder, eval_transform, train_transform
from imgcls.data.cache import DecodedCache, clear_caches, default_cache_dir, human_size, list_caches
from imgcls.data.loader import make_loader
from imgcls.data.transforms import normalize_batch
from imgcls.errors import DataError


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(5):
            img = Image.fromarray(rng.integers(0, 256, (60 + i, 80, 3), dtype=np.uint8))
            img.save(tmp_path / "d" / cls / f"{i}.png")
    return tmp_path / "d"


def test_cache_holds_resized_pixels_and_is_reused(folder, tmp_path):
    paths = sorted(folder.rglob("*.png"))
    cache = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    img = cache.image(3)
    want = Image.open(paths[3]).convert("RGB")
    want = want.resize((int(32 * want.width / want.height), 32), Image.BILINEAR)
    assert np.array_equal(np.asarray(img), np.asarray(want))
    mtime = cache.data_path.stat().st_mtime_ns
    again = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    assert again.data_path == cache.data_path and again.data_path.stat().st_mtime_ns == mtime


def test_cache_is_invalidated_when_a_file_changes(folder, tmp_path):
    paths = sorted(folder.rglob("*.png"))
    first = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    Image.new("RGB", (40, 40), (255, 0, 0)).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    second = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    assert second.key != first.key
    assert np.asarray(second.image(0))[0, 0].tolist() == [255, 0, 0]


def test_cache_bad_file(folder, tmp_path):
    (folder / "a" / "0.png").write_bytes(b"")
    paths = sorted(folder.rglob("*.png"))
    with pytest.raises(DataError, match=r"0\.png"):
        DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").glob("*"))  # nothing half-written left behind
    ds = ImageFolder(folder, eval_transform(resize=32, crop=24), cache=True, cache_dir=tmp_path / "c",
                     skip_bad=True, cache_side=32)
    assert ds[0][0].shape == (3, 24, 24)


def test_loader_is_seeded_and_batches_normalise(folder, tmp_path):
    ds = ImageFolder(folder, train_transform(crop=24, uint8=True), cache=True, cache_dir=tmp_path / "c",
                     cache_side=32)

    def run(seed, workers):
        torch.manual_seed(123)  # workers=0 draws augmentations from the global generator
        return [b for b in make_loader(ds, batch_size=4, shuffle=True, workers=workers, seed=seed)]

    a, b, c = run(1, 0), run(1, 0), run(2, 0)
    assert [x.shape for x, _ in a] == [(4, 24, 24, 3), (4, 24, 24, 3), (2, 24, 24, 3)]
    assert all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))
    assert not all(torch.equal(s, t) for (_, s), (_, t) in zip(a, c))
    w1, w2 = run(1, 2), run(1, 2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(w1, w2))

    x = normalize_batch(a[0][0])
    assert x.shape == (4, 3, 24, 24) and x.is_contiguous(memory_format=torch.channels_last)
    ref = (a[0][0].permute(0, 3, 1, 2).float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(x, ref, atol=1e-5)


@pytest.mark.parametrize("env, want", [
    ({"IMGCLS_HOME": "/srv/imgcls", "XDG_CACHE_HOME": "/xdg"}, "/srv/imgcls/decoded"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/imgcls/decoded"),
    ({}, "~/.cache/imgcls/decoded"),
])
def test_default_cache_dir_follows_the_environment(monkeypatch, env, want):
    for name in ("IMGCLS_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_cache_dir() == Path(want).expanduser()


def test_a_build_says_where_and_how_much(folder, tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO", logger="imgcls")
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "home"))
    cache = DecodedCache(sorted(folder.rglob("*.png")), side=32)
    assert cache.data_path.parent == tmp_path / "home" / "decoded"
    size = cache.data_path.stat().st_size
    assert (f"decoded cache: 10 images, {human_size(size)} at {cache.data_path} (imgcls cache --clear removes it)"
            in caplog.text)
    caplog.clear()
    DecodedCache(sorted(folder.rglob("*.png")), side=32)
    assert "decoded cache" not in caplog.text  # reused: nothing built, nothing to say


def test_list_and_clear_touch_only_imgclss_own_files(folder, tmp_path):
    where = tmp_path / "c"
    first = DecodedCache(sorted(folder.rglob("*.png")), side=32, cache_dir=where)
    second = DecodedCache(sorted((folder / "a").glob("*.png")), side=24, cache_dir=where)
    pixels = first.data_path.read_bytes()[:40]  # a build's temporary file starts as the pixel file does
    stale = where / f"{'0' * 24}.tmp{2**22 + 7}"  # a build whose process is gone (pid above Linux's maximum)
    stale.write_bytes(pixels)
    running = where / f"{'1' * 24}.tmp{os.getpid()}"  # a build that is still running: kept
    running.write_bytes(pixels)
    lookalikes = {"notes.json": "{}", f"{'2' * 24}.json": '{"side": 1}', f"{'2' * 24}.u8": "mine",
                  f"{'3' * 24}.tmp5": "mine", f"{'4' * 24}.5.x.inuse": "mine"}  # named like ours, not ours: kept
    for name, text in lookalikes.items():
        (where / name).write_text(text)
    caches = list_caches(where)
    assert {c.key for c in caches} == {first.key, second.key, "0" * 24, "1" * 24}
    done = {c.key: c for c in caches if c.complete}
    assert done[first.key].images == 10 and done[first.key].source == str(folder.resolve())
    assert done[second.key].images == 5 and done[second.key].source == str((folder / "a").resolve())
    assert done[first.key].users == [os.getpid()]  # this process holds both
    assert first.data_path in done[first.key].files and first.index_path in done[first.key].files
    problems = {c.key: c.problem for c in caches}
    assert problems["0" * 24] == "left by a stopped build" and problems["1" * 24] == "being built"

    cleared = clear_caches(where)  # both caches are in use here: kept
    assert sorted(c.key for c in cleared.in_use) == sorted([first.key, second.key, "1" * 24])
    assert [p.name for p, _ in cleared.removed] == [stale.name]
    del first, second  # nobody holds them any more
    cleared = clear_caches(where)
    assert [c.key for c in cleared.in_use] == ["1" * 24]
    assert len(cleared.removed) == 4 and all(p.suffix in (".u8", ".json") for p, _ in cleared.removed)
    assert sorted(p.name for p in where.iterdir()) == sorted([running.name, *lookalikes])


def test_a_cache_held_by_another_process_is_kept_until_it_ends(folder, tmp_path):
    code = ("import sys; from pathlib import Path; from imgcls.data.cache import DecodedCache; "
            f"c = DecodedCache(sorted(Path({str(folder)!r}).rglob('*.png')), side=32, "
            f"cache_dir={str(tmp_path / 'c')!r}); print(c.key, flush=True); sys.stdin.readline()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for ending in ("exits", "is killed"):
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env)
        key = child.stdout.readline().strip()  # it has built (or opened) the cache and holds it
        cleared = clear_caches(tmp_path / "c")
        assert [(c.key, c.users) for c in cleared.in_use] == [(key, [child.pid])] and cleared.removed == []
        if ending == "exits":
            child.communicate("\n")
        else:
            child.kill()  # its marker stays behind, naming a process that is gone
            child.wait()
            assert [c.users for c in list_caches(tmp_path / "c")] == [[]]
        assert sorted(p.suffix for p, _ in clear_caches(tmp_path / "c").removed) == (
            [".json", ".u8"] if ending == "exits" else [".inuse", ".json", ".u8"])
        assert not list((tmp_path / "c").iterdir())


def test_a_damaged_index_is_listed_as_such_and_rebuilt(folder, tmp_path, caplog):
    paths = sorted(folder.rglob("*.png"))
    cache = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    want = cache.array(3).copy()
    index = json.loads(cache.index_path.read_text())
    cache.index_path.write_text(json.dumps(index | {"files": 5}))
    del cache
    [info] = list_caches(tmp_path / "c")
    assert info.problem == 'damaged: its index\'s "files" is 5, not a list of file paths' and not info.complete
    again = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    assert "a damaged decoded cache (its index's \"files\" is 5, not a list of file paths); building it again" \
        in caplog.text
    assert np.array_equal(again.array(3), want) and list_caches(tmp_path / "c")[0].complete


@pytest.mark.parametrize("damage, says", [
    (lambda index: index | {"shapes": index["shapes"][:-1]}, '"shapes" is'),
    (lambda index: index | {"offsets": [10**9] * len(index["offsets"])}, "points outside the pixel file"),
    (lambda index: index | {"size": index["size"] + 1}, "its index says"),
    (lambda index: index | {"version": 1}, "format version 1"),
])
def test_every_field_of_the_index_is_checked(folder, tmp_path, damage, says):
    paths = sorted(folder.rglob("*.png"))
    cache = DecodedCache(paths, side=32, cache_dir=tmp_path / "c")
    cache.index_path.write_text(json.dumps(damage(json.loads(cache.index_path.read_text()))))
    [info] = list_caches(tmp_path / "c")
    assert info.problem.startswith("damaged: ") and says in info.problem
    assert DecodedCache(paths, side=32, cache_dir=tmp_path / "c").image(0).size == cache.image(0).size


def test_a_cache_deleted_by_hand_is_one_line(folder, tmp_path):
    cache = DecodedCache(sorted(folder.rglob("*.png")), side=32, cache_dir=tmp_path / "c")
    cache.data_path.unlink()
    assert cache.array(0).shape[2] == 3  # mapped already: the deleted file stays readable
    spawned = pickle.loads(pickle.dumps(cache))  # a worker of a spawned DataLoader maps the file anew
    with pytest.raises(DataError, match=r"the decoded cache was removed while this run used it \(deleted by hand\?\); "
                                        r"run again to build it anew, or train without --cache$"):
        spawned.array(0)
