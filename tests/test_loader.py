"""The Loader (order, prefetching, sharding, crops) and the batch memory it recycles."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from audio2image.prepare.store import Split
from audio2image.training.inputs import AudioInputs
from audio2image.training.loader import Loader, RecycledMemory, batch_memory, epoch_generator


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- recycled batch memory ---------------------------------------------------------------------------------------
def test_recycled_memory_is_reused_once_released():
    memory = RecycledMemory()
    first = memory.empty((4, 3, 8, 8))
    address = first.data_ptr()
    del first
    again = memory.empty((4, 3, 8, 8))
    assert again.data_ptr() == address
    del again
    shorter = memory.empty((2, 3, 8, 8))  # a short final batch takes the first rows
    assert shorter.shape == (2, 3, 8, 8) and shorter.data_ptr() == address
    del shorter
    assert memory.empty((4, 3, 8, 9)).data_ptr() != address  # another shape, other memory
    assert memory.empty((4, 3, 8, 8), torch.uint8).data_ptr() != address  # another dtype, too


def test_recycled_memory_is_never_handed_out_while_held():
    memory = RecycledMemory(keep=8)
    held = memory.empty((4, 3, 8, 8))
    assert memory.empty((4, 3, 8, 8)).data_ptr() != held.data_ptr()  # held by the caller
    view = held[1:3]
    address = held.data_ptr()
    del held
    assert memory.empty((4, 3, 8, 8)).data_ptr() != address  # a view of it is still alive
    del view
    assert memory.empty((4, 3, 8, 8)).data_ptr() == address


def test_recycled_memory_waits_for_autograd():
    memory = RecycledMemory()
    x = memory.empty((2, 3, 8, 8)).normal_()
    address = x.data_ptr()
    loss = torch.nn.Conv2d(3, 2, 3)(x).square().sum()  # the convolution saves x for its weight gradient
    del x
    assert memory.empty((2, 3, 8, 8)).data_ptr() != address
    loss.backward()  # frees the saved input
    assert memory.empty((2, 3, 8, 8)).data_ptr() == address


def test_recycled_memory_shared_by_threads_never_hands_out_one_buffer_twice():
    memory, clashes = RecycledMemory(keep=4), []

    def take(mark: int) -> None:
        for _ in range(500):
            batch = memory.empty((2, 16))
            batch.fill_(mark)
            time.sleep(0)  # let the other threads take buffers while this one is held
            if not bool((batch == mark).all()):
                clashes.append(mark)

    threads = [threading.Thread(target=take, args=(mark,)) for mark in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not clashes


# --- Loader --------------------------------------------------------------------------------------------------------
def fake_split(n: int = 23, mels_: int = 4, frames: int = 30) -> Split:
    x = np.arange(n, dtype=np.float16)[:, None, None] + np.zeros((1, mels_, frames), np.float16)
    x = x + (np.arange(frames, dtype=np.float16) / 100)[None, None, :]  # frame index in the hundredths
    return Split(x=x, y=np.arange(n, dtype=np.int64) * 10, ids=[f"c{i}" for i in range(n)])


def rows_seen(batches) -> list[int]:
    return [int(r) for b in batches for r in b.x[:, 0, 0].float().round().tolist()]


@pytest.mark.parametrize("prefetch", [0, 2])
def test_eval_loader_yields_every_row_once_in_order(prefetch):
    split = fake_split()
    rows = np.array([5, 2, 9, 0, 22, 7, 13])
    loader = Loader(split, rows, 3, shuffle=False, prefetch=prefetch)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    assert [len(b.y) for b in batches] == [3, 3, 1]  # the last, short batch is kept in evaluation
    assert rows_seen(batches) == rows.tolist()
    assert torch.cat([b.y for b in batches]).tolist() == (rows * 10).tolist()
    assert all(b.x.dtype == torch.float16 and b.x.shape[1:] == (4, 30) for b in batches)
    assert torch.cat([b.rows for b in batches]).tolist() == rows.tolist()  # each example knows its row
    assert rows_seen(loader) == rows.tolist()  # a second epoch reads the same


def test_shuffled_loader_is_reproducible():
    split = fake_split(40)
    rows = np.arange(40)

    def epoch(seed):
        return rows_seen(Loader(split, rows, 8, shuffle=True, generator=gen(seed), prefetch=0))

    a, b, c = epoch(1), epoch(1), epoch(2)
    assert a == b and a != c
    assert sorted(a) == list(range(40)) and a != list(range(40))  # a permutation, each row once
    assert epoch_generator(1, 2).initial_seed() != epoch_generator(1, 3).initial_seed()


def test_shuffled_loader_drops_a_final_batch_of_one():
    split = fake_split(17)
    seen = rows_seen(Loader(split, np.arange(17), 4, shuffle=True, generator=gen(0), prefetch=0))
    assert len(seen) == 16 and len(set(seen)) == 16


@pytest.mark.parametrize("crop_frames", [0, 10])
@pytest.mark.parametrize("prefetch", [1, 2, 5])
def test_prefetch_gives_the_same_batches(crop_frames, prefetch):
    split = fake_split(37)
    rows = np.arange(37)

    def epoch(p):
        loader = Loader(split, rows, 4, shuffle=True, crop_frames=crop_frames, generator=gen(9), prefetch=p)
        return [(b.x.clone(), b.y.clone(), None if b.offsets is None else b.offsets.clone()) for b in loader]

    plain, ahead = epoch(0), epoch(prefetch)
    assert len(plain) == len(ahead) == 9
    for (x0, y0, o0), (x1, y1, o1) in zip(plain, ahead):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert (o0 is None and o1 is None) or torch.equal(o0, o1)
    if crop_frames:
        x, _, offsets = plain[0]
        assert x.shape == (4, 4, crop_frames)
        starts = (x[:, 0, 0].float() * 100).round() % 100  # hundredths of the first frame = its index
        assert starts.tolist() == offsets.tolist()
        assert (offsets >= 0).all() and (offsets <= 30 - crop_frames).all()


def test_prefetch_gives_the_same_training_batches_as_training_uses_them():
    split = fake_split(37)
    inputs = AudioInputs(10, 1, None, specaugment=True, original_channels=False)

    def epoch(prefetch):
        # as run.py: one stream for the reader (order, crops), another for the augmentation
        loader = Loader(split, np.arange(37), 4, shuffle=True, crop_frames=10, generator=epoch_generator(0, 1),
                        prefetch=prefetch)
        augment = epoch_generator(0, 1, stream=1)
        out = []
        for raw in loader:
            time.sleep(0.005)  # the model's compute, during which the reader thread reads ahead
            out.append(inputs.train(raw, "cpu", augment))
        return out

    for a, b in zip(epoch(0), epoch(2)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_loaders_sharing_memory_reuse_it_and_read_every_row(prefetch):
    split, rows = fake_split(40), np.arange(40)
    memory = batch_memory(prefetch)

    def epoch(seed):
        addresses, seen = set(), []
        for raw in Loader(split, rows, 6, shuffle=True, generator=gen(seed), prefetch=prefetch, memory=memory):
            time.sleep(0.002)  # the model's step, while the reader reads ahead
            addresses.add(raw.x.data_ptr())
            seen += rows_seen([raw])
        return addresses, seen

    first, seen_first = epoch(1)
    second, seen_second = epoch(2)
    assert sorted(seen_first) == sorted(seen_second) == list(range(40)) and seen_first != seen_second
    # The second epoch read into the first one's memory; at most one buffer more, where the first epoch never
    # needed all of them at once and the second did (the reader's timing decides that).
    assert len(second - first) <= 1 and len(first | second) <= memory.keep


def test_loader_shards_every_batch():
    split = fake_split(24)
    rows = np.arange(24)
    whole = [b.y.tolist() for b in Loader(split, rows, 6, shuffle=True, generator=gen(3), prefetch=0)]
    parts = [[b.y.tolist() for b in Loader(split, rows, 6, shuffle=True, generator=gen(3), prefetch=0,
                                           shard=(rank, 2))] for rank in range(2)]
    for batch, first, second in zip(whole, *parts):
        assert sorted(first + second) == sorted(batch) and not set(first) & set(second)


@pytest.mark.parametrize("shuffle", [False, True])
def test_loader_length_counts_batches_without_changing_the_order(shuffle):
    for n in (1, 2, 5, 6, 7, 12, 13):
        split, rows = fake_split(n), np.arange(n)
        plain = [b.y.tolist() for b in Loader(split, rows, 6, shuffle=shuffle, generator=gen(3), prefetch=0)]
        loader = Loader(split, rows, 6, shuffle=shuffle, generator=gen(3), prefetch=0)
        assert len(loader) == len(plain), n
        assert [b.y.tolist() for b in loader] == plain  # asking for the length drew nothing


def test_loader_surfaces_reader_errors():
    class Broken(Split):
        pass

    split = fake_split(8)
    bad = Broken(x=split.x, y=np.arange(3), ids=split.ids)  # too few labels: reading row 5 fails
    with pytest.raises(IndexError):
        list(Loader(bad, np.arange(8), 4, shuffle=False, prefetch=2))
