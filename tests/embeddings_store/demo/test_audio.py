"""Demo-world audio synthesis and captions: validity, determinism, variety, separability."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from embeddings_store.demo import CLASS_NAMES
from embeddings_store.demo.audio import PEAK, SAMPLE_RATE, synthesize, synthesize_mixture
from embeddings_store.demo.captions import SOURCES, caption

N_CLASSES = len(CLASS_NAMES)
N_FFT, HOP, N_MELS = 512, 256, 32


def _mel_filterbank(sr: int = SAMPLE_RATE) -> np.ndarray:
    f = np.fft.rfftfreq(N_FFT, 1.0 / sr)
    mel = np.linspace(2595 * np.log10(1 + 50 / 700), 2595 * np.log10(1 + sr / 2 / 700), N_MELS + 2)
    hz = 700 * (10 ** (mel / 2595) - 1)
    lo, mid, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    return np.clip(np.minimum((f - lo) / (mid - lo), (hi - f) / (hi - mid)), 0.0, None)


_FB = _mel_filterbank()
_WIN = np.hanning(N_FFT)


def features(x: np.ndarray) -> np.ndarray:
    """Log-mel band statistics: mean, spread and frame-to-frame change of each band."""
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), N_FFT)[::HOP] * _WIN
    energy = (np.abs(np.fft.rfft(frames, axis=1)) ** 2) @ _FB.T
    # A floor 30 dB under the mean keeps near-silent bands from dominating through log noise.
    logmel = np.log(energy + 1e-3 * energy.mean() + 1e-12)
    flux = np.abs(np.diff(logmel, axis=0)).mean(axis=0)
    return np.concatenate([logmel.mean(axis=0), logmel.std(axis=0), flux])


class NearestCentroid:
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.mu = x.mean(axis=0)
        self.sd = x.std(axis=0) + 1e-6
        z = (x - self.mu) / self.sd
        self.centroids = np.stack([z[y == c].mean(axis=0) for c in range(N_CLASSES)])

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(x) - self.mu) / self.sd
        return np.argmin(((z[:, None, :] - self.centroids[None]) ** 2).sum(axis=-1), axis=1)


@pytest.fixture(scope="module")
def classifier_data() -> dict[str, object]:
    per_class, n_train = 20, 12
    feats, labels = [], []
    for c in range(N_CLASSES):
        for s in range(per_class):
            feats.append(features(synthesize(c, np.random.default_rng(1000 * c + s))))
            labels.append(c)
    x, y = np.array(feats), np.array(labels)
    train = np.arange(y.size) % per_class < n_train
    return {"clf": NearestCentroid(x[train], y[train]), "x_test": x[~train], "y_test": y[~train]}


@pytest.mark.parametrize("c", range(N_CLASSES), ids=CLASS_NAMES)
def test_every_class_synthesises_a_valid_clip(c: int) -> None:
    x = synthesize(c, np.random.default_rng(c), seconds=5.0)
    assert x.dtype == np.float32
    assert x.shape == (5 * SAMPLE_RATE,)
    assert np.all(np.isfinite(x))
    assert np.max(np.abs(x)) == pytest.approx(PEAK, abs=1e-3)
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 0.01  # not silent


@pytest.mark.parametrize("c", range(N_CLASSES), ids=CLASS_NAMES)
def test_short_clips_and_other_rates_work(c: int) -> None:
    x = synthesize(c, np.random.default_rng(7), seconds=0.5, sample_rate=8000)
    assert x.shape == (4000,)
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0


@pytest.mark.parametrize("c", range(N_CLASSES), ids=CLASS_NAMES)
def test_same_seed_same_clip_and_different_seeds_differ(c: int) -> None:
    a = synthesize(c, np.random.default_rng(42))
    b = synthesize(c, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    clips = [synthesize(c, np.random.default_rng(s)) for s in (1, 2, 3)]
    for i in range(3):
        for j in range(i + 1, 3):
            r = np.corrcoef(clips[i], clips[j])[0, 1]
            assert abs(r) < 0.5, (CLASS_NAMES[c], i, j, r)
    # Variety is more than phase: the clips' spectral statistics differ too.
    f = [features(x) for x in clips]
    assert min(np.abs(f[0] - f[1]).max(), np.abs(f[1] - f[2]).max()) > 0.1


def test_classes_are_distinguishable(classifier_data: dict[str, object]) -> None:
    clf, x, y = classifier_data["clf"], classifier_data["x_test"], classifier_data["y_test"]
    pred = clf.predict(x)
    acc = float((pred == y).mean())
    confusions = Counter(
        (CLASS_NAMES[a], CLASS_NAMES[b]) for a, b in zip(y, pred, strict=True) if a != b
    )
    print(f"\nnearest-centroid accuracy {acc:.3f}; confusions {confusions.most_common(6)}")
    assert acc >= 0.8
    per_class = [(pred[y == c] == c).mean() for c in range(N_CLASSES)]
    assert min(per_class) >= 0.5, dict(zip(CLASS_NAMES, per_class, strict=True))


def test_mixtures_are_dominated_by_the_main_class(classifier_data: dict[str, object]) -> None:
    clf = classifier_data["clf"]
    hits_bg, hits_mix = [], []
    for c in range(N_CLASSES):
        for s in range(6):
            rng = np.random.default_rng(90_000 + 100 * c + s)
            x = synthesize_mixture({c: 1.0}, rng, background_db=(-40.0, -20.0))
            hits_bg.append(clf.predict(features(x))[0] == c)
            other = (c + 1 + int(rng.integers(N_CLASSES - 1))) % N_CLASSES
            w = np.zeros(N_CLASSES)
            w[c], w[other] = 0.75, 0.25
            x = synthesize_mixture(w, rng)
            assert x.dtype == np.float32 and np.all(np.isfinite(x))
            assert np.max(np.abs(x)) == pytest.approx(PEAK, abs=1e-3)
            hits_mix.append(clf.predict(features(x))[0] == c)
    acc_bg, acc_mix = float(np.mean(hits_bg)), float(np.mean(hits_mix))
    print(f"\nmain class recovered: background only {acc_bg:.3f}, with a secondary {acc_mix:.3f}")
    assert acc_bg >= 0.75
    assert acc_mix >= 0.6


def test_mixture_is_deterministic_and_validates_weights() -> None:
    w = {3: 0.5, 0: 0.3, 10: 0.2}
    a = synthesize_mixture(w, np.random.default_rng(5), seconds=2.0)
    b = synthesize_mixture(w, np.random.default_rng(5), seconds=2.0)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2 * SAMPLE_RATE,)
    with pytest.raises(ValueError):
        synthesize_mixture({}, np.random.default_rng(0))
    with pytest.raises(ValueError):
        synthesize_mixture({0: -1.0}, np.random.default_rng(0))
    with pytest.raises(ValueError):
        synthesize_mixture(np.ones(3), np.random.default_rng(0))
    with pytest.raises(ValueError):
        synthesize(N_CLASSES, np.random.default_rng(0))


def test_synthesis_speed_is_reported() -> None:
    # Measured and printed, not asserted: CI machines vary too much for a hard time limit.
    lines, means = [], []
    for c, name in enumerate(CLASS_NAMES):
        synthesize(c, np.random.default_rng(0))
        t0 = time.perf_counter()
        for s in range(5):
            synthesize(c, np.random.default_rng(s))
        means.append((time.perf_counter() - t0) / 5 * 1000)
        lines.append(f"{name:>14s} {means[-1]:6.1f} ms")
    print(
        "\nsynthesis time per 5 s clip:\n" + "\n".join(lines) + f"\n mean {np.mean(means):.1f} ms"
    )


@pytest.mark.parametrize("c", range(N_CLASSES), ids=CLASS_NAMES)
def test_captions_vary_per_class_and_source(c: int) -> None:
    rng = np.random.default_rng(c)
    for source in range(len(SOURCES)):
        seen = {caption(c, rng, source, month=5, hour=6) for _ in range(200)}
        assert len(seen) >= 4, (CLASS_NAMES[c], SOURCES[source], seen)
        assert all(s.strip() == s and s for s in seen)


def test_captions_are_deterministic() -> None:
    for source in range(3):
        a = [caption(c, np.random.default_rng(9), source, 7, 14) for c in range(N_CLASSES)]
        b = [caption(c, np.random.default_rng(9), source, 7, 14) for c in range(N_CLASSES)]
        assert a == b


def test_caption_styles_differ_by_source() -> None:
    rng = np.random.default_rng(0)
    by_source: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for _ in range(50):
        for c in range(N_CLASSES):
            for source in range(3):
                by_source[source].append(caption(c, rng, source, month=5, hour=5))
    meta, qwen, pengi = by_source[0], by_source[1], by_source[2]
    # meta: "prefix: label, habitat, Month, part of day"
    assert all(": " in s and "May" in s and s.endswith("dawn") for s in meta)
    # qwen: full sentences
    assert all(s[0].isupper() and s.endswith(".") for s in qwen)
    # pengi: short lower-case tags
    assert all(len(s.split()) <= 5 and not s.endswith(".") and s == s.lower() for s in pengi)
    words = {k: np.mean([len(s.split()) for s in v]) for k, v in by_source.items()}
    assert words[1] > words[2] + 2
    assert set(meta).isdisjoint(qwen) and set(qwen).isdisjoint(pengi)
    # Time clauses follow the hour and month in the descriptive style.
    assert any("at dawn" in s for s in qwen) and any("in May" in s for s in qwen)


def test_caption_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    for kwargs in ({"source": 3}, {"source": 0, "month": 13}, {"source": 0, "hour": 24}):
        with pytest.raises(ValueError):
            caption(0, rng, **kwargs)
    with pytest.raises(ValueError):
        caption(N_CLASSES, rng, 0)
