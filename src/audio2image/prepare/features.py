"""Log-mel front end in torch, matching librosa's melspectrogram (+ power_to_db) on the same signal.

librosa's defaults are reproduced exactly: periodic Hann window, centred frames with zero padding, |STFT|^2,
Slaney-scale and Slaney-normalised triangular filters. Computing it in torch lets a whole chunk of clips go
through one batched STFT.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


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
    "seed": MelSettings(sample_rate=22050, n_fft=2048, hop=512, n_mels=128, f_min=0.0, f_max=11025.0, log=False),
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


class MelFrontEnd(torch.nn.Module):
    """Waveforms [batch, samples] -> mel features [batch, n_mels, frames] (dB or power, per settings)."""

    def __init__(self, settings: MelSettings):
        super().__init__()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.n_fft, periodic=True), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filterbank(settings)), persistent=False)

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        s = self.settings
        spectrum = torch.stft(waveforms, s.n_fft, s.hop, window=self.window, center=True, pad_mode="constant",
                              return_complex=True)
        mel = self.filters @ spectrum.abs().pow(2)
        return power_to_db(mel) if s.log else mel


def power_to_db(power: torch.Tensor) -> torch.Tensor:
    """librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80), with the floor taken per clip (the leading axis)."""
    db = 10.0 * torch.log10(power.clamp_min(AMIN))
    peak = db.flatten(1).amax(dim=1).view(-1, *([1] * (db.dim() - 1)))
    return torch.maximum(db, peak - TOP_DB)
