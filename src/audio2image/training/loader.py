"""From a prepared store to raw batches: the reading half of the input pipeline (inputs.py is the other).

A `Loader` reads raw rows from the memory-mapped store on the CPU (uint8 pixels, fp16 mel crops or whole clips),
in a background thread so that reading overlaps compute, into batch memory recycled across steps and epochs.
All randomness comes from a torch.Generator seeded by (run seed, epoch), so a resumed run sees the same batches.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from audio2image.prepare.store import Split


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The random stream `stream` of a run's epoch: 0 for reading (order, crops), 1 for augmentation.

    Separate streams matter: the reader draws in its read-ahead thread, the augmentation in the training
    thread, and sharing one generator would make the draws depend on thread timing.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


@dataclass
class RawBatch:
    x: torch.Tensor  # uint8 [B, H, W, 3] or fp16 [B, mels, frames]
    y: torch.Tensor
    offsets: torch.Tensor | None = None  # audio training crops: start frame per row
    rows: torch.Tensor | None = None  # each example's row in its split


PREFETCH = 2  # batches a Loader reads ahead


class Loader:
    """Iterate raw batches of `rows` of a split; shuffled (training) or in order (evaluation)."""

    def __init__(self, split: Split, rows: np.ndarray, batch_size: int, *, shuffle: bool,
                 crop_frames: int = 0, generator: torch.Generator | None = None, prefetch: int = PREFETCH,
                 pin_memory: bool = False, shard: tuple[int, int] = (0, 1), memory: RecycledMemory | None = None):
        self.split, self.rows, self.batch_size = split, np.asarray(rows), batch_size
        self.shuffle, self.crop_frames, self.generator = shuffle, crop_frames, generator
        self.prefetch, self.pin_memory = prefetch, pin_memory
        self.rank, self.world = shard
        # Batches are gathered into `memory`; pass one across epochs so that later epochs reuse the earlier ones'.
        self.memory = memory or batch_memory(prefetch)

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

    On the CPU, writing a fresh batch costs more in page faults than filling it: writing an image into new memory
    takes far longer than into memory touched before (benchmarks/README.md: CPU augmentation). The CUDA caching
    allocator already recycles device memory; this does the same for CPU batches. A buffer is reused only when its
    storage has no user but this object: not the caller, not a view of it, not a tensor autograd saved for its
    backward pass.
    """

    def __init__(self, keep: int = 2):
        self.keep = keep  # at most this many buffers
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


def batch_memory(prefetch: int = PREFETCH) -> RecycledMemory:
    """Memory for the batches of Loaders reading `prefetch` ahead: the queued ones, the one being read, the one in
    use and the one before it (a `for batch in loader` loop still holds it while the next is fetched, and the
    reader may ask for memory just then). Loaders that run one after another (a run's epochs) can share it."""
    return RecycledMemory(keep=prefetch + 3)


def _storage_users(x: torch.Tensor) -> int:
    return torch._C._storage_Use_Count(x.untyped_storage()._cdata)


# A private torch function: without it (another torch), nothing is ever reused, which is always safe.
_ALONE = _storage_users(torch.empty(1)) if hasattr(torch._C, "_storage_Use_Count") else None


def _unshared(buffer: torch.Tensor) -> bool:
    return _ALONE is not None and _storage_users(buffer) == _ALONE
