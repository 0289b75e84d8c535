"""Procedural audio for the demo world: one parameterised generator per sound class
(docs/ARCHITECTURE.md, "The demo").

Every clip is drawn from a `numpy.random.Generator`, so the same generator state always gives the
same waveform, while different states vary pitch, rhythm, event durations, number of sources and
levels. Nothing is sampled from recordings: all sounds are built from tones, shaped noise and
short grains, vectorised with numpy so a 5 s clip costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy.signal import lfilter

from embeddings_store.demo import CLASS_NAMES

# The demo audio rate. 16 kHz keeps synthesis cheap and is the rate the demo model's CLAP-style
# feature extractor is built for, so clips never need resampling on the way into the model.
SAMPLE_RATE = 16000

# Peak level after normalisation: a little headroom so later gain or resampling cannot clip.
PEAK = 0.9

_TAU = 2.0 * np.pi
_TAU32 = np.float32(_TAU)

Shape = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# Building blocks. Signals are float32: numpy's float32 sin/exp/FFT are several times faster than
# float64 and the precision is ample for audio. Phases are accumulated in float64 and wrapped to
# one cycle before going to float32, so long tones keep a clean pitch.
# --------------------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    r = _rms(x)
    return (x / np.float32(r) if r > 0.0 else x).astype(np.float32, copy=False)


def _bp(f: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
    """Butterworth-like band-pass magnitude; lo <= 0 or hi == inf turns an edge off."""
    g = np.ones_like(f)
    if lo > 0.0:
        g = g / np.sqrt(1.0 + (lo / np.maximum(f, 1.0)) ** (2 * order))
    if np.isfinite(hi):
        g = g / np.sqrt(1.0 + (f / hi) ** (2 * order))
    return g


def _pink(f: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(np.maximum(f, 20.0))


def _brown(f: np.ndarray) -> np.ndarray:
    return 1.0 / np.maximum(f, 20.0)


@lru_cache(maxsize=8)
def _freqs(n: int, sr: int) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f.flags.writeable = False
    return f


def _noise(rng: np.random.Generator, n: int, sr: int, shape: Shape) -> np.ndarray:
    """Noise with magnitude spectrum `shape(f)`, unit RMS, from one inverse FFT."""
    # Random phases under a fixed magnitude: as noise-like as Gaussian bins to the ear, and a
    # third of the cost (one float32 uniform draw instead of two float64 normal draws).
    half = n // 2 + 1
    ph = rng.random(half, dtype=np.float32) * _TAU32
    spec = np.empty(half, dtype=np.complex64)
    spec.real = np.cos(ph)
    spec.imag = np.sin(ph)
    spec *= shape(_freqs(n, sr)).astype(np.float32)
    spec[0] = 0.0  # no DC offset, whatever the shape does at 0 Hz
    return _unit(np.fft.irfft(spec, n))


@lru_cache(maxsize=64)
def _lerp_index(k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    pos = np.linspace(0.0, k - 1.0, n)
    i = np.minimum(pos.astype(np.intp), k - 2)
    frac = (pos - i).astype(np.float32)
    i.flags.writeable = False
    frac.flags.writeable = False
    return i, frac


def _lerp(knots: np.ndarray, n: int) -> np.ndarray:
    """Linearly stretch knots (last axis) over n samples; the grid is cached per (knots, n)."""
    i, frac = _lerp_index(knots.shape[-1], n)
    kn = knots.astype(np.float32)
    lo = kn[..., i]
    return lo + (kn[..., i + 1] - lo) * frac


def _smooth_random(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    """Slowly varying zero-mean curve: random knots `rate` per second, linearly interpolated."""
    return _lerp(rng.standard_normal(int(np.ceil(n / sr * rate)) + 2), n)


def _frac32(cycles: np.ndarray) -> np.ndarray:
    return (cycles - np.floor(cycles)).astype(np.float32)


def _cycles(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Accumulated phase in cycles (float64) of an instantaneous-frequency track."""
    if np.ndim(freq) == 0:
        return np.arange(n) * (float(freq) / sr) + phase0
    return np.cumsum(freq, axis=-1, dtype=np.float64) / sr + phase0


def _sin(cycles: np.ndarray) -> np.ndarray:
    return np.sin(_TAU32 * _frac32(cycles))


def _tone(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    return _sin(_cycles(freq, n, sr, phase0))


def _saw(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    """Naive sawtooth following an instantaneous frequency; the aliasing is harmless here."""
    return np.float32(2.0) * _frac32(_cycles(freq, n, sr, phase0)) - np.float32(1.0)


def _lfilter(b: list[float], a: list[float], x: np.ndarray) -> np.ndarray:
    return lfilter(np.asarray(b, np.float32), np.asarray(a, np.float32), x.astype(np.float32))


def _resonate(x: np.ndarray, sr: int, fc: float, bw: float) -> np.ndarray:
    """Two-pole resonator (a formant) with roughly unit gain at its centre frequency."""
    fc = min(fc, 0.45 * sr)
    r = float(np.exp(-np.pi * bw / sr))
    w = _TAU * fc / sr
    b0 = (1.0 - r) * float(np.sqrt(1.0 - 2.0 * r * np.cos(2.0 * w) + r * r))
    return _lfilter([b0], [1.0, -2.0 * r * float(np.cos(w)), r * r], x)


def _formants(x: np.ndarray, sr: int, bank: list[tuple[float, float, float]]) -> np.ndarray:
    """Parallel formant filter bank of (centre Hz, bandwidth Hz, gain)."""
    out = np.zeros(x.shape, dtype=np.float32)
    for fc, bw, g in bank:
        out += np.float32(g) * _resonate(x, sr, fc, bw)
    return out


def _lowpass1(x: np.ndarray, sr: int, fc: float) -> np.ndarray:
    a = float(np.exp(-_TAU * fc / sr))
    return _lfilter([1.0 - a], [1.0, -a], x)


def _scatter(n: int, onsets: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """Overlap-add equally long grains (rows) at sample onsets, dropping what overhangs."""
    if grains.size == 0:
        return np.zeros(n, dtype=np.float32)
    idx = np.asarray(onsets).astype(np.int64).reshape(-1, 1) + np.arange(grains.shape[1])
    keep = (idx >= 0) & (idx < n)
    return np.bincount(idx[keep], weights=grains[keep], minlength=n)[:n].astype(np.float32)


def _fade(length: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear attack/release envelope, so tones start and stop without clicks."""
    i = np.arange(length, dtype=np.float32)
    a = np.minimum(1.0, (i + 1.0) / max(attack * sr, 1.0))
    r = np.minimum(1.0, (length - i) / max(release * sr, 1.0))
    return a * r


def _place(out: np.ndarray, start: int, seg: np.ndarray) -> None:
    """Add a segment into the clip at `start`, clipping whatever falls outside."""
    n = out.shape[0]
    s0, s1 = max(start, 0), min(start + seg.shape[0], n)
    if s1 > s0:
        out[s0:s1] += seg[s0 - start : s1 - start]


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / np.float32(sr)


def _db(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10.0 ** (rng.uniform(lo, hi) / 20.0))


# --------------------------------------------------------------------------------------------
# Class generators: each returns an unnormalised float64 clip of n samples.
# --------------------------------------------------------------------------------------------


def _songbirds(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    dur = n / sr
    top = 0.45 * sr
    for _ in range(int(rng.integers(1, 5))):  # several birds, each with its own song
        base = rng.uniform(2000.0, 6000.0)
        syl = rng.uniform(0.03, 0.16)
        gap = rng.uniform(0.01, 0.12)
        span = rng.uniform(-0.5, 0.5) * base
        trill_rate = rng.uniform(20.0, 90.0) if rng.random() < 0.5 else 0.0
        trill_depth = rng.uniform(0.02, 0.12) * base
        onsets: list[np.ndarray] = []
        t = rng.uniform(0.0, min(1.0, 0.5 * dur))
        while t < dur:  # phrases of a few syllables separated by pauses
            m = int(rng.integers(2, 12))
            onsets.append(t + np.arange(m) * (syl + gap))
            t += m * (syl + gap) + rng.uniform(0.2, 1.5)
        on = np.concatenate(onsets)
        length = max(int(syl * sr), 8)
        tt = np.arange(length) / sr
        u = tt / syl
        contour = (u, np.sin(np.pi * u), u * u)[int(rng.integers(3))]
        jitter = 1.0 + 0.04 * rng.standard_normal((on.size, 1))
        freq = (base + span * contour) * jitter + trill_depth * np.sin(_TAU * trill_rate * tt)
        env = (np.sin(np.pi * u) ** 2).astype(np.float32)
        amp = (rng.uniform(0.2, 1.0) * rng.uniform(0.5, 1.0, (on.size, 1))).astype(np.float32)
        grains = _sin(_cycles(np.clip(freq, 500.0, top), length, sr)) * (env * amp)
        out += _scatter(n, on * sr, grains)
    return out


def _insects(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        fc = min(rng.uniform(3500.0, 7500.0), 0.43 * sr)
        level = np.float32(rng.uniform(0.3, 1.0))
        if rng.random() < 0.5:
            # Cicada: a noisy narrowband buzz, pulsed fast, swelling and fading slowly.
            bw = rng.uniform(200.0, 1200.0)
            carrier = _noise(
                rng, n, sr, lambda f, fc=fc, bw=bw: _bp(f, fc - bw / 2, fc + bw / 2, 4)
            )
            pulse = (0.5 + 0.5 * _tone(rng.uniform(60.0, 250.0), n, sr)) ** np.float32(
                rng.uniform(1.0, 4.0)
            )
            swell = 0.55 + 0.45 * np.tanh(2.0 * _smooth_random(rng, n, sr, 0.8))
            sig = carrier * pulse * swell
        else:
            # Cricket / katydid: a pure tone in pulse trains grouped into chirps.
            pulse_rate = rng.uniform(20.0, 60.0)
            chirp_rate = rng.uniform(0.8, 4.0)
            chirp_len = int(rng.integers(2, 8)) / pulse_rate
            since = _frac32(_cycles(chirp_rate, n, sr, rng.random())) / np.float32(chirp_rate)
            pulse = np.sin(np.float32(np.pi) * _frac32(_cycles(pulse_rate, n, sr))) ** 2
            sig = _tone(fc, n, sr) * pulse * (since < chirp_len)
        out += level * _unit(sig)
    return out


def _frogs(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    dur = n / sr
    for _ in range(int(rng.integers(1, 7))):  # a chorus: each frog calls at its own period
        f0 = rng.uniform(300.0, 1200.0)
        call = rng.uniform(0.08, 0.45)
        period = call + rng.uniform(0.15, 1.4)
        pulse_rate = rng.uniform(12.0, 70.0)
        on = np.arange(rng.uniform(-period, 0.0), dur, period)
        on = on + rng.normal(0.0, 0.04 * period, on.size)
        length = max(int(call * sr), 8)
        tt = np.arange(length) / sr
        u = tt / call
        cyc = _cycles(f0 * (1.0 + rng.uniform(-0.15, 0.15) * u), length, sr)
        tone = _sin(cyc) + 0.6 * _sin(2.0 * cyc) + 0.3 * _sin(3.0 * cyc)
        pulses = np.sin(np.pi * ((tt * pulse_rate) % 1.0)) ** 2
        grain = tone * (pulses * np.sqrt(np.sin(np.pi * u))).astype(np.float32)
        amp = (rng.uniform(0.2, 1.0) * rng.uniform(0.6, 1.0, (on.size, 1))).astype(np.float32)
        out += _scatter(n, on * sr, grain[None, :] * amp)
    return out


def _farm_animals(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    out = 0.03 * _noise(rng, n, sr, _brown)  # barn/field ambience under the calls
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            # Cow moo: low, long, a slow rise and fall in pitch, dark formants.
            f0 = rng.uniform(85.0, 170.0)
            d = rng.uniform(0.9, 2.2)
            bank = [
                (rng.uniform(250.0, 400.0), 120.0, 1.0),
                (rng.uniform(700.0, 1000.0), 200.0, 0.6),
                (rng.uniform(1800.0, 2400.0), 300.0, 0.2),
            ]
            vib_rate, vib_depth, rise = rng.uniform(3.0, 6.0), rng.uniform(0.0, 0.02), 0.25
        else:
            # Sheep/goat bleat: higher, shorter, strong vibrato, brighter formants.
            f0 = rng.uniform(200.0, 380.0)
            d = rng.uniform(0.4, 1.1)
            bank = [
                (rng.uniform(600.0, 900.0), 150.0, 1.0),
                (rng.uniform(1500.0, 2200.0), 250.0, 0.7),
                (rng.uniform(2600.0, 3200.0), 400.0, 0.3),
            ]
            vib_rate, vib_depth, rise = rng.uniform(5.0, 9.0), rng.uniform(0.03, 0.09), 0.1
        length = min(int(d * sr), n)
        start = int(rng.uniform(0.0, max(dur - d, 0.0)) * sr)
        tt = np.arange(length) / sr
        u = tt / d
        f = f0 * (1.0 + rise * np.sin(np.pi * u) - 0.1 * u)
        f = f * (1.0 + vib_depth * np.sin(_TAU * vib_rate * tt))
        src = _saw(f, length, sr, rng.random()) + 0.05 * rng.standard_normal(length, np.float32)
        voiced = _formants(src, sr, bank) * _fade(length, sr, 0.08, 0.25 * d)
        _place(out, start, np.float32(rng.uniform(0.5, 1.0)) * _unit(voiced))
    return out


def _rooster(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    out = 0.03 * _noise(rng, n, sr, _pink)
    crows = 1 if dur < 3.5 else int(rng.integers(1, 3))
    for start_s in np.sort(rng.uniform(0.0, max(dur - 1.2, 0.0), crows)):
        f0 = rng.uniform(420.0, 700.0)
        d = min(rng.uniform(1.2, 2.0), dur)
        length = int(d * sr)
        u = np.arange(length) / length
        # "cock-a-doodle-doo": two short notes, a rising note, then a long rise-and-fall.
        b = np.array([0.0, 0.1, 0.13, 0.25, 0.28, 0.45, 0.48, 0.62, 1.0])
        b = np.sort(b + np.r_[0.0, rng.uniform(-0.02, 0.02, 7), 0.0])
        fk = f0 * np.array([0.85, 1.0, 1.0, 1.1, 1.1, 1.25, 1.25, 1.32, 0.8])
        fk = fk * (1.0 + 0.04 * rng.standard_normal(fk.size))
        gate = np.interp(u, b, [0.2, 1.0, 0.1, 1.0, 0.1, 1.0, 0.2, 1.0, 0.0]).astype(np.float32)
        rough = 1.0 + 0.3 * _tone(rng.uniform(30.0, 70.0), length, sr)
        src = _saw(np.interp(u, b, fk), length, sr, rng.random()) * rough
        bank = [(rng.uniform(900.0, 1300.0), 300.0, 1.0), (rng.uniform(2200.0, 3000.0), 500.0, 0.7)]
        voiced = (_formants(src, sr, bank) + 0.15 * src) * gate * _fade(length, sr, 0.02, 0.1)
        _place(out, int(start_s * sr), np.float32(rng.uniform(0.6, 1.0)) * _unit(voiced))
    if rng.random() < 0.5:
        # Hens clucking in the yard: sparse short low notes.
        k = int(rng.integers(3, 15))
        length = int(rng.uniform(0.04, 0.09) * sr)
        f = rng.uniform(300.0, 500.0)
        grain = (_tone(f, length, sr) + 0.5 * _tone(2.0 * f, length, sr)) * np.hanning(length)
        amp = rng.uniform(0.02, 0.12, (k, 1))
        out += _scatter(n, rng.integers(0, n, k), grain[None, :] * amp)
    return out


def _gauss_window(
    t: np.ndarray, tc: float, w: float, sr: int, reach: float = 3.5
) -> tuple[int, int, np.ndarray]:
    """Slice bounds and normalised time of a Gaussian bump, so work stays inside the bump."""
    n = t.shape[0]
    i0, i1 = max(int((tc - reach * w) * sr), 0), min(int((tc + reach * w) * sr), n)
    return i0, i1, (t[i0:i1] - np.float32(tc)) / np.float32(w)


def _road_traffic(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    t = _time(n, sr)
    cut = rng.uniform(200.0, 700.0)
    rumble = _noise(rng, n, sr, lambda f: _brown(f) * _bp(f, 25.0, cut))
    out = np.float32(rng.uniform(0.3, 0.8)) * rumble
    out *= 1.0 + 0.25 * _smooth_random(rng, n, sr, 0.5)
    rng_cut = rng.uniform(1000.0, 2000.0)
    tyre = _noise(rng, n, sr, lambda f: _pink(f) * _bp(f, 150.0, rng_cut, 3))
    swells = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(2, 8))):  # cars passing by
        i0, i1, x = _gauss_window(t, rng.uniform(-0.5, dur + 0.5), rng.uniform(0.4, 1.8), sr)
        if i1 <= i0:
            continue
        env = np.float32(rng.uniform(0.5, 1.5)) * np.exp(-0.5 * x * x)
        swells[i0:i1] += env
        # Engine hum with a Doppler drop as the car goes past.
        f = rng.uniform(45.0, 120.0) * (1.0 - rng.uniform(0.03, 0.08) * np.tanh(2.0 * x))
        hum = _lowpass1(_saw(f, i1 - i0, sr, rng.random()), sr, 600.0)
        out[i0:i1] += 2.5 * hum * env
    return out + tyre * swells


def _horns_sirens(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    t = _time(n, sr)
    bed = _noise(rng, n, sr, lambda f: _brown(f) * _bp(f, 25.0, 800.0))
    out = np.float32(rng.uniform(0.05, 0.3)) * bed  # the traffic the vehicles are in
    siren = rng.random() < 0.7
    if siren:
        mode = int(rng.integers(3))
        if mode < 2:  # wail (slow) or yelp (fast) sweep
            fc, dev = rng.uniform(700.0, 1100.0), rng.uniform(250.0, 500.0)
            period = rng.uniform(1.5, 5.0) if mode == 0 else rng.uniform(0.15, 0.4)
            f = fc + dev * _tone(1.0 / period, n, sr, rng.random())
        else:  # two-tone hi-lo
            f1 = rng.uniform(400.0, 700.0)
            hi = _frac32(_cycles(0.5 / rng.uniform(0.35, 0.8), n, sr, rng.random())) < 0.5
            f = _lowpass1(np.where(hi, f1 * rng.uniform(1.2, 1.4), f1), sr, 40.0)
        x = (t - np.float32(rng.uniform(0.0, dur))) / np.float32(rng.uniform(1.5, 5.0))
        f = f * (1.0 - 0.03 * np.tanh(x))  # Doppler as the vehicle passes
        swell = 0.25 + np.exp(-0.5 * x * x)
        sig = np.tanh(3.0 * _tone(f, n, sr))  # soft square: a buzzy electronic tone
        out += np.float32(rng.uniform(0.5, 1.0)) * sig * swell
    if not siren or rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 6))):  # car horn honks: a two-note chord
            d = rng.uniform(0.12, 0.9)
            length = min(int(d * sr), n)
            f1 = rng.uniform(330.0, 480.0)
            chord = _saw(f1, length, sr, rng.random()) + _saw(
                f1 * rng.uniform(1.18, 1.35), length, sr
            )
            tone = _resonate(chord, sr, rng.uniform(1500.0, 2500.0), 600.0) + 0.3 * chord
            tone = tone * _fade(length, sr, 0.01, 0.03) * np.float32(rng.uniform(0.4, 1.0))
            _place(out, int(rng.uniform(0.0, max(dur - d, 0.0)) * sr), tone)
    return out


def _crowd(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    ctrl = max(int(dur * 200), 4)  # talker envelopes at a 200 Hz control rate
    talkers = int(rng.integers(5, 40))
    # Syllables: each talker's loudness wanders at about syllable rate and is often silent.
    knots = rng.standard_normal((talkers, int(dur * 10) + 2)) - rng.uniform(0.2, 0.9, (talkers, 1))
    syll = np.maximum(_lerp(knots, ctrl), 0.0)
    # Turn-taking: each talker speaks in spurts of a second or two.
    spurt = _lerp(rng.standard_normal((talkers, int(dur * 0.7) + 2)) + 0.3, ctrl) > 0.0
    env = syll * spurt * rng.uniform(0.3, 1.0, (talkers, 1)).astype(np.float32)
    groups = 2  # voices share two formant sets to keep the cost flat in the number of talkers
    out = np.zeros(n, dtype=np.float32)
    total = np.zeros(n, dtype=np.float32)
    for g in range(groups):
        f0 = rng.uniform(95.0, 250.0) * (1.0 + 0.12 * _smooth_random(rng, n, sr, 4.0))
        bank = [
            (rng.uniform(400.0, 800.0), 120.0, 1.0),
            (rng.uniform(1000.0, 2200.0), 180.0, 0.6),
            (rng.uniform(2400.0, 3200.0), 250.0, 0.3),
        ]
        genv = _lerp(env[g::groups].sum(axis=0), n)
        total += genv
        out += _formants(_saw(f0, n, sr, rng.random()), sr, bank) * genv
    total /= max(float(total.mean()), 1e-9)
    breath = _noise(rng, n, sr, lambda f: _pink(f) * _bp(f, 200.0, 4000.0))
    # Many distant voices blur into speech-shaped noise that rises and falls with the chatter.
    return _unit(out) + np.float32(rng.uniform(0.15, 0.4)) * breath * total


def _construction(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    parts = rng.random(4) < np.array([0.6, 0.45, 0.4, 0.6])
    if not parts.any():
        parts[int(rng.integers(4))] = True
    out = np.zeros(n, dtype=np.float32)
    if parts[0]:  # hammering: ringing metallic hits in regular series
        length = int(0.12 * sr)
        tt = np.arange(length) / sr
        ring = np.zeros(length)
        for _ in range(3):
            fr = min(rng.uniform(800.0, 4500.0), 0.45 * sr)
            ring += np.sin(_TAU * fr * tt) * np.exp(-tt / rng.uniform(0.01, 0.05))
        click = int(0.003 * sr)
        ring[:click] += rng.standard_normal(click)
        interval = rng.uniform(0.25, 0.8)
        onsets: list[np.ndarray] = []
        s = rng.uniform(0.0, 0.8)
        while s < dur:
            m = int(rng.integers(3, 12))
            onsets.append(s + interval * np.arange(m) + rng.normal(0, 0.02, m))
            s += interval * m + rng.uniform(0.3, 1.5)
        on = np.concatenate(onsets)
        out += _scatter(n, on * sr, ring[None, :] * rng.uniform(0.4, 1.0, (on.size, 1)))
    if parts[1] or parts[2]:
        hp = _noise(rng, n, sr, lambda f: _bp(f, 400.0, 6000.0))
        gate = np.zeros(n, dtype=np.float32)
        for _ in range(int(rng.integers(1, 4))):  # machines run in bursts of a second or two
            a = int(rng.uniform(0.0, dur) * sr)
            gate[a : a + int(rng.uniform(0.6, 2.5) * sr)] = 1.0
        if parts[1]:  # jackhammer: fast decaying impacts
            impacts = np.exp(
                _frac32(_cycles(rng.uniform(12.0, 30.0), n, sr)) / -rng.uniform(0.08, 0.3)
            )
            out += np.float32(rng.uniform(0.5, 1.0)) * hp * impacts * gate
        if parts[2]:  # drill: whining motor with a brief spin-up
            f = rng.uniform(120.0, 400.0) * (0.6 + 0.4 * _lowpass1(gate, sr, 5.0))
            whine = _resonate(_saw(f, n, sr), sr, rng.uniform(1500.0, 3500.0), 400.0)
            out += np.float32(rng.uniform(0.3, 0.8)) * (_unit(whine) + 0.3 * hp) * gate
    if parts[3]:  # engine drone of a generator or excavator
        drone = _lowpass1(_saw(rng.uniform(25.0, 60.0), n, sr), sr, 300.0)
        rumble = _noise(rng, n, sr, lambda f: _brown(f) * _bp(f, 20.0, 400.0))
        out += np.float32(rng.uniform(0.2, 0.6)) * (_unit(drone) + 0.5 * rumble)
    return out


def _waves(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    t = _time(n, sr)
    cut = rng.uniform(3000.0, 6000.0)
    wash = _noise(rng, n, sr, lambda f: _pink(f) * _bp(f, 150.0, cut))
    hiss = _noise(rng, n, sr, lambda f: _bp(f, 1500.0, 7000.0))
    period = rng.uniform(3.0, 9.0)
    crashes = np.zeros(n, dtype=np.float32)
    for tc in np.arange(rng.uniform(-period, 0.5), dur + 1.0, period):
        # Each breaker swells up, crashes and then drains away over a second or two.
        x = t - np.float32(tc + rng.normal(0.0, 0.1 * period))
        rise, decay = rng.uniform(0.4, 1.2), rng.uniform(0.8, 2.5)
        up = np.clip((x + rise) / rise, 0.0, 1.0) ** 2
        down = np.exp(np.maximum(x, 0.0) / -decay)
        crashes += np.float32(rng.uniform(0.6, 1.2)) * np.where(x < 0.0, up, down)
    env = np.float32(rng.uniform(0.15, 0.4)) + crashes
    return wash * env + np.float32(rng.uniform(0.3, 0.8)) * hiss * (0.2 + crashes**2)


def _wind(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    depth = rng.uniform(0.4, 0.9)
    gust = np.exp(depth * _smooth_random(rng, n, sr, rng.uniform(0.3, 1.2)))
    cut = rng.uniform(150.0, 700.0)
    out = _noise(rng, n, sr, lambda f: _brown(f) * _bp(f, 20.0, cut)) * gust
    g = gust / gust.max()
    if rng.random() < 0.5:  # whistle round an edge, pitch following the gust strength
        whistle = _tone(rng.uniform(400.0, 1500.0) * (0.85 + 0.3 * g), n, sr)
        out += np.float32(rng.uniform(0.05, 0.3)) * whistle * g**3
    if rng.random() < 0.5:  # leaves rustling in the stronger gusts
        rustle = _noise(rng, n, sr, lambda f: _bp(f, 2000.0, 6000.0))
        out += np.float32(rng.uniform(0.05, 0.2)) * rustle * g**2
    return out


def _rain_thunder(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    lo = rng.uniform(800.0, 2000.0)
    hiss = _noise(rng, n, sr, lambda f: _bp(f, lo, 7000.0))
    out = np.float32(rng.uniform(0.3, 1.0)) * hiss * (1.0 + 0.2 * _smooth_random(rng, n, sr, 0.5))
    # Patter: a dense stream of tiny clicks (impulses differenced into crisp ticks).
    count = int(rng.uniform(200.0, 2000.0) * dur)
    ticks = np.bincount(rng.integers(0, n, count), rng.lognormal(0.0, 0.7, count), minlength=n)
    out += np.float32(rng.uniform(0.5, 1.5)) * np.diff(ticks, prepend=0.0).astype(np.float32)
    # Larger drops: short pings on leaves, roofs and puddles.
    k = max(int(rng.uniform(10.0, 60.0) * dur), 1)
    length = int(0.03 * sr)
    tt = np.arange(length) / sr
    f = np.minimum(rng.uniform(1500.0, 5000.0, (k, 1)), 0.45 * sr)
    grains = np.sin(_TAU * f * tt) * np.exp(-tt / rng.uniform(0.002, 0.008, (k, 1)))
    out += _scatter(n, rng.integers(0, n, k), grains * rng.lognormal(0.0, 0.5, (k, 1)))
    if rng.random() < 0.65:  # thunder: a sharp onset rolling into a long low rumble
        t = _time(n, sr)
        cut = rng.uniform(80.0, 200.0)
        rumble = _noise(rng, n, sr, lambda f: _brown(f) * _bp(f, 20.0, cut))
        roll = 1.0 + 0.5 * _smooth_random(rng, n, sr, 3.0)
        env = np.zeros(n, dtype=np.float32)
        for _ in range(int(rng.integers(1, 3))):
            x = t - np.float32(rng.uniform(-0.5, max(dur - 0.5, 0.0)))
            attack = np.clip(x / 0.03 + 1.0, 0.0, 1.0)
            env += attack * np.exp(np.maximum(x, 0.0) / -rng.uniform(0.8, 2.5))
        out = _unit(out) + np.float32(rng.uniform(0.5, 2.0)) * rumble * roll * env
    return out


# Partial frequency ratios of struck idiophones: church bell (hum, prime, tierce, quint,
# nominal, ...), a free bar or tubular chime, and a small hand bell.
_BELL_FAMILIES = (
    np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.67, 3.0, 4.0]),
    np.array([1.0, 2.76, 5.40, 8.93]),
    np.array([1.0, 2.32, 4.25, 6.63, 9.38]),
)


def _bells(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    nb = int(rng.integers(1, 4))
    if rng.random() < 0.6:  # a peal: regular strikes cycling through the bells
        interval = rng.uniform(0.35, 1.5)
        times = np.arange(rng.uniform(0.0, interval), dur, interval)
        times = times + rng.normal(0.0, 0.02, times.size)
        which = np.arange(times.size) % nb
    else:  # a few irregular tolls
        times = np.sort(rng.uniform(0.0, dur, int(rng.integers(1, 7))))
        which = rng.integers(0, nb, times.size)
    half = n // 2 + 1
    w = np.exp(-1j * _TAU * np.arange(half) / n).astype(np.complex64)
    spec = np.zeros(half, dtype=np.complex64)
    for b in range(nb):
        ratios = _BELL_FAMILIES[int(rng.integers(len(_BELL_FAMILIES)))]
        ratios = ratios * (1.0 + rng.uniform(-0.02, 0.02, ratios.size))  # inharmonic detuning
        f0 = rng.uniform(220.0, 1000.0)
        freqs = f0 * ratios
        freqs = freqs[freqs < 0.45 * sr]
        amps = rng.uniform(0.3, 1.0, freqs.size)
        taus = rng.uniform(0.8, 3.0) * (f0 / freqs) ** 0.7  # higher partials die away faster
        # The DFT of a circularly wrapped decaying exponential is 1 / (1 - z w^k): an exact ring
        # for every strike from one FFT, with late rings wrapping round like earlier strikes.
        z = np.exp((1j * _TAU * freqs - 1.0 / taus) / sr).astype(np.complex64)
        kernel = np.zeros(half, dtype=np.complex64)
        for zp, ap in zip(z, amps.astype(np.float32), strict=True):
            kernel += ap / (1.0 - zp * w)
        sel = which == b
        pos = np.clip((times[sel] * sr).astype(int), 0, n - 1)
        strikes = np.bincount(pos, rng.uniform(0.5, 1.0, pos.size), minlength=n)
        spec += np.fft.rfft(strikes.astype(np.float32)) * kernel
    return np.fft.irfft(spec, n)


def _stream(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    dur = n / sr
    flow = _noise(rng, n, sr, lambda f: _pink(f) * _bp(f, 300.0, 5000.0))
    out = np.float32(rng.uniform(0.3, 0.8)) * flow * (1.0 + 0.3 * _smooth_random(rng, n, sr, 6.0))
    # Bubbles: short decaying sines whose pitch rises as they collapse (Minnaert resonance).
    k = max(int(rng.uniform(40.0, 200.0) * dur), 1)
    length = int(0.015 * sr)
    tt = (np.arange(length) / sr).astype(np.float32)
    f0 = np.minimum(rng.uniform(500.0, 3000.0, (k, 1)), 0.4 * sr).astype(np.float32)
    tau = rng.uniform(0.003, 0.008, (k, 1)).astype(np.float32)
    glide = rng.uniform(0.5, 3.0, (k, 1)).astype(np.float32)
    phase = _TAU32 * f0 * (tt + glide * tt * tt / (2.0 * tau))
    amp = rng.lognormal(0.0, 0.5, (k, 1)).astype(np.float32)
    grains = np.sin(phase) * np.exp(-tt / tau) * amp
    return out + np.float32(rng.uniform(1.0, 3.0)) * _scatter(n, rng.integers(0, n, k), grains)


_GENERATORS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _songbirds,
    _insects,
    _frogs,
    _farm_animals,
    _rooster,
    _road_traffic,
    _horns_sirens,
    _crowd,
    _construction,
    _waves,
    _wind,
    _rain_thunder,
    _bells,
    _stream,
)
assert len(_GENERATORS) == len(CLASS_NAMES)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _samples(seconds: float, sample_rate: int) -> int:
    if sample_rate < 4000:
        raise ValueError(f"sample_rate must be at least 4000 Hz, got {sample_rate}")
    n = round(seconds * sample_rate)
    if n < 16:
        raise ValueError(f"clip too short: {seconds} s at {sample_rate} Hz")
    return n


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    x = np.nan_to_num(x - x.mean())
    peak = float(np.max(np.abs(x)))
    return (x * (PEAK / peak) if peak > 0.0 else x).astype(np.float32)


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Unit-RMS pink/brown noise blend: the room tone every recording has."""
    mix = rng.uniform(0.0, 1.0)
    return _noise(rng, n, sr, lambda f: mix * _pink(f) * 30.0 + (1.0 - mix) * _brown(f) * 300.0)


def _raw(class_index: int, rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"class_index must be in [0, {len(CLASS_NAMES)}), got {class_index}")
    x = _unit(_GENERATORS[class_index](rng, n, sr))
    return x + _db(rng, -50.0, -35.0) * _background(rng, n, sr)


def synthesize(
    class_index: int,
    rng: np.random.Generator,
    seconds: float = 5.0,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Synthesise one clip of a sound class: float32 mono, peak-normalised to PEAK."""
    n = _samples(seconds, sample_rate)
    return _peak_normalise(_raw(class_index, rng, n, sample_rate))


def synthesize_mixture(
    weights: dict[int, float] | np.ndarray,
    rng: np.random.Generator,
    seconds: float = 5.0,
    sample_rate: int = SAMPLE_RATE,
    background_db: tuple[float, float] = (-40.0, -20.0),
    max_sources: int = 4,
    secondary_db: tuple[float, float] = (-12.0, -6.0),
) -> np.ndarray:
    """Mix the heaviest class with quieter secondary classes over pink/brown background noise.

    A secondary class sits below the main one by its weight ratio times a gain drawn uniformly
    in `secondary_db` decibels.
    """
    w = np.zeros(len(CLASS_NAMES))
    if isinstance(weights, dict):
        for c, v in weights.items():
            if not 0 <= int(c) < len(CLASS_NAMES):
                raise ValueError(f"class index {c} out of range")
            w[int(c)] = float(v)
    else:
        arr = np.asarray(weights, dtype=float)
        if arr.shape != w.shape:
            raise ValueError(f"weights must have shape {w.shape}, got {arr.shape}")
        w[:] = arr
    if not np.all(np.isfinite(w)) or np.any(w < 0.0) or w.sum() <= 0.0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    n = _samples(seconds, sample_rate)
    # Stable sort so ties are resolved by class index and the result is deterministic.
    order = np.argsort(-w, kind="stable")[:max_sources]
    order = order[w[order] > 0.0]
    main = w[order[0]]
    out = _unit(_GENERATORS[int(order[0])](rng, n, sample_rate))
    for c in order[1:]:
        # Secondary sources sit below the main one by their weight ratio and a further few dB,
        # so the drawn class always dominates while the others stay audible.
        gain = (w[c] / main) * _db(rng, *secondary_db)
        out += gain * _unit(_GENERATORS[int(c)](rng, n, sample_rate))
    lo, hi = background_db
    out = out + _db(rng, min(lo, hi), max(lo, hi)) * _rms(out) * _background(rng, n, sample_rate)
    return _peak_normalise(out)
