import os
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
    stale = where / f"{'0' * 24}.tmp{2**22 + 7}"  # a build whose process is gone (pid above Linux's maximum)
    stale.write_bytes(b"x" * 10)
    running = where / f"{'1' * 24}.tmp{os.getpid()}"  # a build that is still running: kept
    running.write_bytes(b"y")
    (where / "notes.json").write_text("{}")  # not ours: kept
    caches = list_caches(where)
    assert {c.key for c in caches} == {first.key, second.key, "0" * 24, "1" * 24}
    done = {c.key: c for c in caches if c.complete}
    assert done[first.key].images == 10 and done[first.key].source == str(folder.resolve())
    assert done[second.key].images == 5 and done[second.key].source == str((folder / "a").resolve())
    assert done[first.key].size == first.data_path.stat().st_size + first.index_path.stat().st_size
    removed = clear_caches(where)
    assert sorted(p.name for p, _ in removed) == sorted(
        [f"{first.key}.u8", f"{first.key}.json", f"{second.key}.u8", f"{second.key}.json", stale.name])
    assert sorted(p.name for p in where.iterdir()) == sorted([running.name, "notes.json"])
    assert clear_caches(tmp_path / "nothing-here") == [] and list_caches(tmp_path / "nothing-here") == []
