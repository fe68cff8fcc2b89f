"""A user's own data: ``root/images/*`` (any format Pillow reads), ``root/masks/<stem>.png``
(class index per pixel, 255 = ignore) and ``root/classes.txt`` (one class name per line).
If ``root/train`` and ``root/val`` exist they are used as the split roots; without them every split is
the same images. Binary sets (two classes) may have masks of 0 and 255 or 1-bit PNGs: background 0,
foreground 1.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from edgeseg import budgets
from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, SegDataset
from edgeseg.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_PIXELS = budgets.DEFAULTS["pixels"]  # 100 MP; $EDGESEG_MAX_PIXELS or max_pixels= (CLI --max-pixels) change it


def pixel_limit(limit: int | None = None) -> int:
    """The pixel budget for one image: ``limit``, else $EDGESEG_MAX_PIXELS, else 100 MP."""
    if limit is not None and limit < 1:
        raise DataError(f"the pixel limit must be positive, got {limit}", "pass e.g. --max-pixels 100000000")
    return budgets.limit("pixels", limit)


@contextlib.contextmanager
def open_within_budget(path: Path, limit: int | None, what: str = "image"):
    """``Image.open`` (which reads only the header), refusing more than ``limit`` pixels before anything is
    decoded. PIL's own bomb check is set to the same limit and its error and warning never escape."""
    from PIL import Image, UnidentifiedImageError

    limit = pixel_limit(limit)
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise DataError(f"{what} {path} claims more than {2 * limit:,} pixels, over the limit of {limit:,}",
                        "downscale or tile it, or raise the limit with --max-pixels / EDGESEG_MAX_PIXELS") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{what} {path} is not a readable image ({type(e).__name__})", "pass a PNG/JPEG/TIFF image file") from None
    with im:
        w, h = im.size
        if w * h > limit:
            raise DataError(f"{what} {path} is {w}×{h} = {w * h:,} pixels, over the limit of {limit:,}",
                            "downscale or tile it, or raise the limit with --max-pixels / EDGESEG_MAX_PIXELS")
        yield im


def load_image(path: str | Path, channels: int = 3, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file into C×H×W float32 in [0, 1] (RGB for 3 channels, grey for 1).

    An image of more than ``max_pixels`` (default 100 MP, or $EDGESEG_MAX_PIXELS) is refused from its
    header, before it is decoded."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}", "check the path")
    if channels not in (1, 3):
        raise DataError(f"cannot load an image as {channels} channels", "use a model with 1 or 3 input channels")
    try:
        with open_within_budget(path, max_pixels) as im:
            # decoded source (at most 4 bytes a pixel and channel), a float copy of it, the float result
            budgets.check("bytes", im.width * im.height * (4 * len(im.getbands()) + 8 + 4 * channels), f"decoding {path}")
            im.load()
            if im.mode.startswith(("I", "F")):  # 16-bit, 32-bit signed, float (a float TIFF saved as .png)
                return _wide_to_unit(np.asarray(im, dtype=np.float32), channels, path)
            try:  # 1-bit, palette, CMYK, YCbCr, LAB, HSV, alpha: through RGB (grey from RGB: Pillow's luma)
                im = im.convert("RGB") if channels == 3 or im.mode not in ("1", "L", "P", "RGB") else im
                im = im if channels == 3 else im.convert("L")
            except ValueError:
                raise DataError(f"image {path} has mode {im.mode}, which cannot be read as "
                                f"{'RGB' if channels == 3 else 'grey'}", "save it as 8-bit RGB or grey") from None
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__})", "pass a PNG/JPEG/TIFF image file") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()


def _wide_to_unit(arr: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """A one-band image of a mode wider than 8 bits -> channels×H×W in [0, 1], the same for every such mode:
    non-negative values divided by the image's maximum (at least 1, so a float image in [0, 1] is kept as it
    is), values with negatives stretched from the minimum to the maximum; NaN or infinity is refused."""
    if not np.isfinite(arr).all():
        raise DataError(f"image {path} holds NaN or infinite values", "save it with finite pixel values")
    lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    scale = 1.0 / (hi - lo if lo < 0 else max(hi, 1.0))  # float64 arithmetic: a ±3e38 range does not overflow
    arr = arr * np.float32(scale) - np.float32(min(lo, 0.0) * scale)
    return np.repeat(arr[None], channels, axis=0).astype(np.float32)


def read_mask(path: Path, max_pixels: int | None = None) -> tuple[np.ndarray, bool]:
    """A mask's values (H×W int64) and whether it is 1-bit (mode "1", read as 0 and 1)."""
    from PIL import UnidentifiedImageError

    try:
        with open_within_budget(path, max_pixels, "mask") as im:
            if im.mode not in ("1", "L", "P", "I", "I;16"):
                raise DataError(f"mask {path} has mode {im.mode}",
                                "save masks as single-channel PNGs (8/16-bit class indices, or 1-bit / 0 and 255 for binary)")
            budgets.check("bytes", im.width * im.height * 16, f"decoding mask {path}")  # decoded, then as int64
            return np.asarray(im, dtype=np.int64), im.mode == "1"  # mode "1" reads as booleans: 0 and 1
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"mask {path} is not a readable image ({type(e).__name__})", "save masks as PNG") from None


def check_mask(mask: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    bad = (mask >= num_classes) & (mask != IGNORE_INDEX)
    if bad.any():
        raise DataError(f"mask {path} has class index {int(mask[bad].max())} but classes.txt lists {num_classes} classes",
                        "fix the mask or add the class name")
    return mask


def load_mask(path: Path, num_classes: int, max_pixels: int | None = None) -> np.ndarray:
    """Class index per pixel (H×W int64); single-channel modes only (1-bit masks are classes 0 and 1)."""
    return check_mask(read_mask(path, max_pixels)[0], path, num_classes)


def is_binary_folder(masks: list[tuple[np.ndarray, bool]], num_classes: int) -> bool:
    """Two classes and masks of 0 and 255 only (1-bit ones aside): 255 is then foreground, not ignore, since
    no mask marks any pixel as class 1 the index way."""
    return num_classes == 2 and all(bits or np.isin(m, (0, 255)).all() for m, bits in masks)


def folder(root: str | Path, split: str = "train", channels: int = 3, transform=None) -> SegDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}", "pass a folder holding images/, masks/ and classes.txt")
    split_root = root / split if (root / split).is_dir() else root
    classes_file = root / "classes.txt" if (root / "classes.txt").is_file() else split_root / "classes.txt"
    if not classes_file.is_file():
        raise DataError(f"no classes.txt in {root}", "write one class name per line into classes.txt")
    class_names = tuple(line.strip() for line in classes_file.read_text().splitlines() if line.strip())
    if len(class_names) < 2:
        raise DataError(f"{classes_file} lists {len(class_names)} class(es)", "list at least two classes")
    image_paths = sorted(p for p in (split_root / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not image_paths:
        raise DataError(f"no images in {split_root / 'images'}", "put the images in an images/ subfolder")
    mask_paths = [split_root / "masks" / (p.stem + ".png") for p in image_paths]
    for p, mask_path in zip(image_paths, mask_paths):
        if not mask_path.is_file():
            raise DataError(f"no mask for {p.name} (looked for {mask_path})", "give every image a PNG mask of the same name")
    budgets.check("images", len(image_paths), f"data set {root}")
    tally = budgets.Tally("bytes", f"data set {root} in memory")
    for p, mask_path in zip(image_paths, mask_paths):  # from the headers, before anything is decoded
        with open_within_budget(mask_path, None, "mask") as im:
            tally.add(im.width * im.height * (16 + 4 * channels), p.name)  # mask as int64 (twice while checked), float image
    raw_masks = [read_mask(m) for m in mask_paths]
    binary = is_binary_folder(raw_masks, len(class_names))
    images, masks = [], []
    for p, mask_path, (mask, bits) in zip(image_paths, mask_paths, raw_masks):
        image = load_image(p, channels)
        mask = check_mask((mask == 255).astype(np.int64) if binary and not bits else mask, mask_path, len(class_names))
        if mask.shape != image.shape[1:]:
            raise DataError(f"mask {mask_path.name} is {mask.shape} but its image is {image.shape[1:]}", "masks must match image size")
        images.append(image)
        masks.append(mask)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.25,))
    # "unsplit": no <split>/ folder, so every split is the same images (eval scores what calibration would see)
    info = DatasetInfo(name=f"folder:{root.name}", class_names=class_names, in_channels=channels, mean=mean, std=std,
                       notes={"images": str(split_root / "images"), "unsplit": split_root == root, "binary_masks": binary})
    return SegDataset(info, images, masks, transform)
