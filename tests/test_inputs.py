"""Model inputs: deterministic evaluation transforms, seeded training augmentation and masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audio2image.training.inputs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AudioInputs,
    ImageInputs,
    crop_boxes,
    mask,
    random_crop_flip,
    resized_crops,
)
from audio2image.training.loader import RawBatch

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def images(n: int = 6, side: int = 40, seed: int = 0) -> RawBatch:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    return RawBatch(torch.from_numpy(x), torch.arange(n))


def mels(n: int = 4, n_mels: int = 16, frames: int = 50, seed: int = 0) -> RawBatch:
    rng = np.random.default_rng(seed)
    x = rng.normal(-30, 10, (n, n_mels, frames)).astype(np.float16)
    return RawBatch(torch.from_numpy(x), torch.zeros(n, 5))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- images --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("augment", ["crop-flip", "original", "none"])
def test_image_eval_is_deterministic_and_unaugmented(augment):
    raw = images()
    inputs = ImageInputs(32, augment)
    torch.manual_seed(1)
    first = inputs.eval(raw, "cpu")
    torch.manual_seed(2)
    inputs.train(raw, "cpu", gen(3))  # training draws leave evaluation alone
    second = inputs.eval(raw, "cpu")
    assert torch.equal(first, second)
    assert first.shape == (6, 3, 32, 32) and first.dtype == torch.float32
    # exactly a resize and ImageNet normalisation, whatever the training augmentation
    plain = F.interpolate(raw.x.permute(0, 3, 1, 2).float() / 255, size=(32, 32), mode="bilinear", antialias=True,
                          align_corners=False)
    torch.testing.assert_close(first, (plain - MEAN) / STD, rtol=0, atol=1e-5)
    assert torch.equal(first, ImageInputs(32, "none").eval(raw, "cpu"))


def test_image_eval_keeps_orientation():
    x = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    x[:, :, :16] = 255  # left half white
    x[:, :8, :] = 128  # top rows grey
    out = ImageInputs(32, "original").eval(RawBatch(x, torch.zeros(1)), "cpu")
    unnormalised = out * STD + MEAN
    torch.testing.assert_close(unnormalised, x.permute(0, 3, 1, 2).float() / 255, rtol=0, atol=1e-5)


def test_image_normalisation_of_mid_grey():
    x = torch.full((2, 48, 48, 3), 128, dtype=torch.uint8)
    out = ImageInputs(32, "crop-flip").eval(RawBatch(x, torch.zeros(2)), "cpu")
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1).expand(2, 3, 32, 32), rtol=0, atol=1e-5)
    assert out[0, 0, 0, 0].item() == pytest.approx((0.50196 - 0.485) / 0.229, abs=1e-3)


@pytest.mark.parametrize("augment", ["crop-flip", "original"])
@pytest.mark.parametrize("side", [40, 72])  # 72 > 2 * 32: shrunk before sampling
def test_image_train_is_seeded(augment, side):
    raw = images(8, side)
    inputs = ImageInputs(32, augment)
    a = inputs.train(raw, "cpu", gen(5))
    torch.manual_seed(123)  # the global seed plays no part
    b = inputs.train(raw, "cpu", gen(5))
    c = inputs.train(raw, "cpu", gen(6))
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, inputs.eval(raw, "cpu"))  # training is augmented
    assert torch.isfinite(a).all()


def test_image_train_without_augmentation_is_the_eval_transform():
    raw = images(3, 40)
    inputs = ImageInputs(32, "none")
    torch.testing.assert_close(inputs.train(raw, "cpu", gen(0)), inputs.eval(raw, "cpu"), rtol=0, atol=0)


def test_image_train_flips_half_the_time():
    x = torch.zeros(400, 32, 32, 3, dtype=torch.uint8)
    x[:, :, :16] = 255  # left half white
    out = ImageInputs(32, "crop-flip").train(RawBatch(x, torch.zeros(400)), "cpu", gen(0))
    left_brighter = (out[:, 0, :, :8].mean(dim=(1, 2)) > out[:, 0, :, -8:].mean(dim=(1, 2))).float().mean()
    assert 0.4 < left_brighter.item() < 0.6


def test_crop_flip_never_samples_outside_the_image():
    x = torch.full((600, 40, 40, 3), 128, dtype=torch.uint8)
    out = ImageInputs(32, "crop-flip").train(RawBatch(x, torch.zeros(600)), "cpu", gen(0))
    expected = ((128 / 255 - MEAN) / STD).expand(600, 3, 32, 32)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


def gradient_images(n: int, height: int = 256, width: int = 256) -> torch.Tensor:
    """uint8 [n, height, width, 3]: red = column, green = row, so output pixels tell where they were sampled."""
    x = torch.zeros(n, height, width, 3, dtype=torch.uint8)
    x[..., 0] = torch.arange(width).view(1, 1, width)
    x[..., 1] = torch.arange(height).view(1, height, 1)
    return x


def pixel_values(out: torch.Tensor) -> torch.Tensor:
    """Normalised model input back to 0..255 pixel values."""
    return (out * STD + MEAN) * 255


@pytest.mark.parametrize("height, width", [(256, 256), (200, 300)])
def test_crop_boxes_follow_random_resized_crop(height, width):
    crops = random_crop_flip(20_000, gen(0))
    top, left, box_height, box_width = crop_boxes(crops, height, width).T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + box_height <= height).all() and (left + box_width <= width).all()
    area = box_height * box_width / (height * width)
    assert area.min() > 0.25 - 0.01 and area.max() <= 1
    assert area.min() < 0.26 and area.max() > 0.98  # the whole scale range (0.25, 1) occurs
    aspect = (box_width / width) / (box_height / height)  # as a fraction of each side, like affine_grid
    assert aspect.min() > 3 / 4 - 0.02 and aspect.max() < 4 / 3 + 0.02
    assert aspect.min() < 0.77 and aspect.max() > 1.3  # the whole ratio range (3/4, 4/3) occurs
    small = box_width < width // 2
    assert left[small].min() == 0 and (left + box_width)[small].max() == width  # small crops reach both edges
    assert 0.48 < crops.flip.float().mean() < 0.52


def test_crop_flip_on_the_cpu_resizes_the_drawn_boxes():
    n, side, size = 64, 64, 128  # crops of 32 to 64 pixels upscaled: plain bilinear, so the geometry is exact
    out = pixel_values(ImageInputs(size, "crop-flip").train(RawBatch(gradient_images(n, side, side), torch.zeros(n)),
                                                          "cpu", gen(4)))
    crops = random_crop_flip(n, gen(4))  # the same draws
    top, left, height, width = crop_boxes(crops, side, side).T.float()
    columns, rows = out[:, 0, size // 2], out[:, 1, :, size // 2]  # source column / row of each output pixel
    assert torch.equal(columns[:, 0] > columns[:, -1], crops.flip)  # flipped images run right to left
    first, last = columns.min(dim=1).values, columns.max(dim=1).values
    # upscaled, the outermost output pixels sample beyond the crop's edge pixels, so they repeat them exactly
    torch.testing.assert_close(first, left, rtol=0, atol=0.01)
    torch.testing.assert_close(last, left + width - 1, rtol=0, atol=0.01)
    torch.testing.assert_close(rows[:, 0], top, rtol=0, atol=0.01)
    torch.testing.assert_close(rows[:, -1], top + height - 1, rtol=0, atol=0.01)


def test_cpu_crops_match_the_device_path():
    """The CPU path and the grid_sample path (CUDA, MPS) sample the same crops from the same generator."""
    raw = RawBatch(gradient_images(32), torch.zeros(32))
    inputs = ImageInputs(48, "crop-flip")
    on_cpu = pixel_values(inputs.train(raw, "cpu", gen(2)))
    on_device = pixel_values(inputs._affine(raw, "cpu", gen(2)))  # the same code a GPU runs
    torch.testing.assert_close(on_cpu, on_device, rtol=0, atol=2.0)  # integer boxes, uint8 rounding


@pytest.mark.parametrize("flip", [False, True])
def test_full_image_crop_is_a_plain_resize(flip):
    raw = images(5, 72)
    boxes = torch.tensor([[0, 0, 72, 72]]).expand(5, 4)
    out = resized_crops(raw.x, boxes, torch.full((5,), flip), 32)
    plain = ImageInputs(32, "crop-flip").eval(raw, "cpu")
    expected = plain.flip(-1) if flip else plain
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    torch.testing.assert_close(pixel_values(out), pixel_values(expected), rtol=0, atol=1.0)  # uint8 rounding


def test_cpu_crops_are_written_channels_last():
    raw = images(3, 40)
    boxes, flip = torch.tensor([[0, 0, 40, 40]] * 3), torch.zeros(3, dtype=torch.bool)
    out = resized_crops(raw.x, boxes, flip, 32)
    assert out.shape == (3, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="channels-last"):
        resized_crops(raw.x, boxes, flip, 32, out=torch.empty(3, 3, 32, 32))


def test_crop_flip_on_the_cpu_does_not_depend_on_the_thread_count():
    raw = images(9, 40)
    inputs = ImageInputs(32, "crop-flip")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = inputs.train(raw, "cpu", gen(8))
        torch.set_num_threads(3)
        three = inputs.train(raw, "cpu", gen(8))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


def test_crop_flip_on_the_cpu_leaves_the_thread_count_as_it_was():
    threads = torch.get_num_threads()
    ImageInputs(32, "crop-flip").train(images(4, 40), "cpu", gen(1))
    assert torch.get_num_threads() == threads


def test_image_train_batches_kept_by_the_caller_stay_intact():
    raw = images(5, 40)
    inputs = ImageInputs(32, "crop-flip")
    first = inputs.train(raw, "cpu", gen(1))
    kept = first.clone()
    for seed in range(2, 5):
        inputs.train(raw, "cpu", gen(seed))
    assert torch.equal(first, kept)


# --- audio ---------------------------------------------------------------------------------------------------------
NORM = {"mean": [-30.0 + i for i in range(16)], "std": [10.0 + 0.5 * i for i in range(16)]}


@pytest.mark.parametrize("original_channels", [False, True])
@pytest.mark.parametrize("crop_frames", [0, 12])
def test_audio_eval_is_deterministic(original_channels, crop_frames):
    raw = mels()
    inputs = AudioInputs(crop_frames, 4, None if original_channels else NORM, specaugment=True,
                         original_channels=original_channels)
    torch.manual_seed(1)
    first = inputs.eval(raw, "cpu")
    torch.manual_seed(2)
    second = inputs.eval(raw, "cpu")
    assert torch.equal(first, second)
    assert first.dtype == torch.float32


def test_audio_eval_has_no_augmentation():
    raw = mels()
    out = AudioInputs(0, 4, NORM, specaugment=True, original_channels=False).eval(raw, "cpu")
    assert out.shape == (4, 3, 16, 50)
    normalised = (raw.x.float() - torch.tensor(NORM["mean"]).view(1, -1, 1)) / torch.tensor(NORM["std"]).view(1, -1, 1)
    for channel in range(3):  # the same normalised map on every channel, nothing masked
        torch.testing.assert_close(out[:, channel], normalised, rtol=0, atol=1e-6)


def test_audio_eval_crops_are_evenly_spaced():
    frames, crop, crops = 50, 12, 5
    x = torch.arange(frames, dtype=torch.float16).view(1, 1, -1).expand(2, 8, -1).clone()
    x[1] += 100  # a second clip, to check rows stay apart
    out = AudioInputs(crop, crops, None, specaugment=True, original_channels=False).eval(RawBatch(x, torch.zeros(2)),
                                                                                   "cpu")
    assert out.shape == (2, crops, 3, 8, crop)
    starts = out[0, :, 0, 0, 0].tolist()
    assert starts[0] == 0 and starts[-1] + crop == frames  # first at the start, last ends at the clip end
    gaps = np.diff(starts)
    assert gaps.max() - gaps.min() <= 1 and gaps.min() > 0
    for k, start in enumerate(starts):
        expected = torch.arange(start, start + crop, dtype=torch.float32)
        assert torch.equal(out[0, k, 2, 5], expected) and torch.equal(out[1, k, 1, 3], expected + 100)


def test_audio_eval_whole_clip_when_crop_covers_it():
    raw = mels(2, 8, 20)
    out = AudioInputs(20, 16, None, specaugment=False, original_channels=False).eval(raw, "cpu")
    assert out.shape == (2, 3, 8, 20)


def test_audio_original_channels():
    raw = mels(3, 128, 200)
    inputs = AudioInputs(0, 1, None, specaugment=False, original_channels=True)
    out = inputs.eval(raw, "cpu")
    assert out.shape == (3, 3, 128, 200)
    assert torch.equal(out[:, 0], raw.x.float())  # unnormalised mel first
    freq_masked = (out[:, 1] == 0).all(dim=2)  # whole mel rows zeroed
    time_masked = (out[:, 2] == 0).all(dim=1)  # whole frames zeroed
    assert freq_masked.sum(dim=1).max() <= 40 and time_masked.sum(dim=1).max() <= 80
    train = inputs.train(raw, "cpu", gen(0))
    assert train.shape == (3, 3, 128, 200) and torch.equal(train[:, 0], raw.x.float())


def test_audio_original_channels_eval_does_not_depend_on_batching():
    raw = mels(5, 128, 200)
    rows = torch.tensor([7, 3, 12, 0, 5])
    inputs = AudioInputs(0, 1, None, specaugment=False, original_channels=True)
    whole = inputs.eval(RawBatch(raw.x, raw.y, rows=rows), "cpu")
    assert not torch.equal(whole[:, 1], whole[:, 0]) and not torch.equal(whole[:, 2], whole[:, 0])  # masked
    order = [4, 2, 0, 3, 1]
    shuffled = inputs.eval(RawBatch(raw.x[order], raw.y[order], rows=rows[order]), "cpu")
    assert torch.equal(shuffled, whole[order])
    for i in range(5):  # one clip per batch
        alone = inputs.eval(RawBatch(raw.x[i:i + 1], raw.y[i:i + 1], rows=rows[i:i + 1]), "cpu")
        assert torch.equal(alone[0], whole[i])


def test_audio_train_is_seeded_and_masked():
    raw = mels(8, 64, 120)
    inputs = AudioInputs(0, 1, NORM | {"mean": [0.0] * 64, "std": [1.0] * 64}, specaugment=True,
                         original_channels=False)
    a, b, c = (inputs.train(raw, "cpu", gen(s)) for s in (3, 3, 4))
    assert a.shape == (8, 3, 64, 120)
    assert torch.equal(a, b) and not torch.equal(a, c)
    zero_rows = (a[:, 0] == 0).all(dim=2).sum(dim=1)
    zero_frames = (a[:, 0] == 0).all(dim=1).sum(dim=1)
    assert zero_rows.max() <= 64 // 8 and zero_frames.max() <= 120 // 8
    assert zero_rows.sum() > 0 and zero_frames.sum() > 0


def contiguous_band(flags: torch.Tensor) -> tuple[int, int]:
    """(start, width) of the True run in a 1-D bool tensor; fails unless the Trues are one contiguous run."""
    where = torch.nonzero(flags).flatten().tolist()
    if not where:
        return 0, 0
    assert where == list(range(where[0], where[-1] + 1)), where
    return where[0], len(where)


@pytest.mark.parametrize("axis, max_width", [(1, 5), (2, 9), (1, 40), (2, 0)])
def test_mask_zeroes_one_band_of_at_most_max_width(axis, max_width):
    x = torch.rand(300, 20, 30) + 1.0
    before = x.clone()
    out = mask(x, axis, max_width, gen(7))
    assert torch.equal(x, before)  # not in place
    length = x.shape[axis]
    widths = []
    for i in range(len(x)):
        zero = out[i] == 0
        band = zero.all(dim=1) if axis == 1 else zero.all(dim=0)
        assert torch.equal(zero.any(dim=1) if axis == 1 else zero.any(dim=0), band)  # whole rows or columns only
        start, width = contiguous_band(band)
        assert width <= min(max_width, length) and start + width <= length
        widths.append(width)
        assert torch.equal(out[i][~zero], x[i][~zero])
    if max_width:
        assert min(widths) == 0 and max(widths) == min(max_width, length)  # the full range of widths occurs
    assert torch.equal(mask(x, axis, max_width, gen(7)), out)
