"""Image datasets -> image store: decode each image once, convert to RGB, resize, write uint8 arrays per split.

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
from audio2image.datasets.inspection import format_problem
from audio2image.prepare.store import check_splits, complete_manifest, write_manifest
from audio2image.prepare.writer import SplitItems, split_signatures, worker_pool, write_splits
from audio2image.util import log

RESIZE_MODES = ("center", "squash")


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
                        workers: int = 1, progress: bool = True) -> dict:
    """Prepare (or finish preparing) the image store for an ImageFolder tree at `root`; returns its manifest.

    Any format Pillow decodes among ImageFolder's extensions; split folders when the tree has them, else a
    stratified 60/20/20 split seeded by `split_seed`.
    """
    scan = imagefolder.scan_imagefolder(root)
    facts = {"dataset": "imagefolder", "split_protocol": imagefolder.split_source(scan),
             "split_seed": split_seed, "strays": scan.strays}
    return write_image_store(Path(root), Path(out), scan.classes, scan.paths, scan.labels,
                             imagefolder.split_imagefolder(scan, split_seed), facts, size=size, resize=resize,
                             formats=None, workers=workers, progress=progress)


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
    shape = (size, size, 3)
    settings = {"root": str(root.resolve()), "size": size, "resize": resize, "formats": formats}
    signatures = split_signatures(items, settings, shape, np.uint8)
    done = complete_manifest(out, signatures)
    if done is not None:
        return done
    out.mkdir(parents=True, exist_ok=True)
    work = functools.partial(pixels_of_images, size=size, resize=resize, formats=formats)
    with worker_pool(workers, __name__) as pool:
        summaries = write_splits(out, items, work, shape, np.uint8, signatures=signatures, pool=pool, chunk=32,
                                 show_progress=progress)
    manifest = {
        "modality": "image", "task": "classification", **facts, "labels": list(classes),
        "source_root": str(root.resolve()), "size": size, "resize": resize,
        "splits": {name: {"count": s["count"]} for name, s in summaries.items()},
        "skipped": [dict(item, split=name) for name, s in summaries.items() for item in s["skipped"]],
        "signatures": signatures,
    }
    check_splits(out, manifest)
    write_manifest(out, manifest)
    log(f"image store {out}: " + ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
        + f"; {len(manifest['skipped'])} images skipped, {len(facts.get('strays', []))} stray entries ignored")
    return manifest


def pixels_of_images(paths: list[str], size: int, resize: str, formats: tuple[str, ...] | None = None) -> list:
    """Per image: uint8 [size, size, 3] RGB pixels, or the reason it was skipped."""
    return [load_image(Path(p), size, resize, formats) for p in paths]


def load_image(path: Path, size: int, resize: str, formats: tuple[str, ...] | None = ("JPEG",)) -> np.ndarray | str:
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
                image = ImageOps.exif_transpose(image).convert("RGB")
                return np.asarray(_resize(image, size, resize), dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return f"too large to decode safely: {error}"
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        return f"cannot decode: {type(error).__name__}: {error}"


def _resize(image: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "squash":  # the seed's Resize((224, 224)): ignores the aspect ratio
        return image.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.resize((size, size), Image.BICUBIC, box=(left, top, left + side, top + side), reducing_gap=3.0)
