"""The mel front end against librosa (the reference the seed and the published recipe both used)."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft

from audio2image.prepare import features
from audio2image.prepare.features import FEATURE_PRESETS, MelFrontEnd, mel_filterbank

PRESETS = sorted(FEATURE_PRESETS)
# the compiled kernel (prepare/_melkernel.c) where it was built, and the numpy path: both must match librosa
PATHS = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(features.KERNEL is None,
                                                                     reason="the kernel is not built here")),
         pytest.param(False, id="numpy")]
SILENCE = (1.2, 1.7)  # seconds of digital silence inside the test signal


def music(rate: int, seconds: float = 3.0, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """A music-like float32 signal: two harmonic tones with vibrato and decaying notes, noise, a silent gap."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    y = np.zeros_like(t)
    for base in rng.uniform(110, 440, size=2):
        phase = 2 * np.pi * base * (t + 0.002 * np.sin(2 * np.pi * 5 * t))
        for k in range(1, 8):
            y += 0.3 / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    y *= 0.55 + 0.45 * np.exp(-3 * (t % 0.5))  # note onsets every 0.5 s
    y += 0.02 * rng.standard_normal(len(t))
    y[round(SILENCE[0] * rate):round(SILENCE[1] * rate)] = 0.0
    return (gain * y / np.abs(y).max() * 0.8).astype(np.float32)


def librosa_mel(y: np.ndarray, settings) -> np.ndarray:
    return librosa.feature.melspectrogram(y=y, sr=settings.sample_rate, n_fft=settings.n_fft,
                                          hop_length=settings.hop, n_mels=settings.n_mels, fmin=settings.f_min,
                                          fmax=settings.f_max)


def frames_away_from_silence(settings, frames: int) -> np.ndarray:
    """Frames whose (centred) window does not reach into the silent gap."""
    centres = np.arange(frames) * settings.hop
    half = settings.n_fft // 2
    start, end = (round(s * settings.sample_rate) for s in SILENCE)
    return (centres + half < start) | (centres - half >= end)


def test_presets_are_the_documented_ones():
    recipe, original = FEATURE_PRESETS["recipe"], FEATURE_PRESETS["original"]
    assert (recipe.sample_rate, recipe.n_fft, recipe.hop, recipe.n_mels, recipe.f_max, recipe.log) == \
        (16000, 512, 256, 128, 8000.0, True)
    assert (original.sample_rate, original.n_fft, original.hop, original.n_mels, original.f_max, original.log) == \
        (22050, 2048, 512, 128, 11025.0, False)


@pytest.mark.parametrize("preset", PRESETS)
def test_filterbank_equals_librosa(preset):
    s = FEATURE_PRESETS[preset]
    ours = mel_filterbank(s)
    reference = librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.f_min, fmax=s.f_max)
    assert ours.shape == reference.shape == (s.n_mels, 1 + s.n_fft // 2)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    assert (ours.sum(axis=1) > 0).all()  # no empty filter


@pytest.mark.parametrize("preset", PRESETS)
def test_filterbank_with_other_limits(preset):
    s = FEATURE_PRESETS[preset]
    other = type(s)(**{**s.to_dict(), "f_min": 30.0, "f_max": s.sample_rate / 4, "n_mels": 64})
    reference = librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=64, fmin=30.0, fmax=s.sample_rate / 4)
    np.testing.assert_allclose(mel_filterbank(other), reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("preset", PRESETS)
def test_front_end_matches_librosa(preset, compiled):
    s = FEATURE_PRESETS[preset]
    y = music(s.sample_rate)
    ours = MelFrontEnd(s, compiled)(y)
    power = librosa_mel(y, s)
    assert ours.shape == power.shape == (s.n_mels, s.frames(len(y)))
    keep = frames_away_from_silence(s, ours.shape[1])
    assert keep.sum() > 0.6 * len(keep)
    if s.log:
        reference = librosa.power_to_db(power)  # ref 1, amin 1e-10, top_db 80
        np.testing.assert_allclose(ours[:, keep], reference[:, keep], rtol=0, atol=0.01)
        # in the silence both are floored at 80 dB below the clip's peak
        assert ours.max() - ours.min() == pytest.approx(80.0, abs=0.01)
        np.testing.assert_allclose(ours.min(), reference.min(), atol=0.01)
    else:
        assert (ours >= 0).all()
        np.testing.assert_allclose(10 * np.log10(ours[:, keep]), 10 * np.log10(power[:, keep]), rtol=0, atol=0.01)
        np.testing.assert_allclose(ours[:, keep], power[:, keep], rtol=1e-3, atol=0)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("preset", PRESETS)
def test_loudness_only_shifts_the_features(preset, compiled):
    """A quiet clip is its loud self shifted down, floored at its own peak - 80 dB (or librosa's -100 dB)."""
    s = FEATURE_PRESETS[preset]
    front = MelFrontEnd(s, compiled)
    loud, quiet = front(music(s.sample_rate, seed=2)), front(music(s.sample_rate, seed=2, gain=1e-3))
    assert quiet.dtype == np.float32 and quiet.shape == (s.n_mels, s.frames(3 * s.sample_rate))
    if not s.log:
        np.testing.assert_allclose(quiet, loud * 1e-6, rtol=1e-3, atol=1e-12)
        return
    assert loud.max() - quiet.max() == pytest.approx(60.0, abs=0.01)
    reference = librosa.power_to_db(librosa_mel(music(s.sample_rate, seed=2, gain=1e-3), s))
    assert quiet.min() == pytest.approx(reference.min(), abs=0.01)  # amin's -100 dB here, above peak - 80
    assert loud.max() - loud.min() == pytest.approx(80.0, abs=0.01)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("extra", [0, 1, -1, 7 * 512, 7 * 512 - 1])
def test_output_shape(preset, extra, compiled):
    s = FEATURE_PRESETS[preset]
    samples = s.n_fft + extra if extra >= 0 else s.sample_rate * 2 + extra
    y = np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
    out = MelFrontEnd(s, compiled)(y)
    assert out.shape == (s.n_mels, s.frames(samples)) == (s.n_mels, 1 + samples // s.hop)
    assert librosa_mel(y, s).shape == (s.n_mels, s.frames(samples))
    assert np.isfinite(out).all()


@pytest.mark.parametrize("compiled", PATHS)
def test_silence_is_finite(compiled):
    for preset in PRESETS:
        s = FEATURE_PRESETS[preset]
        out = MelFrontEnd(s, compiled)(np.zeros(s.sample_rate, dtype=np.float32))
        assert np.isfinite(out).all()
        if s.log:
            np.testing.assert_allclose(out, -100.0, atol=1e-4)  # 10 log10(amin): the same as librosa.power_to_db of zeros
            assert np.allclose(librosa.power_to_db(np.zeros((4, 4))), -100.0)
        else:
            assert (out == 0).all()


# --- a clip file -> the stored fp16 row and its sums (prepare.audio.ClipFeatures) -------------------------------
def test_fp16_bits_equal_numpys_cast_everywhere():
    """The store's fp16 conversion (Veltkamp rounding + bit operations) must give numpy's astype(float16) bit for
    bit: random values over every fp16 exponent, exact ties (both parities), subnormals, zeros and the extremes."""
    from audio2image.prepare.audio import FP16_MAX, ClipFeatures

    rng = np.random.default_rng(0)
    bits = (rng.integers(0, 2, 300_000, dtype=np.uint32) << 31) | (rng.integers(100, 143, 300_000, dtype=np.uint32)
                                                                   << 23) | rng.integers(0, 1 << 23, 300_000,
                                                                                         dtype=np.uint32)
    bits[::3] = (bits[::3] & ~np.uint32(0x1FFF)) | 0x1000  # exactly halfway between two fp16 values
    values = bits.view(np.float32)
    values = values[np.abs(values) <= FP16_MAX]
    special = np.array([0.0, -0.0, 2.0 ** -24, -(2.0 ** -14), 2.0 ** -14 * 0.75, 6e-8, FP16_MAX, -FP16_MAX,
                        65500.0, 1.0, -100.0], np.float32)
    values = np.concatenate([values, special])[:128 * (len(values) // 128)].reshape(128, -1)
    clip = ClipFeatures(FEATURE_PRESETS["recipe"], samples=(values.shape[1] - 1) * 256)
    assert clip.mel.shape == values.shape
    rounded = clip._to_fp16(values.copy())
    expected = values.astype(np.float16)
    np.testing.assert_array_equal(clip.stored.view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(rounded, expected.astype(np.float32))  # the sums are of the stored values
    if features.KERNEL is None:
        return
    # the compiled pass: the CPU's conversion, the sums of the stored values, the count at FP16_MAX
    stored, sums, squares, again = np.empty_like(expected), np.empty(128), np.empty(128), values.copy()
    saturated = features.KERNEL.finish(again, stored, sums, squares, *values.shape, -np.inf)
    np.testing.assert_array_equal(stored.view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(again, values)  # read only
    exact = expected.astype(np.float64)
    np.testing.assert_allclose(sums, exact.sum(axis=1), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(squares, np.square(exact).sum(axis=1), rtol=1e-12)
    assert saturated == np.count_nonzero(expected == FP16_MAX) > 0


def test_the_compiled_pass_clamps_to_the_floor_and_to_fp16s_range():
    if features.KERNEL is None:
        pytest.skip("the kernel is not built here")
    values = np.array([[-120.0, -50.0, 7e4, np.float32(1e30)], [3.0, -80.0, -80.5, 0.1]], np.float32)
    stored, sums, squares = np.empty(values.shape, np.float16), np.empty(2), np.empty(2)
    saturated = features.KERNEL.finish(values, stored, sums, squares, 2, 4, -80.0)
    expected = np.clip(np.array([[-120.0, -50.0, 7e4, 1e30], [3.0, -80.0, -80.5, 0.1]]), -80.0, 65504.0)
    np.testing.assert_array_equal(stored, expected.astype(np.float16))
    assert saturated == 2 and sums[0] == pytest.approx(-80 - 50 + 2 * 65504.0)


def test_the_kernel_is_built_where_a_c_compiler_is():
    """setup.py builds it optionally (a failed build installs without it): here, with gcc, it must be there."""
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the numpy path runs")
    assert features.KERNEL is not None, "prepare/_melkernel.c was not built: see pip's output of `make venv`"


@pytest.mark.parametrize("preset", PRESETS)
def test_compiled_and_numpy_paths_store_the_same_rows(preset, tmp_path):
    """Both paths give one clip's stored fp16 row to within one fp16 step where float rounding differs before
    the conversion (almost never), and the same sums."""
    import soundfile

    from audio2image.prepare.audio import ClipFeatures

    if features.KERNEL is None:
        pytest.skip("the kernel is not built here")
    s = FEATURE_PRESETS[preset]
    path = tmp_path / "clip.flac"
    soundfile.write(path, music(s.sample_rate, seed=3), s.sample_rate)
    ours, theirs = (ClipFeatures(s, 3 * s.sample_rate, compiled)(path) for compiled in (True, False))
    a, b = ours.x.astype(np.float32), theirs.x.astype(np.float32)
    step = np.abs(np.spacing(b.astype(np.float16))).astype(np.float32)
    assert (np.abs(a - b) <= step).all() and np.count_nonzero(a != b) < 1e-3 * a.size
    for key in ("band_sum", "band_squares"):
        np.testing.assert_allclose(ours.sums[key], theirs.sums[key], rtol=1e-5)
    assert ours.sums["saturated"] == theirs.sums["saturated"]


@pytest.mark.parametrize("compiled", PATHS)
def test_a_clip_whose_features_overflow_is_skipped(tmp_path, compiled):
    import soundfile

    from audio2image.prepare.audio import ClipFeatures

    s = FEATURE_PRESETS["recipe"]
    path = tmp_path / "loud.wav"
    soundfile.write(path, np.full(s.sample_rate, 1e30, np.float32), s.sample_rate, subtype="FLOAT")
    message = "features are not finite (samples beyond float32's range)"
    assert ClipFeatures(s, s.sample_rate, compiled)(path) == message
    fine = tmp_path / "fine.wav"
    soundfile.write(fine, music(s.sample_rate, seed=1)[:s.sample_rate], s.sample_rate, subtype="FLOAT")
    row = ClipFeatures(s, s.sample_rate, compiled)(fine)
    features_of = MelFrontEnd(s, compiled)(music(s.sample_rate, seed=1)[:s.sample_rate])
    np.testing.assert_array_equal(row.x, features_of.astype(np.float16))


@pytest.mark.parametrize("compiled", PATHS)
def test_a_clip_with_nan_samples_is_skipped_and_named(tmp_path, compiled):
    import soundfile

    from audio2image.prepare.audio import NOT_FINITE, ClipFeatures, decode_clip

    s = FEATURE_PRESETS["recipe"]
    samples = music(s.sample_rate, seed=4)[:s.sample_rate]
    samples[1000] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, samples, s.sample_rate, subtype="FLOAT")
    assert ClipFeatures(s, s.sample_rate, compiled)(path) == NOT_FINITE  # checked only once the features show it
    assert decode_clip(path, s.sample_rate, s.sample_rate) == NOT_FINITE  # decode_clip alone checks the samples


@pytest.mark.parametrize("compiled", PATHS)
def test_unfloored_features_come_with_their_max(compiled):
    s = FEATURE_PRESETS["recipe"]
    front = MelFrontEnd(s, compiled)
    mel, peak = front.unfloored(music(s.sample_rate, seed=5))
    assert peak == mel.max() and mel.min() < peak - 80  # the floor is the caller's
    loud = np.full(s.sample_rate, 1e30, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        assert front.unfloored(loud)[1] == np.inf  # overflowing features: inf, whatever their values


def test_the_kept_buffer_fft_is_scipys_rfft():
    """MelFrontEnd._rfft calls scipy's pocketfft binding with an output buffer (private API, so checked here)."""
    s = FEATURE_PRESETS["recipe"]
    front = MelFrontEnd(s)
    frames = np.random.default_rng(6).standard_normal((front.chunk, s.n_fft)).astype(np.float32)
    np.testing.assert_array_equal(front._rfft(frames.copy()), scipy.fft.rfft(frames, axis=1))
    assert features._R2C is not None  # the scipy this project pins has it: a change would show here
