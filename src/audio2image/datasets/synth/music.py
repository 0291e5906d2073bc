"""Sound rendering: turns a scene (scenes.py) into the samples of one clip.

Every latent choice is rendered so that it is audible on a log-mel spectrogram (timbre, register,
decay, vibrato, formants, rhythm, loudness). Instruments and voices are additive synthesis from one
band-limited wavetable per note, vectorised numpy; drums are synthesised hits on a pattern; the mix
then gets the genre's room reverb, the "weird" effect, a noise floor and the level. Owns Instrument,
INSTRUMENTS, VOICES, the wavetables, envelopes, drums, effects and `render_clip`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio2image.datasets.synth.scenes import GENRES


@dataclass(frozen=True)
class Instrument:
    register: tuple[int, int]  # MIDI range of the main line
    beats: float  # note length in beats (ignored when `seconds_per_note` is set)
    spectrum: dict  # keyword arguments of harmonic_amplitudes()
    envelope: tuple[float, float, float]  # attack s, decay time constant s, sustain level
    chord: tuple[int, ...] = (0,)  # one line per entry, offset in scale steps from the main line
    motion: str = "walk"  # walk: stepwise melody; arpeggio: broken chords; hold: repeated root
    vibrato: tuple[float, float] = (0.0, 0.0)  # rate Hz, relative depth
    glide: float = 0.0  # seconds of portamento into each note (sitar meend, speech contour)
    detune: float = 0.0  # relative spread between chord lines: ensemble beating
    drive: float = 0.0  # tanh distortion (electric guitars)
    breath: float = 0.0  # noise relative to the tone (flute)
    formants: float = 0.0  # 0: none; else vowel formants scaled by this (1 male, 1.17 female)
    legato: float = 1.0  # sounding fraction of the time to the next note
    rests: float = 0.0  # probability that a note is silent (phrasing)
    seconds_per_note: float = 0.0  # fixed syllable rate (speech), independent of tempo
    fricatives: float = 0.0  # level of hiss bursts (s, sh, f) starting half the syllables (speech)
    gain: float = 0.6


# Timbre lives in the harmonic spectrum (tilt, odd-only, pluck position, resonances) and the envelope
# (plucked/struck decay vs bowed sustain); register and vibrato separate the bowed strings.
INSTRUMENTS: dict[str, Instrument] = {
    "acoustic_guitar": Instrument((45, 69), .5, dict(tilt=1.0, position=.18, cutoff=4000), (.002, .5, 0), (0, 2, 4)),
    "rock_guitar": Instrument((40, 57), .5, dict(tilt=1.0, position=.2), (.005, 1.5, .4), (0, 4), drive=5),
    "metal_guitar": Instrument((28, 43), .25, dict(tilt=.9), (.003, .12, .15), (0, 4), drive=14),
    "piano": Instrument((48, 84), 1, dict(tilt=1.5, position=.12, cutoff=3000), (.002, 1.0, 0), (0, -7)),
    "harpsichord": Instrument((53, 79), .25, dict(tilt=.5, position=.1), (.001, .3, 0), motion="arpeggio"),
    "harp": Instrument((48, 84), .25, dict(tilt=2.5), (.003, .8, 0), motion="arpeggio"),
    "sitar": Instrument((55, 76), .5, dict(tilt=.8, boost=(2200, 900, 6)), (.002, .9, .05), glide=.08),
    "drone": Instrument((43, 50), 4, dict(tilt=1.0, boost=(1500, 800, 4)), (.05, 3.0, .3), (0, 4), motion="hold",
                        gain=.4),
    "strings": Instrument((55, 79), 2, dict(tilt=1.0, cutoff=3500), (.25, 1, 1), (0, 2, 4), vibrato=(5, .003),
                          detune=.004),
    "violin": Instrument((64, 91), 1, dict(tilt=.9, boost=(3000, 1200, 2), cutoff=6000), (.06, 1, 1),
                         vibrato=(5.5, .006)),
    "cello": Instrument((36, 60), 1, dict(tilt=1.0, boost=(600, 300, 2)), (.08, 1, 1), vibrato=(5, .005)),
    "flute": Instrument((72, 93), 1, dict(tilt=3.0), (.05, 1, 1), vibrato=(5, .004), breath=.12),
    "synth": Instrument((48, 72), .25, dict(tilt=1.0, odd=True), (.003, .12, .5), motion="arpeggio"),
    "pad": Instrument((48, 72), 4, dict(tilt=1.0, cutoff=1200), (1.2, 1, 1), (0, 2, 4), detune=.006, gain=.5),
}

# Voices: a pulse train through vowel formants; sung (held notes, vibrato) or spoken (gliding contour,
# syllables); male low f0, female high; opera with a wide vibrato; a choir of four parts.
# Sung voices carry the "singer's formant" (a resonance near 3 kHz that lets a voice cut through a band).
_SUNG = dict(tilt=1.0, boost=(2900, 450, 5))
VOICES: dict[str, Instrument] = {
    "male_sung": Instrument((45, 60), 1, _SUNG, (.04, 1, 1), vibrato=(5.5, .012), formants=1.0, legato=.9, rests=.2,
                            gain=1.5),
    "female_sung": Instrument((60, 77), 1, _SUNG, (.04, 1, 1), vibrato=(5.5, .012), formants=1.17, legato=.9,
                              rests=.2, gain=1.5),
    "male_spoken": Instrument((43, 50), 1, dict(tilt=1.0), (.02, .15, .2), glide=.22, formants=1.0, legato=.8,
                              rests=.25, seconds_per_note=.22, fricatives=2.0, gain=1.5),
    "female_spoken": Instrument((53, 60), 1, dict(tilt=1.0), (.02, .15, .2), glide=.22, formants=1.17, legato=.8,
                                rests=.25, seconds_per_note=.22, fricatives=2.0, gain=1.5),
    "opera_male": Instrument((48, 65), 2, dict(_SUNG, tilt=.8), (.08, 1, 1), vibrato=(6, .03), formants=1.0,
                             legato=.95, rests=.1, gain=1.5),
    "opera_female": Instrument((67, 84), 2, dict(_SUNG, tilt=.8), (.08, 1, 1), vibrato=(6, .03), formants=1.17,
                               legato=.95, rests=.1, gain=1.5),
    "choir": Instrument((67, 76), 2, _SUNG, (.3, 1, 1), (0, -2, -4, -11), vibrato=(5, .006), detune=.004,
                        formants=1.1, legato=.95, gain=1.5),
}

# F1, F2, F3 (Hz) of a male voice; a female voice scales them up.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010], [570, 840, 2410], [300, 870, 2240]],
                  dtype=np.float32)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "raga": (0, 1, 4, 5, 7, 8, 11)}
TEMPO_BPM = {"slow": (50, 68), "mid": (92, 118), "fast": (150, 180)}
PEAK = {"quiet": 0.1, "soft": 0.25, "mid": 0.5, "loud": 0.85}  # MP3 decoding adds a few % to peaks
TABLE = 2048  # wavetable length (a power of two): room for every harmonic below 8 kHz down to f0 = 16 Hz
BLOCK = 16  # samples per control step: pitch and envelopes change every 1 ms at 16 kHz


def harmonic_amplitudes(freqs: np.ndarray, harmonic: np.ndarray, tilt: float = 1.0, odd: bool = False,
                        position: float | None = None, cutoff: float | None = None,
                        boost: tuple[float, float, float] | None = None) -> np.ndarray:
    """Amplitude of each harmonic (number `harmonic`, frequency `freqs` in Hz)."""
    amps = harmonic ** -tilt
    if odd:  # square-ish: only odd harmonics
        amps = amps * (harmonic % 2)
    if position:  # plucked/struck at a fraction of the string: that harmonic series has notches
        amps = amps * (0.15 + np.abs(np.sin(np.pi * harmonic * position)))
    if cutoff:  # a dull, low-passed timbre
        amps = amps * np.exp(-freqs / cutoff)
    if boost:  # one resonance (body of a violin/cello, a sitar's buzzing bridge)
        centre, width, gain = boost
        amps = amps * (1 + gain * np.exp(-((freqs - centre) / width) ** 2))
    return amps


def _formant_gain(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Vocal-tract gain at `freqs` [notes, harmonics] for each note's formants [notes, 3]."""
    widths, gains = (90.0, 120.0, 170.0), (1.0, 0.7, 0.35)
    out = 0.03
    for j in range(3):
        out = out + gains[j] / (1 + ((freqs - formants[:, j:j + 1]) / widths[j]) ** 2)
    return out


def note_tables(f0: np.ndarray, sr: int, spectrum: dict, formants: np.ndarray | None = None) -> np.ndarray:
    """One band-limited single-period waveform per note [notes, TABLE], unit RMS."""
    harmonic = np.arange(1, TABLE // 2, dtype=np.float32)[None, :]
    freqs = f0[:, None].astype(np.float32) * harmonic
    amps = harmonic_amplitudes(freqs, harmonic, **spectrum) * (freqs < 0.48 * sr)  # nothing above Nyquist
    if formants is not None:
        amps = amps * _formant_gain(freqs, formants)
    # Schroeder phases keep the crest factor low, so peaks do not dominate the level normalisation.
    phases = np.pi * harmonic * (harmonic - 1) / harmonic.shape[1]
    spec = np.zeros((len(f0), TABLE // 2 + 1), dtype=np.complex64)
    spec[:, 1:TABLE // 2] = amps * np.exp(1j * phases)
    tables = np.fft.irfft(spec, n=TABLE, axis=1).astype(np.float32)
    return tables / (np.sqrt((tables ** 2).mean(axis=1, keepdims=True)) + 1e-12)


def _pitch_grid(key: dict, inst: Instrument) -> np.ndarray:
    """The scale's MIDI pitches from an octave below to two octaves above the register (room for chords)."""
    lo, hi = inst.register
    return np.array([m for m in range(lo - 19, hi + 26) if (m - key["root"]) % 12 in SCALES[key["scale"]]])


def _degrees(inst: Instrument, notes: int, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Index into `grid` of each note of the main line, inside the register."""
    inside = np.flatnonzero((grid >= inst.register[0]) & (grid <= inst.register[1]))
    lo, hi = inside[0], inside[-1]
    if inst.motion == "hold":
        return np.full(notes, lo)
    if inst.motion == "arpeggio":  # 1-3-5-8 broken chords whose root wanders every bar
        roots = np.repeat(lo + rng.integers(0, max(1, hi - lo - 6), size=notes // 4 + 1), 4)[:notes]
        return np.minimum(roots + np.resize([0, 2, 4, 7], notes), hi)
    steps = rng.choice([-2, -1, -1, 0, 1, 1, 2], size=notes)
    walk = np.cumsum(steps) + rng.integers(lo, hi + 1)
    span = 2 * (hi - lo) if hi > lo else 1
    folded = (walk - lo) % span  # reflect the walk back into the register
    return lo + np.where(folded > hi - lo, span - folded, folded)


def _note_times(inst: Instrument, beat_s: float, blocks: int, sr: int, rng: np.random.Generator, human: bool):
    """Onset of every note, in control steps (BLOCK samples)."""
    slot = inst.seconds_per_note or inst.beats * beat_s
    onsets = np.arange(0, blocks * BLOCK / sr, slot)
    if human:  # small timing jitter: players are not quantised
        onsets = onsets + rng.uniform(0, 0.15 * slot, size=len(onsets)) * (np.arange(len(onsets)) > 0)
    onsets = np.round(onsets * sr / BLOCK).astype(np.int64)
    return onsets[onsets < blocks]


def _envelope(ts: np.ndarray, length: np.ndarray, attack: float, decay: float, sustain: float) -> np.ndarray:
    rise = np.minimum(ts / attack, 1.0)
    fall = sustain + (1 - sustain) * np.exp(-ts / decay)
    tail = np.clip((length - ts) / 0.01, 0.0, 1.0)  # fade the last 10 ms: no click when a note ends
    return rise * fall * tail


def _pitch_curve(f0: np.ndarray, starts: np.ndarray, note: np.ndarray, inst: Instrument, t: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Pitch (Hz) at times `t` (s), notes starting at `starts` (s): glides and vibrato included."""
    if inst.glide:  # slide in log-frequency from the previous note over `glide` seconds
        knots = np.stack([starts, starts + inst.glide], axis=1).ravel()
        values = np.stack([np.log(np.r_[f0[0], f0[:-1]]), np.log(f0)], axis=1).ravel()
        order = np.argsort(knots, kind="stable")
        curve = np.exp(np.interp(t, knots[order], values[order]))
    else:
        curve = f0[note]
    rate, depth = inst.vibrato
    if depth:
        curve = curve * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return curve


def render_line(inst: Instrument, f0: np.ndarray, onsets: np.ndarray, n: int, sr: int,
                rng: np.random.Generator, formants: np.ndarray | None = None) -> np.ndarray:
    """One monophonic line: a wavetable per note, read at the pitch curve, times its envelope.

    Pitch and envelope are computed once per control step of BLOCK samples (1 ms at 16 kHz) and
    held; only the phase and the table lookup run per sample, which keeps a line to a few ms.
    """
    blocks = -(-n // BLOCK)
    t = np.arange(blocks) * (BLOCK / sr)
    note = np.repeat(np.arange(len(onsets)), np.diff(np.r_[onsets, blocks]))
    starts = onsets * (BLOCK / sr)
    pitch = _pitch_curve(f0, starts, note, inst, t, rng)
    # A note sounds until the next one starts (a `legato` fraction of that), whatever the timing jitter.
    length = np.diff(np.r_[onsets, blocks]) * (BLOCK / sr) * inst.legato
    env = _envelope(t - starts[note], length[note], *inst.envelope).astype(np.float32)
    if inst.rests:
        env = env * (rng.random(len(onsets)) >= inst.rests)[note]
    phase = np.cumsum(np.repeat(pitch / sr, BLOCK))  # float64: exact phase over a long clip
    index = (phase * TABLE).astype(np.int64) & (TABLE - 1)
    tables = note_tables(f0, sr, inst.spectrum, formants)
    gain = np.repeat(env, BLOCK)
    line = tables.ravel()[np.repeat(note * TABLE, BLOCK) + index] * gain
    if inst.breath:
        line += inst.breath * rng.standard_normal(len(line), dtype=np.float32) * gain
    if inst.fricatives:
        hiss = (t - starts[note] < 0.05) & (rng.random(len(onsets)) < 0.5)[note]
        noise = _band_noise(len(line), sr, 3000, 6000, rng).astype(np.float32)
        line += inst.fricatives * noise * np.repeat(hiss, BLOCK)
    return line[:n]


def render_part(inst: Instrument, key: dict, beat_s: float, n: int, sr: int, rng: np.random.Generator,
                human: bool = True) -> np.ndarray:
    """An instrument or voice: one line per chord entry, at unit RMS."""
    onsets = _note_times(inst, beat_s, -(-n // BLOCK), sr, rng, human)
    grid = _pitch_grid(key, inst)
    degrees = _degrees(inst, len(onsets), grid, rng)
    vowels = VOWELS[rng.integers(0, len(VOWELS), len(onsets))] * inst.formants if inst.formants else None
    if vowels is not None and len(inst.chord) > 1:  # a choir sings open vowels (a, o) together
        vowels = VOWELS[rng.choice([0, 3], len(onsets))] * inst.formants
    out = np.zeros(n)
    for j, offset in enumerate(inst.chord):
        midi = grid[np.clip(degrees + offset, 0, len(grid) - 1)]
        f0 = 440.0 * 2 ** ((midi - 69) / 12) * (1 + inst.detune * (j - (len(inst.chord) - 1) / 2))
        out += render_line(inst, f0, onsets, n, sr, rng, vowels)
    if inst.drive:
        out = np.tanh(inst.drive * out / (np.sqrt((out ** 2).mean()) + 1e-9))
    return out / (np.sqrt((out ** 2).mean()) + 1e-9)


# ----------------------------------------------------------------------------- drums


def _decay(sr: int, seconds: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(seconds * sr)) / sr
    return t, np.exp(-t / tau)


def _band_noise(n: int, sr: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    noise = np.fft.irfft(spec * ((f >= lo) & (f <= hi)), n)
    return noise / (np.abs(noise).max() + 1e-9)


def _kick(sr: int, top: float, bottom: float, tau: float) -> np.ndarray:
    t, env = _decay(sr, 5 * tau, tau)
    f = bottom + (top - bottom) * np.exp(-t / 0.03)  # the pitch drop that makes a kick thump
    return np.sin(2 * np.pi * np.cumsum(f) / sr) * env


def drum_sounds(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t, snare_env = _decay(sr, 0.25, 0.06)
    snare = 0.7 * _band_noise(len(t), sr, 1000, 5000, rng) * snare_env
    snare += 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / .04)  # the drum's body under the wires
    hat = _band_noise(int(0.06 * sr), sr, 5000, sr / 2, rng) * _decay(sr, 0.06, 0.012)[1]
    open_hat = _band_noise(int(0.3 * sr), sr, 4500, sr / 2, rng) * _decay(sr, 0.3, 0.08)[1]
    crash = _band_noise(int(1.2 * sr), sr, 3000, sr / 2, rng) * _decay(sr, 1.2, 0.45)[1]
    burst = _band_noise(int(0.15 * sr), sr, 800, 3000, rng)
    t15 = np.arange(len(burst)) / sr
    clap = burst * sum(np.exp(-np.maximum(t15 - d, 0) / .012) * (t15 >= d) for d in (0, .01, .02))
    tn, na_env = _decay(sr, 0.5, 0.18)
    na = (np.sin(2 * np.pi * 520 * tn) + 0.4 * np.sin(2 * np.pi * 1300 * tn)) * na_env
    ge_f = 85 + 40 * (1 - np.exp(-tn / 0.1))  # the bayan's upward bend
    ge = np.sin(2 * np.pi * np.cumsum(ge_f) / sr) * np.exp(-tn / 0.25)
    return {"kick": _kick(sr, 130, 50, .08), "kick808": _kick(sr, 160, 42, .16), "snare": snare, "hat": hat,
            "open_hat": open_hat, "crash": crash, "clap": clap, "na": na, "ge": ge}


def _pattern_hits(pattern: str, steps: int, rng: np.random.Generator) -> list[tuple[int, str, float]]:
    """(sixteenth index, sound, velocity) for the whole clip."""
    hits = []
    for s in range(steps):
        b = s % 16
        if pattern in ("rock", "metal"):
            if b in (0, 8) or pattern == "metal" or (b in (6, 10, 14) and rng.random() < .3):
                hits.append((s, "kick", 1.0 if pattern == "rock" else 0.8))
            if b in (4, 12):
                hits.append((s, "snare", 1.0))
            if b % 2 == 0:
                hits.append((s, "hat", 0.5 if pattern == "rock" else 0.3))
            if pattern == "metal" and b == 0:
                hits.append((s, "crash", 0.6))
        elif pattern == "techno":
            if b % 4 == 0:
                hits.append((s, "kick808", 1.0))  # four on the floor
            if b in (4, 12):
                hits.append((s, "clap", 0.7))
            hits.append((s, "open_hat" if b % 4 == 2 else "hat", 0.5 if b % 4 == 2 else 0.25))
        elif pattern == "tabla" and rng.random() < .55:
            hits.append((s, "na" if rng.random() < .6 else "ge", rng.uniform(.5, 1)))
    return hits


def render_drums(pattern: str, beat_s: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    sounds = drum_sounds(sr, rng)
    step = beat_s / 4
    out = np.zeros(n)
    for s, name, velocity in _pattern_hits(pattern, int(n / sr / step) + 1, rng):
        start = int(round(s * step * sr))
        shot = sounds[name][: n - start]
        out[start:start + len(shot)] += velocity * shot
    return out / (np.sqrt((out ** 2).mean()) + 1e-9)


# ----------------------------------------------------------------------------- the mix


def _weird(mix: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Ring modulation plus repeating glissando sweeps: inharmonic, unmusical, obvious on a spectrogram."""
    t = np.arange(len(mix)) / sr
    ring = mix * np.sin(2 * np.pi * rng.uniform(200, 700) * t)
    period = rng.uniform(0.6, 1.4)
    lo, hi = rng.uniform(200, 500), rng.uniform(3000, 6000)
    f = lo * (hi / lo) ** ((t % period) / period)
    sweep = np.sin(2 * np.pi * np.cumsum(f) / sr)
    return 0.5 * mix + 0.5 * ring + 0.6 * sweep * np.sqrt((mix ** 2).mean())


def _reverb(mix: np.ndarray, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room: convolution with exponentially decaying noise (RT60 `seconds`); smears onsets and fills gaps."""
    t = np.arange(int(min(seconds, 3.0) * sr)) / sr
    response = rng.standard_normal(len(t)) * np.exp(-6.9 * t / seconds)
    response /= np.sqrt((response ** 2).sum())
    size = 1 << int(np.ceil(np.log2(len(mix) + len(t))))
    wet = np.fft.irfft(np.fft.rfft(mix, size) * np.fft.rfft(response, size), size)[:len(mix)]
    return mix + 0.6 * wet


def _lowpass(mix: np.ndarray, sr: int, corner: float, order: int) -> np.ndarray:
    f = np.fft.rfftfreq(len(mix), 1 / sr)
    return np.fft.irfft(np.fft.rfft(mix) / (1 + (f / corner) ** order), len(mix))


def _apply_level(mix: np.ndarray, level: str, sr: int) -> np.ndarray:
    if level == "soft":  # softly played: darker as well as lower
        mix = _lowpass(mix, sr, 1500, 2)
    if level == "loud":  # compressed: loud means dense, not only a high peak
        mix = np.tanh(2.5 * mix / (np.abs(mix).max() + 1e-9))
        # Squashed peaks carry energy up to Nyquist; the 32 kbit/s encoder cuts above ~7 kHz, which would
        # raise the decoded peaks past 1. Cut it here, so the normalised peak is the one that gets decoded.
        mix = _lowpass(mix, sr, min(6500, 0.4 * sr), 8)
    return mix * (PEAK[level] / (np.abs(mix).max() + 1e-9))


def render_clip(scene: dict, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The clip's audio, float32 mono in [-1, 1]."""
    n = int(round(seconds * sr))
    key = {"root": int(rng.integers(0, 12)),
           "scale": "raga" if scene["genre"] == "indian" else str(rng.choice(["major", "minor"]))}
    beat_s = 60.0 / rng.uniform(*TEMPO_BPM[scene["tempo"]])
    electronic = scene["genre"] in ("techno", "ambient")  # sequenced: no timing jitter
    mix = np.zeros(n)
    for name in scene["instruments"]:
        mix += INSTRUMENTS[name].gain * render_part(INSTRUMENTS[name], key, beat_s, n, sr, rng, not electronic)
    if scene["voice"] != "none":
        inst = VOICES[scene["voice"]]
        mix += inst.gain * render_part(inst, key, beat_s, n, sr, rng)
    if scene["drums"] != "none":
        mix += 0.7 * render_drums(scene["drums"], beat_s, n, sr, rng)
    if GENRES[scene["genre"]].reverb:
        mix = _reverb(mix, GENRES[scene["genre"]].reverb, sr, rng)
    if scene["weird"]:
        mix = _weird(mix, sr, rng)
    mix = mix + 1e-3 * np.sqrt((mix ** 2).mean()) * rng.standard_normal(n)  # a noise floor, like any recording
    return _apply_level(mix, scene["level"], sr).astype(np.float32)
