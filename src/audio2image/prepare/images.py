"""Image datasets -> image store: decode each image once, convert to RGB (an image of more than 8 bits per pixel
scaled by its own range first), resize, write uint8 arrays per split; small images kept and listed.

    >>> prepare_caltech256(Path("data/caltech256"), Path("stores/caltech256"), size=256, workers=2)
    >>> prepare_imagefolder(Path("data/my-photos"), Path("stores/photos"), size=256, workers=2)
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from audio2image.datasets import caltech256, imagefolder
from audio2image.datasets.inspection import format_problem, wide_mode
from audio2image.prepare.findings import check_labels, finding_lines, store_findings, upgrade_manifest
from audio2image.prepare.store import (STORE_VERSION, Store, check_splits, complete_manifest, versioned,
                                       write_manifest)
from audio2image.prepare.writer import Row, SplitItems, split_signatures, worker_pool, write_splits
from audio2image.util import DatasetError, log

RESIZE_MODES = ("center", "squash")
# An image with a side under this share of the store's is listed as small: enlarged more than 4x, its stored pixels
# are mostly interpolation. A share, not a fixed number of pixels, so that the rule means the same at every side.
SMALL_SHARE = 0.25


def prepare_caltech256(root: Path, out: Path, *, size: int = 256, resize: str = "center",
                       split: str = "stratified", split_seed: int = 0, include_clutter: bool = True,
                       workers: int = 1, progress: bool = True) -> dict:
    """Prepare (or finish preparing) the image store for the Caltech-256 tree at `root`; returns its manifest."""
    scan = caltech256.scan_caltech256(root, include_clutter=include_clutter)
    facts = {"dataset": "caltech256", "split_protocol": split, "split_seed": split_seed,
             "include_clutter": include_clutter, "strays": scan.strays, "empty_classes": scan.empty_classes}
    return write_image_store(Path(root), Path(out), scan.classes, scan.paths, scan.labels,
                             caltech256.split_images(scan.labels, split, split_seed), facts, size=size,
                             resize=resize, formats=caltech256.FORMATS, workers=workers, progress=progress)


def prepare_imagefolder(root: Path, out: Path, *, size: int = 256, resize: str = "center", split_seed: int = 0,
                        label_column: str = "label", workers: int = 1, progress: bool = True) -> dict:
    """Prepare (or finish preparing) the image store for an ImageFolder tree at `root`; returns its manifest.

    Any format Pillow decodes among ImageFolder's extensions (any file a metadata row names); split folders when
    the tree has them (the splits they lack cut from train), else a stratified 60/20/20 split seeded by
    `split_seed`. `label_column`: the metadata column of the classes, in Hugging Face's layout.
    """
    scan = imagefolder.scan_imagefolder(root, label_column)
    facts = {"dataset": "imagefolder", "layout": scan.layout, "split_protocol": imagefolder.split_source(scan),
             "split_seed": split_seed, "strays": scan.strays, "annotation_problems": scan.problems}
    return write_image_store(Path(root), Path(out), scan.classes, scan.paths, scan.labels,
                             imagefolder.split_imagefolder(scan, split_seed), facts, size=size, resize=resize,
                             formats=None, workers=workers, progress=progress)


def image_item(*, size: int = 256, **_) -> dict:
    """One stored image, from the store options: its array's shape and dtype. The registry's `item`."""
    return {"shape": (size, size, 3), "dtype": "uint8"}


def write_image_store(root: Path, out: Path, classes: list[str], paths: list[str], labels: np.ndarray,
                      splits: dict[str, np.ndarray], facts: dict, *, size: int, resize: str,
                      formats: tuple[str, ...] | None, workers: int, progress: bool) -> dict:
    """Decode `paths` (relative to `root`; class index `labels`) into `out`, split by positions `splits`.

    `formats`: the Pillow formats accepted (others are skipped with their reason); None accepts any.
    `facts` go into the manifest as they are (the dataset's name, its split protocol, what its scan left out).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize {resize!r} is not allowed; choose one of {', '.join(RESIZE_MODES)}")
    items = {name: SplitItems([str(root / paths[i]) for i in positions], [paths[i] for i in positions],
                              labels[positions])
             for name, positions in splits.items()}
    shape = image_item(size=size)["shape"]
    settings = {"root": str(root.resolve()), "size": size, "resize": resize, "formats": formats}

    def signatures_of(version: int) -> dict:
        return split_signatures(items, versioned(settings, version), shape, np.uint8)

    signatures = signatures_of(STORE_VERSION)
    done = complete_manifest(out, signatures_of, functools.partial(_upgrade, out, root, size, signatures))
    if done is not None:
        return done
    out.mkdir(parents=True, exist_ok=True)
    work = functools.partial(pixels_of_images, size=size, resize=resize, formats=formats)
    with worker_pool(workers, __name__) as pool:
        summaries = write_splits(out, items, work, shape, np.uint8, signatures=signatures, pool=pool, chunk=32,
                                 show_progress=progress)
    manifest = {
        "modality": "image", "task": "classification", **facts, "labels": list(classes),
        "source_root": str(root.resolve()), "size": size, "resize": resize, "store_version": STORE_VERSION,
        "splits": {name: {"count": s["count"]} for name, s in summaries.items()},
        "skipped": [dict(item, split=name) for name, s in summaries.items() for item in s["skipped"]],
        "warned": [dict(item, split=name) for name, s in summaries.items() for item in s.get("warned", [])],
        "signatures": signatures,
    }
    check_splits(out, manifest)
    manifest["label_warnings"] = check_labels(out, manifest)
    write_manifest(out, manifest)
    log("\n".join([f"image store {out}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
                   + f"; {len(manifest['skipped'])} images skipped, {len(manifest['warned'])} kept with a "
                   f"warning, {len(facts.get('strays', []))} stray entries ignored",
                   *finding_lines(store_findings(manifest, out), "image")]))
    return manifest


def _upgrade(out: Path, root: Path, size: int, signatures: dict, manifest: dict) -> dict:
    """A store made from the same files and settings by older rules (prepare.store.STORE_VERSION): brought up to
    date from the images' headers alone when the rules give the same rows, refused (naming the images) when not.

    Only images of more than 8 bits per pixel change (version 1 clipped them, mostly to white; now they are scaled
    by their range), so the headers of the kept images tell which: nothing is decoded.
    """
    ids = [(name, item) for name in manifest["splits"] for item in Store(out).split(name).ids]
    headers = [_header(root / item) for _, item in ids]
    wide = [item for (_, item), (mode, _) in zip(ids, headers) if wide_mode(mode)]
    if wide:
        raise DatasetError(
            f"{out} was prepared by an older audio2image (store version {manifest.get('store_version', 1)}), which "
            f"clipped images of more than 8 bits per pixel, mostly to white; it holds {len(wide)} "
            f"({', '.join(wide[:3])}{', ...' if len(wide) > 3 else ''}); delete {out} and run the same command "
            "again to prepare it with each such image scaled by its range (runs trained on it saw them clipped)")
    reasons = [small_warning(*shape, size) if shape else "" for _, shape in headers]
    warned = [{"item": item, "reason": reason, "split": name} for (name, item), reason in zip(ids, reasons) if reason]
    return upgrade_manifest(out, manifest, signatures, warned)


def _header(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(mode, (width, height)) from an image file's header, nothing decoded; (None, None) if it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except Exception:  # a file changed since: its row stays as stored
        return None, None


def small_warning(width: int, height: int, size: int) -> str:
    """Why an image is small for a store of side `size`, or "": either side under SMALL_SHARE of `size`, so that
    it is enlarged more than 1 / SMALL_SHARE times and its stored pixels are mostly interpolation."""
    if min(width, height) >= SMALL_SHARE * size:
        return ""
    return (f"small: {width}x{height} px, under {SMALL_SHARE:.0%} of the store's side ({size} px): enlarged "
            f"{size / min(width, height):.3g}x")


def pixels_of_images(paths: list[str], size: int, resize: str, formats: tuple[str, ...] | None = None) -> list:
    """Per image: its `Row` (uint8 [size, size, 3] RGB pixels, and the warning when it is small), or the reason it
    was skipped."""
    return [load_row(Path(p), size, resize, formats) for p in paths]


def load_row(path: Path, size: int, resize: str, formats: tuple[str, ...] | None) -> Row | str:
    """`load_image` of one file with the warning a small image gets (`small_warning`)."""
    sizes = []
    pixels = load_image(path, size, resize, formats, sizes)
    return pixels if isinstance(pixels, str) else Row(pixels, {}, small_warning(*sizes[0], size))


def load_image(path: Path, size: int, resize: str, formats: tuple[str, ...] | None = ("JPEG",),
               sizes: list | None = None) -> np.ndarray | str:
    """uint8 [size, size, 3] RGB pixels of an image file, or the reason it cannot be stored; `sizes` (a list), if
    given, receives the image's (width, height) as stored before resizing."""
    if not path.is_file():
        return "missing file"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                refused = format_problem(image, formats)
                if refused:
                    return refused
                # Let libjpeg decode at a reduced scale when the image is much larger than needed.
                image.draft("RGB", (size, size))
                image = eight_bits(ImageOps.exif_transpose(image))
                if isinstance(image, str):
                    return image
                if sizes is not None:
                    sizes.append(image.size)
                return np.asarray(_resize(image.convert("RGB"), size, resize), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"too large to decode safely: {error}"
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        return f"cannot decode: {type(error).__name__}: {error}"


def eight_bits(image: Image.Image) -> Image.Image | str:
    """An image of more than 8 bits per pixel (`wide_mode`: 16-bit, 32-bit integer or float grey) as 8-bit grey,
    its own range min..max spread over 0..255; any other image as it is; or the reason it cannot be stored.

    Pillow's own conversion clips such values at 255, which turns a 16-bit image mostly white. A constant image has
    no range to scale by, and any grey given it would be made up, so it is refused (listed as skipped); so is one
    with values that are not finite.
    """
    if not wide_mode(image.mode):
        return image
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        return f"pixel values are not finite (NaN or infinity) in a {image.mode} image"
    low, high = values.min(), values.max()
    if low == high:
        return f"constant {image.mode} image (every pixel {low:g}): no range to scale to 8 bits"
    scaled = np.rint((values - low) * (255.0 / (high - low)))
    return Image.fromarray(scaled.astype(np.uint8))  # 2-D uint8: mode L


def _resize(image: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "squash":  # the seed's Resize((224, 224)): ignores the aspect ratio
        return image.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)
