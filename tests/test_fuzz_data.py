"""A bounded, seeded fuzzer over the data-set readers (COCO JSON, COCO panoptic JSON, folder sets): each round
mutates a small valid set — a JSON value swapped for a hostile one, bytes flipped or cut, a mask or image
rewritten in another mode or size — and reads it. The rule: the reader returns a data set or raises an
EdgeSegError of one line; any other exception, a crash or a hang fails. Budgets are lowered so a mutation that
slips past a check cannot take the machine. About 45 s; a failure names the seed and round to replay."""
import copy
import json
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeseg.data import get_dataset
from edgeseg.errors import EdgeSegError

SEED = 20
SECONDS = 45  # CI bound: the rounds stop here (each round is deterministic from the seed)
ROUNDS = 6000

HOSTILE = [None, True, -1, 0, 2**31, 2**63, 10**40, -(10**40), 1e308, float("nan"), float("inf"), "", "x" * 5000,
           "../../etc/passwd", "a\x00b", [], [[]], {}, [0] * 1000, {"counts": "0" * 5000, "size": [8, 8]},
           [[0, 0, 1e6, 0, 0, 1e6]], [[0.5] * 7], {"counts": [64], "size": [8, 8]}, [[1, 1, 6, 1, 1, 6] * 300]]


def _coco(root: Path) -> dict:
    (root / "images").mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.png")
    return {"images": [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 8} for i in (1, 2)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 8, 1, 1, 6]]},
                            {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 0,
                             "segmentation": {"size": [8, 10], "counts": [10, 30, 40]}}],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def _panoptic(root: Path) -> dict:
    (root / "images").mkdir(parents=True)
    (root / "png").mkdir()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(root / "images" / "1.png")
    ids = np.zeros((8, 10, 3), np.uint8)
    ids[:4, :, 0], ids[4:, :, 0] = 1, 2
    Image.fromarray(ids).save(root / "png" / "1.png")
    return {"images": [{"id": 1, "file_name": "1.png", "width": 10, "height": 8}],
            "annotations": [{"image_id": 1, "file_name": "1.png",
                             "segments_info": [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 2, "iscrowd": 0}]}],
            "categories": [{"id": 1, "name": "sky", "isthing": 0}, {"id": 2, "name": "car", "isthing": 1}]}


def _paths(value, path=()):
    """Every (path to a value) inside nested lists and dicts."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _paths(v, path + (k,))


def _mutate_json(data: dict, rng: random.Random) -> bytes:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in _paths(data) if p])
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        what = rng.random()
        if what < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        elif what < 0.8 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.extend(copy.deepcopy(parent) * rng.randint(1, 3))  # repeated records: duplicate ids
    text = json.dumps(data).encode()
    if rng.random() < 0.3:  # bytes: flipped, cut, or brackets inserted
        b = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] = rng.choice(b"[]{}\",:0\x00\xff9e-")
        text = bytes(b[: rng.randint(1, len(b))] if rng.random() < 0.3 else b)
    return text


def _mutate_folder(root: Path, rng: random.Random) -> None:
    mask = root / "masks" / f"{rng.randint(0, 1)}.png"
    image = root / "images" / f"{rng.randint(0, 1)}.png"
    what = rng.randrange(6)
    if what == 0:  # a mask of another mode, size or values
        mode = rng.choice(["1", "L", "P", "I", "I;16", "RGB", "LA", "F"])
        w, h = rng.choice([(10, 8), (8, 10), (1, 1), (3000, 1)])
        mask.unlink(missing_ok=True)  # an earlier round's link is replaced, not written through
        Image.new(mode, (w, h), rng.choice([0, 1, 2, 7, 255])).save(mask, format="TIFF" if mode in ("F", "I") else "PNG")
    elif what == 1:  # an image of another mode (CMYK, 16-bit, float, palette...)
        mode = rng.choice(["1", "L", "P", "I", "I;16", "F", "CMYK", "YCbCr", "LA", "RGBA"])
        fmt = "TIFF" if mode in ("F", "I", "CMYK", "YCbCr") else "PNG"  # what PNG cannot hold, as TIFF
        arr = (np.random.default_rng(rng.randrange(1 << 30)).random((8, 10)) * rng.choice([1, 255, 65535, 1e38]))
        im = Image.fromarray(arr.astype(np.float32), "F") if mode == "F" else Image.new(mode, (10, 8), 3)
        image.unlink(missing_ok=True)
        im.save(image, format=fmt)
    elif what == 2:  # bytes flipped or cut
        target = rng.choice([mask, image])
        if target.is_symlink() or not target.is_file():  # an earlier round's link (to /dev/zero): nothing to flip
            return
        b = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        target.write_bytes(bytes(b[: rng.randint(0, len(b))] if rng.random() < 0.5 else b))
    elif what == 3:
        (root / "classes.txt").write_text(rng.choice(["", "one\n", "a\nb\n" * 200, "\x00\n\xff\n", "a\n" * 3]))
    elif what == 4:  # a mask or image replaced by a link: a loop, a device, a folder
        target = rng.choice([mask, image])
        target.unlink(missing_ok=True)
        os.symlink(rng.choice([target.name, "/dev/zero", "/"]), target)
    else:
        mask.unlink(missing_ok=True)


def _folder(root: Path) -> None:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("bg\nfg\n")
    for i in range(2):
        Image.fromarray(np.full((8, 10, 3), 50 * i, np.uint8)).save(root / "images" / f"{i}.png")
        m = np.zeros((8, 10), np.uint8)
        m[2:5, 3:7] = 1
        Image.fromarray(m).save(root / "masks" / f"{i}.png")


def _read(spec: str) -> None:
    try:
        get_dataset(spec, "val")
    except EdgeSegError as e:
        assert "\n" not in str(e).strip(), str(e)


@pytest.mark.slow
def test_fuzzed_data_sets_are_read_or_refused_in_one_line(tmp_path, monkeypatch):
    for name, value in (("BYTES", 64 << 20), ("PIXELS", 1 << 20), ("JSON_BYTES", 1 << 20)):
        monkeypatch.setenv(f"EDGESEG_MAX_{name}", str(value))
    rng = random.Random(SEED)
    start = time.monotonic()
    rounds = 0
    while rounds < ROUNDS and time.monotonic() - start < SECONDS:
        d = tmp_path / str(rounds)
        kind = rng.choice(["coco", "panoptic", "folder"])
        if kind == "folder":
            _folder(d)
            for _ in range(rng.randint(1, 2)):
                _mutate_folder(d, rng)
            spec = f"folder:{d}"
        else:
            good = _coco(d) if kind == "coco" else _panoptic(d)
            (d / "a.json").write_bytes(_mutate_json(good, rng))
            spec = f"coco:{d / 'images'},{d / 'a.json'}" if kind == "coco" else f"coco-panoptic:{d / 'images'},{d / 'a.json'},{d / 'png'}"
        try:
            _read(spec)
        except AssertionError:
            raise
        except Exception as e:  # anything but a one-line EdgeSegError is a bug: name the round to replay it
            raise AssertionError(f"seed {SEED} round {rounds} ({kind}): {type(e).__name__}: {e}") from e
        rounds += 1
    assert rounds >= 50, f"only {rounds} rounds in {SECONDS} s"
