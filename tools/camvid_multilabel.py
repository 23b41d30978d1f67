"""Write a multi-label CSV (path,labels,split) from the CamVid masks: which of the 11 classes each photo shows.

    python tools/camvid_multilabel.py ../shared/data/camvid -o /tmp/camvid_labels.csv
    imgcls train /tmp/camvid_labels.csv --images ../shared/data/camvid --label-sep ';' ...

A class is present in a photo when its pixels are at least --min-share (0.5%) of the photo's pixels (all of
them, void included); the void index of classes.json (11, Unlabelled) is never a label. Paths are relative to
the CamVid folder (pass it as --images), the split column is the folder's own train/val split. Only the masks
are read. CamVid is for non-commercial research (CC BY-NC 4.0, see its README): the CSV is derived from it,
so keep it out of this repository and out of any package; the script refuses to write inside the CamVid
folder itself.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val")


def photo_labels(mask: Path, classes: list[str], void: int | None, min_share: float) -> list[str]:
    """The classes covering at least `min_share` of a mask's pixels, in class-index order."""
    values = np.asarray(Image.open(mask))
    if values.ndim != 2:
        raise ValueError(f"{mask}: not a one-channel mask of class indices")
    counts = np.bincount(values.ravel(), minlength=len(classes) + 1)
    return [c for i, c in enumerate(classes) if i != void and counts[i] >= min_share * values.size]


def rows(root: Path, min_share: float) -> tuple[list[list[str]], list[str]]:
    """([path, labels, split] per photo with a mask, sorted), [photos with no class above the share]."""
    meta = json.loads((root / "classes.json").read_text())
    classes, void = list(meta["classes"]), (meta.get("void") or {}).get("index")
    out, empty = [], []
    for split in SPLITS:
        for mask in sorted((root / split / "masks").glob("*.png")):
            photo = next((p for p in sorted((root / split / "images").glob(mask.stem + ".*"))), None)
            if photo is None:
                continue
            labels = photo_labels(mask, classes, void, min_share)
            rel = photo.relative_to(root).as_posix()
            if labels:
                out.append([rel, ";".join(labels), split])
            else:
                empty.append(rel)
    return out, empty


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("camvid", type=Path,
                    help="the CamVid folder (train/ and val/ with images/ and masks/, classes.json)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the CSV to write (outside the CamVid folder)")
    ap.add_argument("--min-share", type=float, default=0.005,
                    help="a class is present from this share of the photo's pixels (default 0.005: 0.5%%)")
    ap.add_argument("--no-split", action="store_true",
                    help="leave the split column out (imgcls train then splits the photos itself, --val-fraction); "
                         "CamVid's own val part is one video in which 7 of the 11 classes show in every photo")
    args = ap.parse_args(argv)
    root, out = args.camvid.resolve(), args.output.resolve()
    if not (root / "classes.json").is_file():
        ap.error(f"{args.camvid}: no classes.json; give the CamVid folder (its README describes the layout)")
    if out == root or root in out.parents:
        ap.error(f"-o {args.output}: inside the CamVid folder; write the CSV somewhere of your own")
    if not 0 < args.min_share < 1:
        ap.error(f"--min-share {args.min_share}: a share of the pixels in (0, 1)")
    table, empty = rows(root, args.min_share)
    if not table:
        ap.error(f"{args.camvid}: no photo with a mask under {', '.join(f'{s}/masks' for s in SPLITS)}")
    text = io.StringIO()
    if args.no_split:
        table = [row[:2] for row in table]
    csv.writer(text, lineterminator="\n").writerows([["path", "labels", "split"][:len(table[0])], *table])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text.getvalue(), encoding="utf-8")
    os.replace(tmp, out)
    counts: dict[str, int] = {}
    for _, labels, *_ in table:
        for c in labels.split(";"):
            counts[c] = counts.get(c, 0) + 1
    print(f"wrote {out}: {len(table)} photos, " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items(),
                                                                                       key=lambda kv: -kv[1])))
    if empty:
        print(f"left out {len(empty)} photo(s) with no class above {args.min_share:.2%}: {', '.join(empty[:5])}",
              file=sys.stderr)
    print(f"train with: imgcls train {out} --images {root} --label-sep ';' ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
