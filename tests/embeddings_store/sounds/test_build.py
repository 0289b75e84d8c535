"""`build_sound_gallery` and `soundscape gallery build`: real clips in every accepted container,
bad files skipped with reasons, resumable parts, nothing half-written, another model refused."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from embeddings_store.sounds import build as build_module
from embeddings_store.sounds.build import build_sound_gallery, read_captions, read_labels
from embeddings_store.sounds.gallery import SoundGallery
from model.errors import InputError, StoreMismatchError
from server.cli import main


def tone(freq: float, seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "clips"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", tone(440), 16000)
    sf.write(d / "b.flac", tone(660), 16000, format="FLAC")
    sf.write(d / "sub" / "c.ogg", tone(880), 16000, format="OGG", subtype="VORBIS")
    sf.write(d / "d.mp3", tone(330, sr=22050), 22050, format="MP3")
    sf.write(d / "stereo.wav", np.stack([tone(500), tone(510)], axis=1), 16000)
    sf.write(d / "copy-of-a.wav", tone(440), 16000)  # the same bytes as a.wav
    (d / "corrupt.flac").write_bytes(b"fLaC" + bytes(200))
    (d / "text.mp3").write_bytes(b"this is not audio at all")
    sf.write(d / "long.wav", tone(100, seconds=3.0), 16000)
    (d / "notes.txt").write_text("ignored: not an audio file name")
    os.symlink(d / "a.wav", d / "link.wav")
    (d / "captions.csv").write_text("file,caption\na.wav,a clear tone\nsub/c.ogg,a high tone\n")
    (d / "labels.txt").write_text("# label<TAB>query\nbirds\tbirds singing\ntraffic\n\n")
    return d


def build(model, audio_dir, out, **kw):
    return build_sound_gallery(
        model, audio_dir, out, captions=audio_dir / "captions.csv",
        labels=audio_dir / "labels.txt", limits=build_module.AudioLimits(max_seconds=2.0),
        progress=False, log=lambda _: None, **kw,
    )  # fmt: skip


def test_build_embeds_good_clips_and_lists_bad_ones(tiny_model, audio_dir, tmp_path):
    out = tmp_path / "g"
    report = build(tiny_model, audio_dir, out, batch=3)
    gallery = SoundGallery.open(out, expect_model_id=build_module.model_id_of(tiny_model))
    sources = sorted(c.source for c in gallery.clips)
    assert sources == ["a.wav", "b.flac", "d.mp3", "stereo.wav", "sub/c.ogg"]
    assert report.clips == 5 and report.labels == 2
    reasons = {s["file"]: s["reason"] for s in gallery.manifest["skipped"]}
    assert set(reasons) == {"copy-of-a.wav", "corrupt.flac", "text.mp3", "long.wav", "link.wav"}
    assert "same audio as a.wav" in reasons["copy-of-a.wav"]
    assert "unsupported or unrecognised audio" in reasons["text.mp3"]
    assert "limit is 2 s" in reasons["long.wav"]
    assert "links are not followed" in reasons["link.wav"]
    by_source = {c.source: c for c in gallery.clips}
    assert by_source["a.wav"].caption == "a clear tone"
    assert by_source["b.flac"].caption == "b"  # no caption given: the file name
    assert by_source["d.mp3"].ext == "mp3" and by_source["d.mp3"].sample_rate == 22050
    assert gallery.labels == ["birds", "traffic"]
    assert gallery.label_queries == ["birds singing", "traffic"]
    for clip in gallery.clips:  # the served copy is the original file
        assert gallery.clip_file(clip).read_bytes() == (audio_dir / clip.source).read_bytes()
    assert not (tmp_path / "g.partial").exists()


def test_gallery_embeddings_are_the_models_and_rank_by_csd(tiny_model, audio_dir, tmp_path):
    out = tmp_path / "g"
    build(tiny_model, audio_dir, out)
    gallery = SoundGallery.open(out)
    a = next(c for c in gallery.clips if c.source == "a.wav")
    with torch.no_grad():
        g = tiny_model.embed_audio([sf.read(audio_dir / "a.wav", dtype="float32")[0]], 16000)
        cell = tiny_model.embed_texts(["a place"])
    i = gallery.clips.index(a)
    np.testing.assert_allclose(gallery.clip_aug[i, :-1], g.mu[0].numpy(), atol=1e-5)
    # Ranking a "cell" (any Gaussian) against the clips is -CSD, best first.
    from model.scoring import augment_cells, variance_sum

    cell_aug = augment_cells(cell.mu.numpy(), variance_sum(cell.logvar).numpy())[0]
    ranked = gallery.rank_clips(cell_aug, 3, (1.0, 0.0))
    # -CSD in float64 from the unit means and variance sums: 2 <mu, mu_j> - 2 - c - c_j.
    mu = gallery.clip_aug[:, :-1].astype(np.float64)
    c_rows = -2.0 * gallery.clip_aug[:, -1].astype(np.float64)
    c_cell = float(variance_sum(cell.logvar.double())[0])
    ref = 2.0 * mu @ cell.mu[0].double().numpy() - 2.0 - c_cell - c_rows
    order = np.argsort(-ref, kind="stable")[:3]
    np.testing.assert_array_equal(ranked.index, order)
    np.testing.assert_allclose(ranked.score, ref[order], atol=1e-4)
    labels = gallery.rank_labels(cell_aug, (1.0, 0.0))
    np.testing.assert_allclose(labels.score, np.sort(gallery.label_scores(cell_aug)[0])[::-1])


def test_a_killed_build_resumes_and_leaves_no_gallery_behind(
    tiny_model, audio_dir, tmp_path, monkeypatch
):
    out = tmp_path / "g"
    real = build_module._build_part
    calls = []

    def dies_on_third_part(*args, **kwargs):
        calls.append(args[4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_module, "_build_part", dies_on_third_part)
    with pytest.raises(KeyboardInterrupt):
        build(tiny_model, audio_dir, out, batch=2)
    assert not out.exists(), "a gallery must appear only when complete"
    assert len(list((tmp_path / "g.partial" / "parts").glob("part-*.npy"))) == 2
    monkeypatch.setattr(build_module, "_build_part", real)
    report = build(tiny_model, audio_dir, out, batch=2)
    assert report.parts_reused == 2 and report.clips == 5
    fresh = build(tiny_model, audio_dir, tmp_path / "fresh", batch=2)
    assert fresh.parts_reused == 0
    a, b = SoundGallery.open(out), SoundGallery.open(tmp_path / "fresh")
    np.testing.assert_array_equal(a.clip_aug, b.clip_aug)
    assert [c.id for c in a.clips] == [c.id for c in b.clips]


def test_changed_inputs_start_the_partial_build_over(tiny_model, audio_dir, tmp_path):
    work = tmp_path / "g.partial"
    (work / "parts").mkdir(parents=True)
    (work / "state.json").write_text(json.dumps({"model_id": "other", "inputs": "x"}))
    (work / "parts" / "part-00000.npy").write_bytes(b"stale")
    report = build(tiny_model, audio_dir, tmp_path / "g")
    assert report.parts_reused == 0 and report.clips == 5


def test_an_existing_gallery_needs_overwrite(tiny_model, audio_dir, tmp_path):
    out = tmp_path / "g"
    build(tiny_model, audio_dir, out)
    with pytest.raises(InputError, match="--overwrite"):
        build(tiny_model, audio_dir, out)
    assert build(tiny_model, audio_dir, out, overwrite=True).clips == 5


def test_another_models_gallery_is_refused_with_the_fixing_command(tiny_model, audio_dir, tmp_path):
    out = tmp_path / "g"
    build(tiny_model, audio_dir, out)
    with pytest.raises(StoreMismatchError) as err:
        SoundGallery.open(out, expect_model_id="psm-deadbeef")
    message = str(err.value)
    assert "psm-deadbeef" in message
    assert f"soundscape gallery build --audio-dir {audio_dir}" in message
    assert f"--labels {audio_dir / 'labels.txt'}" in message and f"--out {out}" in message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("file\na.wav\n", "header"),
        ("file,caption\na.wav,\n", "empty"),
    ],
)
def test_bad_captions_are_refused(tmp_path, text, error):
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=error):
        read_captions(path)


def test_bad_labels_are_refused(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("birds\nbirds\n")
    with pytest.raises(InputError, match="twice"):
        read_labels(path)
    path.write_text("x" * 300 + "\n")
    with pytest.raises(InputError, match="over 256"):
        read_labels(path)


def test_cli_builds_a_gallery(audio_dir, tmp_path, tiny_checkpoint, capsys):
    out = tmp_path / "g"
    argv = ["gallery", "build", "--audio-dir", str(audio_dir), "--out", str(out),
            "--checkpoint", str(tiny_checkpoint), "--labels", str(audio_dir / "labels.txt"),
            "--max-seconds", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "5 clips, 2 labels, 5 skipped" in printed.out
    assert "skipped corrupt.flac:" in printed.out
    assert SoundGallery.open(out).clips
    assert main(argv) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["gallery", "build", "--audio-dir", str(tmp_path / "none"), "--out",
                 str(tmp_path / "x"), "--checkpoint", str(tiny_checkpoint)]) == 2  # fmt: skip
    assert "is not a folder" in capsys.readouterr().err
