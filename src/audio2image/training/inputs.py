"""From raw batches to model input: the second half of the input pipeline (loader.py reads the batches).

A modality's `Inputs` turns a raw batch into model input on the model's device, so that the expensive half can
run where the model runs: augmentation for training, a fixed deterministic transform for evaluation (no random
augmentation ever touches validation or test). Training draws come from the generator it is given.
"""
from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from audio2image.training.loader import RawBatch, RecycledMemory

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def upload(x: torch.Tensor, device) -> torch.Tensor:
    """A CPU tensor on `device`. To a GPU through pinned memory, asynchronously: a plain copy would make the CPU
    wait for every queued kernel, once per batch, and the GPU would idle while the next batch is prepared."""
    device = torch.device(device)
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


class Standardise:
    """x -> (x - mean) / std, with mean and std copied to each device once, not at every batch (a plain copy to
    a GPU would make the CPU wait for the queued kernels)."""

    def __init__(self, mean, std, shape: tuple[int, ...]):
        self.mean, self.std = torch.tensor(mean).view(shape), torch.tensor(std).view(shape)
        self.copies: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device not in self.copies:
            self.copies[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        mean, std = self.copies[x.device]
        return (x - mean) / std


class CropFlip(NamedTuple):
    """Random resized crops + horizontal flips, in affine_grid's normalised coordinates ([-1, 1] across the image):
    crop i spans centre_x ± width and centre_y ± height, so width and height are fractions of the image's sides."""

    flip: torch.Tensor  # bool [n]
    width: torch.Tensor
    height: torch.Tensor
    centre_x: torch.Tensor
    centre_y: torch.Tensor


class ImageInputs:
    """uint8 [B, S, S, 3] -> normalised float [B, 3, size, size].

    Training "crop-flip" on the CPU crops and resizes the uint8 pixels image by image (`resized_crops`, into
    channels-last memory): a float grid_sample over the batch is many times slower there (benchmarks/README.md: CPU
    augmentation). On CUDA/MPS, and for "original", one grid_sample on the device does the augmentation; both paths
    draw the same crops from the same generator.
    """

    eval_crops = 1  # evaluation sees each image once

    def __init__(self, size: int, augment: str):
        self.size, self.augment = size, augment
        self._normalise = Standardise(IMAGENET_MEAN, IMAGENET_STD, (1, 3, 1, 1))
        self._memory = RecycledMemory()

    def _float(self, raw: RawBatch, device) -> torch.Tensor:
        x = raw.x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        return x

    def train(self, raw: RawBatch, device, generator: torch.Generator) -> torch.Tensor:
        if self.augment == "none":
            return self.eval(raw, device)
        if self.augment == "crop-flip" and torch.device(device).type == "cpu":
            crops = random_crop_flip(len(raw.x), generator)
            boxes = crop_boxes(crops, raw.x.shape[1], raw.x.shape[2])
            out = self._memory.empty((len(raw.x), self.size, self.size, 3)).permute(0, 3, 1, 2)
            return resized_crops(raw.x, boxes, crops.flip, self.size, out=out)
        return self._affine(raw, device, generator)

    def _affine(self, raw: RawBatch, device, generator: torch.Generator) -> torch.Tensor:
        """The augmentation as one grid_sample on `device`: fast on a GPU, slow on the CPU."""
        x = self._float(raw, device)
        theta = upload(random_affine(len(x), self.augment, generator), device)
        grid = F.affine_grid(theta, (len(x), 3, self.size, self.size), align_corners=False)
        if x.shape[-1] > 2 * self.size:  # shrink first so that sampling does not alias
            x = resize(x, 2 * self.size)
        # "border": a crop reaching the outermost half pixel repeats the edge instead of blending in black.
        return self._normalise(F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False))

    def eval(self, raw: RawBatch, device) -> torch.Tensor:
        return self._normalise(resize(self._float(raw, device), self.size))


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def random_crop_flip(n: int, generator: torch.Generator) -> CropFlip:
    """RandomResizedCrop(scale=(0.25, 1), ratio=(3/4, 4/3)) + RandomHorizontalFlip; a crop that does not fit is
    shrunk to fit."""
    flip = torch.rand(n, generator=generator) < 0.5
    area = 0.25 + 0.75 * torch.rand(n, generator=generator)
    log_ratio = (torch.rand(n, generator=generator) * 2 - 1) * math.log(4 / 3)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    return CropFlip(flip, width, height, centre_x, centre_y)


def random_affine(n: int, augment: str, generator: torch.Generator) -> torch.Tensor:
    """[n, 2, 3] sampling matrices: random resized crop + flip ("crop-flip", `random_crop_flip`), or flip + rotation
    up to 30 degrees over the whole image ("original", the seed's RandomHorizontalFlip + RandomRotation(30))."""
    theta = torch.zeros(n, 2, 3)
    if augment == "original":
        mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(30)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) * mirror, -torch.sin(angle)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * mirror, torch.cos(angle)
        return theta
    crops = random_crop_flip(n, generator)
    mirror = 1.0 - 2.0 * crops.flip.float()
    theta[:, 0, 0], theta[:, 0, 2] = crops.width * mirror, crops.centre_x
    theta[:, 1, 1], theta[:, 1, 2] = crops.height, crops.centre_y
    return theta


def crop_boxes(crops: CropFlip, height: int, width: int) -> torch.Tensor:
    """int64 [n, 4] pixel boxes (top, left, height, width) nearest to `crops` in a height x width image."""
    top, box_height = _pixel_span(crops.centre_y, crops.height, height)
    left, box_width = _pixel_span(crops.centre_x, crops.width, width)
    return torch.stack([top, left, box_height, box_width], dim=1).long()


def _pixel_span(centre: torch.Tensor, fraction: torch.Tensor, pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, length) in whole pixels of the span centre ± fraction, inside an image side of `pixels`."""
    length = (fraction * pixels).round().clamp(1, pixels)
    start = ((centre - fraction + 1) / 2 * pixels).round().clamp(min=0)
    return torch.minimum(start, pixels - length), length


def _uint8_normalisation(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with (pixel / 255 - mean) / std = pixel * scale + shift, for one row of `size` RGB pixels
    (R, G, B, R, G, B, ...): a whole row at a time vectorises; broadcasting over 3 channels does not."""
    std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
    return (1 / (255 * std)).repeat(size), (-mean / std).repeat(size)


def resized_crops(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, size, size] in channels-last memory (written into `out`,
    channels-last too, if given): each image's box (top, left, height, width), mirrored where `flip`, resized by
    antialiased bilinear interpolation.

    The resize runs on uint8 channels-last pixels, torch's vectorised fast path; each image is normalised in the
    same pass that converts it to float, while it is still in cache, and stays channels-last (transposing it to
    channels-first doubled that pass). Images are independent, so the batch is shared out in chunks to one Python
    thread per core (torch releases the GIL), each running its torch ops on one core; the result does not depend
    on how the threads interleave.
    """
    out = torch.empty(len(x), size, size, 3).permute(0, 3, 1, 2) if out is None else out
    if not out.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("resized_crops writes channels-last: pass out=torch.empty(B, size, size, 3)"
                         ".permute(0, 3, 1, 2)")
    boxes, flip = boxes.tolist(), flip.tolist()
    scale, shift = _uint8_normalisation(size)

    def crop_and_resize(rows: range) -> None:
        for i in rows:
            top, left, height, width = boxes[i]
            crop = x[i, top:top + height, left:left + width]
            crop = crop.flip(1) if flip[i] else crop.contiguous()  # a strided view resizes slower
            # unsqueeze before permute: [1, 3, h, w] with the batch stride of a whole image reads as channels-last
            # and takes the vectorised path; permute then unsqueeze gives it stride 3 and the slower generic one
            # (benchmarks/README.md: CPU augmentation).
            resized = F.interpolate(crop.unsqueeze(0).permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                    antialias=True, align_corners=False)
            rows_of_pixels = resized[0].permute(1, 2, 0).view(size, size * 3)
            torch.addcmul(shift, rows_of_pixels, scale, out=out[i].permute(1, 2, 0).view(size, size * 3))

    # Small chunks, taken by whichever thread is free: a thread slowed down (by the Loader's reading, say) does not
    # leave the others waiting at the end of the batch.
    threads = max(1, min(torch.get_num_threads(), len(x)))
    chunks = [range(start, min(start + CROP_CHUNK, len(x))) for start in range(0, len(x), CROP_CHUNK)]
    with serial_torch_ops(), ThreadPoolExecutor(threads) as pool:
        list(pool.map(crop_and_resize, chunks))
    return out


CROP_CHUNK = 8  # images per task in resized_crops


@contextlib.contextmanager
def serial_torch_ops():
    """Threads started inside this block run each torch op on one core.

    torch's thread count is process-wide, and a thread takes it at its first op. Several Python threads each
    spreading every op over all cores would oversubscribe them, and the crops ran slower so
    (benchmarks/README.md: CPU augmentation).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AudioInputs:
    """fp16 mel crops [B, mels, frames] -> float [B, channels, mels, frames]: the same map on each channel (3, for
    an RGB-shaped first layer, or 1: audio_channels).

    Evaluation splits each whole clip into `eval_crops` evenly spaced crops: [B, crops, 3, mels, frames].
    The original preset instead feeds whole clips as [mel, frequency-masked mel, time-masked mel], unnormalised.
    """

    def __init__(self, crop_frames: int, eval_crops: int, normalization: dict | None, specaugment: bool,
                 original_channels: bool, channels: int = 3):
        self.crop_frames, self.channels = crop_frames, channels
        self.specaugment, self.original_channels = specaugment, original_channels
        # crops per clip in evaluation: evenly spaced crops of a longer clip; one for whole clips
        self.eval_crops = eval_crops if crop_frames and not original_channels else 1
        self.standardise = None
        if normalization is not None:
            self.standardise = Standardise(normalization["mean"], normalization["std"], (1, -1, 1))

    def _float(self, raw_x: torch.Tensor, device) -> torch.Tensor:
        x = raw_x.to(device, non_blocking=True).float()
        if self.standardise is not None:
            x = self.standardise(x)
        return x

    def train(self, raw: RawBatch, device, generator: torch.Generator) -> torch.Tensor:
        x = self._float(raw.x, device)
        if self.original_channels:
            return torch.stack([x, mask(x, 1, 40, generator), mask(x, 2, 80, generator)], dim=1)
        if self.specaugment:  # SpecAugment: one frequency and one time mask per example
            x = mask(mask(x, 1, x.shape[1] // 8, generator), 2, x.shape[2] // 8, generator)
        return x.unsqueeze(1).expand(-1, self.channels, -1, -1)

    def eval(self, raw: RawBatch, device) -> torch.Tensor:
        x = self._float(raw.x, device)
        if self.original_channels:  # fixed masks: no randomness in evaluation
            rows = raw.rows if raw.rows is not None else torch.arange(len(x))
            return torch.stack([x, fixed_mask(x, 1, 40, rows), fixed_mask(x, 2, 80, rows)], dim=1)
        if not self.crop_frames or self.crop_frames >= x.shape[2]:
            return x.unsqueeze(1).expand(-1, self.channels, -1, -1)
        starts = np.linspace(0, x.shape[2] - self.crop_frames, self.eval_crops).round().astype(int)
        crops = torch.stack([x[:, :, s:s + self.crop_frames] for s in starts], dim=1)
        return crops.unsqueeze(2).expand(-1, -1, self.channels, -1, -1)


def mask(x: torch.Tensor, axis: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one random band of up to `max_width` along `axis` (1: mel bins, 2: frames) in each example."""
    n = x.shape[0]
    return _zero_bands(x, axis, max_width, torch.rand(n, generator=generator), torch.rand(n, generator=generator))


def fixed_mask(x: torch.Tensor, axis: int, max_width: int, rows: torch.Tensor) -> torch.Tensor:
    """`mask` with each example's band drawn from its row in the split: a clip gets the same band however the
    clips are batched (batch size, order, or processes sharing each batch), so evaluation does not depend on it."""
    draws = torch.stack([torch.rand(2, generator=torch.Generator().manual_seed(3 * int(row) + axis))
                         for row in rows.tolist()])
    return _zero_bands(x, axis, max_width, draws[:, 0], draws[:, 1])


def _zero_bands(x: torch.Tensor, axis: int, max_width: int, width_draw: torch.Tensor,
                start_draw: torch.Tensor) -> torch.Tensor:
    """Zero, in example i, the band whose width and start are set by uniform draws in [0, 1)."""
    length = x.shape[axis]
    width = (width_draw * (max_width + 1)).long().clamp(max=length)
    start = (start_draw * (length - width + 1)).long()
    position = torch.arange(length).view(1, -1)
    band = (position >= start.view(-1, 1)) & (position < (start + width).view(-1, 1))
    shape = [x.shape[0], 1, 1]
    shape[axis] = length
    return x.masked_fill(upload(band.view(shape), x.device), 0.0)
