"""Batches from a prepared store, ready for the model.

Two halves, so that the expensive half can run where the model runs:
- a `Loader` reads raw rows from the memory-mapped store on the CPU (uint8 pixels, fp16 mel crops), in a
  background thread so that reading overlaps compute;
- a modality's `Inputs` turns a raw batch into model input on the model's device: augmentation for training,
  a fixed deterministic transform for evaluation (no random augmentation ever touches validation or test).

All randomness comes from a torch.Generator seeded by (run seed, epoch), so a resumed run sees the same batches.
"""
from __future__ import annotations

import contextlib
import math
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from audio2image.prepare.store import Split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The random stream `stream` of a run's epoch: 0 for reading (order, crops), 1 for augmentation.

    Separate streams matter: the reader draws in its read-ahead thread, the augmentation in the training
    thread, and sharing one generator would make the draws depend on thread timing.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


# --- reading raw batches -----------------------------------------------------------------------------------------
@dataclass
class RawBatch:
    x: torch.Tensor  # uint8 [B, H, W, 3] or fp16 [B, mels, frames]
    y: torch.Tensor
    offsets: torch.Tensor | None = None  # audio training crops: start frame per row
    rows: torch.Tensor | None = None  # each example's row in its split


class Loader:
    """Iterate raw batches of `rows` of a split; shuffled (training) or in order (evaluation)."""

    def __init__(self, split: Split, rows: np.ndarray, batch_size: int, *, shuffle: bool,
                 crop_frames: int = 0, generator: torch.Generator | None = None, prefetch: int = 2,
                 pin_memory: bool = False, shard: tuple[int, int] = (0, 1), memory: RecycledMemory | None = None):
        self.split, self.rows, self.batch_size = split, np.asarray(rows), batch_size
        self.shuffle, self.crop_frames, self.generator = shuffle, crop_frames, generator
        self.prefetch, self.pin_memory = prefetch, pin_memory
        self.rank, self.world = shard
        # Batches are gathered into `memory`; pass one across epochs so that later epochs reuse the earlier ones'.
        self.memory = memory or RecycledMemory(keep=prefetch + 2)

    def batches_of_rows(self) -> list[np.ndarray]:
        order = self.rows
        if self.shuffle:
            order = self.rows[torch.randperm(len(self.rows), generator=self.generator).numpy()]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.shuffle and len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # a batch of one breaks batch norm in training
        return [b[self.rank::self.world] for b in batches]  # DDP: each process takes its share of every batch

    def read(self, rows: np.ndarray) -> RawBatch:
        y = torch.from_numpy(gather_rows(self.split.y, rows))
        if not self.crop_frames:
            x = self.memory.empty((len(rows),) + self.split.x.shape[1:], _torch_dtype(self.split.x.dtype))
            gather_rows(self.split.x, rows, out=x.numpy())
            return RawBatch(self._pin(x), self._pin(y), rows=torch.from_numpy(rows))
        frames = self.split.x.shape[2]
        offsets = torch.randint(0, frames - self.crop_frames + 1, (len(rows),), generator=self.generator)
        width = self.crop_frames
        x = np.stack([self.split.x[r, :, o:o + width] for r, o in zip(rows, offsets.tolist())])
        return RawBatch(self._pin(torch.from_numpy(x)), self._pin(y), offsets, torch.from_numpy(rows))

    def _pin(self, x: torch.Tensor) -> torch.Tensor:
        # A copy from torch's pinned-memory cache, which reuses a block only after the asynchronous copies to the
        # GPU that read it have finished; RecycledMemory cannot see those copies, so it never hands out pinned memory.
        return x.pin_memory() if self.pin_memory else x

    def __len__(self) -> int:
        """Batches per pass, counted without drawing the shuffle: asking must not change the order."""
        full, rest = divmod(len(self.rows), self.batch_size)
        return full + (rest > 1 or (rest == 1 and (not self.shuffle or full == 0)))

    def __iter__(self):
        # All random draws happen in this thread, in batch order, so results do not depend on thread timing.
        batches = self.batches_of_rows()
        if self.prefetch <= 0:
            for rows in batches:
                yield self.read(rows)
            return
        ready: queue.Queue = queue.Queue(self.prefetch)
        stop = threading.Event()

        def produce():
            try:
                for rows in batches:
                    if stop.is_set():
                        return
                    ready.put(self.read(rows))
                ready.put(None)
            except BaseException as error:  # surface reader errors in the consuming thread
                ready.put(error)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    thread.join(0.01)


def gather_rows(array: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """array[rows] in one copy: rows are read in file order (kind to the memory map) straight into their places."""
    if out is None:
        out = np.empty((len(rows),) + array.shape[1:], array.dtype)
    for place in np.argsort(rows):
        out[place] = array[rows[place]]
    return out


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype)).dtype


class RecycledMemory:
    """CPU batches whose memory is handed out again once nothing else holds it.

    On the CPU, writing a fresh batch costs more in page faults than filling it: measured 70-380 µs per 224 px
    float image into new memory against 31 µs into memory touched before. The CUDA caching allocator already
    recycles device memory; this does the same for CPU batches. A buffer is reused only when its storage has no
    user but this object: not the caller, not a view of it, not a tensor autograd saved for its backward pass.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep  # at most this many buffers: for a Loader, its queued batches + the one in use + one read
        self.buffers: list[torch.Tensor] = []
        self.lock = threading.Lock()  # loaders sharing one read in their own threads

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialised tensor of `shape`: a free buffer's first rows, or new memory."""
        with self.lock:
            for buffer in self.buffers:
                if (buffer.dtype == dtype and buffer.shape[1:] == shape[1:] and len(buffer) >= shape[0]
                        and _unshared(buffer)):
                    return buffer[:shape[0]]
            buffer = torch.empty(shape, dtype=dtype)
            self.buffers = (self.buffers + [buffer])[-self.keep:]
            return buffer[:shape[0]]  # a view even here: the caller's tensor must count as a user of the storage


def _storage_users(x: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(x.untyped_storage()._cdata)


# A private torch function: without it (another torch), nothing is ever reused, which is always safe.
_ALONE = _storage_users(torch.empty(1)) if hasattr(torch._C, "_storage_Use_Count") else None


def _unshared(buffer: torch.Tensor) -> bool:
    return _ALONE is not None and _storage_users(buffer) == _ALONE


# --- from raw batches to model input -----------------------------------------------------------------------------
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

    Training "crop-flip" on the CPU crops and resizes the uint8 pixels image by image (`resized_crops`): a float
    grid_sample over the batch manages only a few hundred images/s there. On CUDA/MPS, and for "seed", one
    grid_sample on the device does the augmentation; both paths draw the same crops from the same generator.
    """

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
            out = self._memory.empty((len(raw.x), 3, self.size, self.size))
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
    up to 30 degrees over the whole image ("seed", the seed's RandomHorizontalFlip + RandomRotation(30))."""
    theta = torch.zeros(n, 2, 3)
    if augment == "seed":
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


# (pixel / 255 - mean) / std as one multiply-add on the uint8 values
_UINT8_SCALE = 1 / (255 * torch.tensor(IMAGENET_STD).view(3, 1, 1))
_UINT8_SHIFT = -torch.tensor(IMAGENET_MEAN).view(3, 1, 1) / torch.tensor(IMAGENET_STD).view(3, 1, 1)


def resized_crops(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor, size: int,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float [B, 3, size, size] (written into `out` if given): each image's box
    (top, left, height, width), mirrored where `flip`, resized by antialiased bilinear interpolation.

    The resize runs on uint8 channels-last pixels, torch's vectorised fast path; each image is normalised in the
    same pass that converts it to float, while it is still in cache. Images are independent, so the batch is shared
    out in chunks to one Python thread per core (torch releases the GIL), each running its torch ops on one core;
    the result does not depend on how the threads interleave.
    """
    out = torch.empty(len(x), 3, size, size) if out is None else out
    boxes, flip = boxes.tolist(), flip.tolist()

    def crop_and_resize(rows: range) -> None:
        for i in rows:
            top, left, height, width = boxes[i]
            crop = x[i, top:top + height, left:left + width]
            crop = crop.flip(1) if flip[i] else crop.contiguous()  # a strided view resizes ~1.5x slower
            # unsqueeze before permute: [1, 3, h, w] with the batch stride of a whole image reads as channels-last
            # and takes the vectorised path (~90 µs); permute then unsqueeze gives it stride 3 and ~155 µs.
            resized = F.interpolate(crop.unsqueeze(0).permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                    antialias=True, align_corners=False)
            torch.addcmul(_UINT8_SHIFT, resized[0], _UINT8_SCALE, out=out[i])

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
    spreading every op over all cores would oversubscribe them: on 2 cores, the crops ran 1.4-1.6x slower so.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class AudioInputs:
    """fp16 mel crops [B, mels, frames] -> float [B, 3, mels, frames] (the same map on the three channels).

    Evaluation splits each whole clip into `eval_crops` evenly spaced crops: [B, crops, 3, mels, frames].
    The seed preset instead feeds whole clips as [mel, frequency-masked mel, time-masked mel], unnormalised.
    """

    def __init__(self, crop_frames: int, eval_crops: int, normalization: dict | None, specaugment: bool,
                 seed_channels: bool):
        self.crop_frames, self.eval_crops = crop_frames, eval_crops
        self.specaugment, self.seed_channels = specaugment, seed_channels
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
        if self.seed_channels:
            return torch.stack([x, mask(x, 1, 40, generator), mask(x, 2, 80, generator)], dim=1)
        if self.specaugment:  # SpecAugment: one frequency and one time mask per example
            x = mask(mask(x, 1, x.shape[1] // 8, generator), 2, x.shape[2] // 8, generator)
        return x.unsqueeze(1).expand(-1, 3, -1, -1)

    def eval(self, raw: RawBatch, device) -> torch.Tensor:
        x = self._float(raw.x, device)
        if self.seed_channels:  # fixed masks: no randomness in evaluation
            rows = raw.rows if raw.rows is not None else torch.arange(len(x))
            return torch.stack([x, fixed_mask(x, 1, 40, rows), fixed_mask(x, 2, 80, rows)], dim=1)
        if not self.crop_frames or self.crop_frames >= x.shape[2]:
            return x.unsqueeze(1).expand(-1, 3, -1, -1)
        starts = np.linspace(0, x.shape[2] - self.crop_frames, self.eval_crops).round().astype(int)
        crops = torch.stack([x[:, :, s:s + self.crop_frames] for s in starts], dim=1)
        return crops.unsqueeze(2).expand(-1, -1, 3, -1, -1)


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
