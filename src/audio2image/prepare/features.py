"""Log-mel front end, matching librosa's melspectrogram (+ power_to_db) on the same signal.

librosa's defaults are reproduced exactly: periodic Hann window, centred frames with zero padding, |STFT|^2,
Slaney-scale and Slaney-normalised triangular filters.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft
import scipy.sparse

try:  # compiled at install where a C compiler is found (setup.py); else the numpy path below does the same work
    from audio2image.prepare import _melkernel as KERNEL
except ImportError:
    KERNEL = None
if os.environ.get("AUDIO2IMAGE_MEL_KERNEL") == "0":  # the numpy path even so (benchmarks compare the two)
    KERNEL = None
try:  # scipy.fft.rfft without its fresh output array per call (see benchmarks/README.md): scipy's own pocketfft
    from scipy.fft._pocketfft.pypocketfft import r2c as _R2C  # binding, private, hence the fallback to rfft
except ImportError:
    _R2C = None


@dataclass(frozen=True)
class MelSettings:
    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    f_min: float
    f_max: float
    log: bool  # True: dB as librosa.power_to_db(ref=1, amin=1e-10, top_db=80); False: power, as the seed

    def frames(self, samples: int) -> int:
        return 1 + samples // self.hop  # centred frames

    def to_dict(self) -> dict:
        return asdict(self)


FEATURE_PRESETS = {
    # Won et al. 2020 (sota-music-tagging-models): 16 kHz, n_fft 512, hop 256, 128 mels up to 8 kHz, in dB.
    "recipe": MelSettings(sample_rate=16000, n_fft=512, hop=256, n_mels=128, f_min=0.0, f_max=8000.0, log=True),
    # The seed: librosa.load's 22,050 Hz and melspectrogram defaults, power, no log.
    "original": MelSettings(sample_rate=22050, n_fft=2048, hop=512, n_mels=128, f_min=0.0, f_max=11025.0, log=False),
}

AMIN = 1e-10
TOP_DB = 80.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = hz >= 1000.0
    return np.where(log_part, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), hz)


def mel_filterbank(settings: MelSettings) -> np.ndarray:
    """[n_mels, 1 + n_fft // 2] triangular filters with Slaney area normalisation, as librosa.filters.mel."""
    fft_freqs = np.linspace(0, settings.sample_rate / 2, 1 + settings.n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(settings.f_min), _hz_to_mel(settings.f_max), settings.n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def hann_window(n_fft: int) -> np.ndarray:
    """The periodic Hann window (scipy.signal.get_window("hann", n, fftbins=True), librosa's default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


class MelFrontEnd:
    """One waveform [samples] -> mel features [n_mels, frames], float32 (dB or power, per settings).

    numpy + scipy.fft, one clip at a time: on one core this is several times faster than torch.stft
    (benchmarks/README.md: preparation), and preparation workers that never import torch start in
    milliseconds and stay small (see prepare.audio). Frames go through in chunks of CHUNK, in buffers reused
    from clip to clip, so the working set stays in cache instead of faulting in fresh pages for every clip's
    megabytes. The windowing before scipy's FFT of each chunk, and after it |X|^2, the sparse filterbank (each
    triangle spans a few FFT bins: 504 of 257 x 128 weights are non-zero for the recipe) and dB, run as compiled
    passes (prepare/_melkernel.c) where that was built, else as numpy operations (the compiled passes take about
    half the time after decoding; benchmarks/README.md: the compiled kernel).
    """

    # frames per pass. numpy: 512 (256 and 1024 were slower). The compiled pass keeps its own tile in L1, and
    # smaller chunks keep the FFT's input and output in L2 (benchmarks/README.md: chunk sizes).
    CHUNK, KERNEL_CHUNK = 512, 128

    def __init__(self, settings: MelSettings, compiled: bool = True):
        self.settings = settings
        self.kernel = KERNEL if compiled else None  # compiled=False: the numpy path (tests compare the two)
        self.chunk = self.KERNEL_CHUNK if self.kernel is not None else self.CHUNK
        self.window = hann_window(settings.n_fft)
        self.filters = scipy.sparse.csr_matrix(mel_filterbank(settings))  # [mels, bins]
        self.csr = (self.filters.indptr.astype(np.int32), self.filters.indices.astype(np.int32),
                    self.filters.data.astype(np.float32))
        self.frames = np.empty((self.chunk, settings.n_fft), np.float32)
        self.spectrum = np.empty((self.chunk, settings.n_fft // 2 + 1), np.complex64)
        self.power = np.empty((self.chunk, settings.n_fft // 2 + 1), np.float32)
        self._buffer = np.zeros(0, np.float32)

    def __call__(self, waveform: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The features of `waveform`, into `out` (float32 [n_mels, frames], C order) where given: a caller that
        keeps one buffer from clip to clip spares the fresh pages of a new array per clip."""
        mel, peak = self.unfloored(waveform, out)
        return np.maximum(mel, peak - TOP_DB, out=mel) if self.settings.log else mel

    def unfloored(self, waveform: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """The features before librosa's top_db floor (dB features: floor them at their max - TOP_DB), and their
        max (inf where any is NaN or inf), for a caller that floors them in a pass of its own
        (prepare.audio.ClipFeatures, with the fp16 conversion)."""
        s = self.settings
        padded, count = self._padded(waveform), s.frames(len(waveform))
        mel = np.empty((s.n_mels, count), np.float32) if out is None else out
        if self.kernel is None:
            return self._numpy_unfloored(padded, mel)
        peak = -math.inf
        for start in range(0, count, self.chunk):
            n = min(self.chunk, count - start)
            self.kernel.frames(padded, s.hop, start, self.window, n, self.frames)
            spectrum = self._rfft(self.frames[:n])
            # |X|^2, filterbank and dB into mel[:, start:start + n]; the largest value (inf for NaN or inf)
            peak = max(peak, self.kernel.bands(spectrum, n, spectrum.shape[1], *self.csr, mel, count, start, s.log,
                                               AMIN))
        return mel, peak

    def _numpy_unfloored(self, padded: np.ndarray, mel: np.ndarray) -> tuple[np.ndarray, float]:
        """`unfloored` without the kernel: a numpy operation per step, over the same chunks."""
        view = np.lib.stride_tricks.sliding_window_view(padded, self.settings.n_fft)[::self.settings.hop]
        for start in range(0, len(view), self.chunk):
            n = min(self.chunk, len(view) - start)
            spectrum = self._rfft(np.multiply(view[start:start + n], self.window, out=self.frames[:n]))
            self._bands(spectrum, mel[:, start:start + n])
        peak = float(mel.max())
        return mel, (peak if np.isfinite(peak) else math.inf)

    def _rfft(self, frames: np.ndarray) -> np.ndarray:
        """scipy.fft.rfft(frames, axis=1), into a buffer kept from chunk to chunk where scipy's binding allows."""
        global _R2C
        if _R2C is not None:
            try:
                return _R2C(frames, axes=(1,), forward=True, inorm=0, out=self.spectrum[:len(frames)], nthreads=1)
            except TypeError:  # another scipy's private signature: the public function from now on
                _R2C = None
        return scipy.fft.rfft(frames, axis=1)

    def _bands(self, spectrum: np.ndarray, out: np.ndarray) -> None:
        """The numpy path: |X|^2, the sparse filterbank and dB of a chunk's spectra into `out` [mels, n]."""
        power = np.abs(spectrum, out=self.power[:len(spectrum)])
        bands = self.filters @ np.square(power, out=power).T  # [mels, n]
        if self.settings.log:  # librosa.power_to_db(ref=1, amin=1e-10); its top_db floor needs the clip's peak
            np.log10(np.maximum(bands, AMIN, out=bands), out=bands)
            np.multiply(bands, 10.0, out=out)
        else:
            out[:] = bands

    def waveform_buffer(self, samples: int) -> np.ndarray:
        """Where to decode a waveform of `samples` values (and up to n_fft // 2 more, ignored): its first
        `samples` values, passed to this front end, are framed where they lie instead of being copied."""
        half = self.settings.n_fft // 2
        if len(self._buffer) != samples + 2 * half:
            self._buffer = np.zeros(samples + 2 * half, np.float32)
        return self._buffer[half:]

    def _padded(self, waveform: np.ndarray) -> np.ndarray:
        """The waveform with n_fft // 2 zeros on each side (centred frames, zero padding, as librosa), in a
        buffer kept from clip to clip: clips of one store all have one length."""
        middle = self.waveform_buffer(len(waveform))
        if waveform.ctypes.data != middle.ctypes.data:  # not decoded in place
            middle[:len(waveform)] = waveform
        middle[len(waveform):] = 0  # the right padding (decoding in place may have written a little into it)
        return self._buffer
