"""Audio queries over real HTTP: every accepted container works, malformed uploads get 4xx."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from tests.server.helpers import audio_bytes, decode_tile

FORMATS = [
    ("WAV", "PCM_16", 16000),
    ("WAV", "FLOAT", 44100),
    ("FLAC", "PCM_24", 48000),
    ("OGG", "VORBIS", 22050),
    ("OGG", "OPUS", 48000),
    ("MP3", "MPEG_LAYER_III", 44100),
]


def upload(client, data: bytes, name: str = "clip.bin", ctype: str = "application/octet-stream"):
    return client.post("/queries", files={"audio": (name, data, ctype)})


@pytest.mark.parametrize(("fmt", "subtype", "sr"), FORMATS)
def test_each_audio_format_makes_a_query(client, fmt, subtype, sr):
    data = audio_bytes(fmt, subtype, seconds=1.5, sr=sr, channels=2)
    r = upload(client, data)
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["kind"] == "audio" and q["id"].startswith("aud-") and q["uncertainty"] > 0
    # Content, not name or declared type, decides: same bytes under another name -> same id.
    again = upload(client, data, name="whatever.txt", ctype="text/plain").json()
    assert again["id"] == q["id"]
    tile = client.get(f"/tiles/{q['id']}/8/55/98.png")
    assert tile.status_code == 200
    decode_tile(tile.content)


def test_audio_ids_depend_on_samples(client):
    a = upload(client, audio_bytes("WAV", "PCM_16", freq=440.0)).json()["id"]
    b = upload(client, audio_bytes("WAV", "PCM_16", freq=880.0)).json()["id"]
    same = upload(client, audio_bytes("WAV", "PCM_16", freq=440.0)).json()["id"]
    assert a == same != b


def lying_wav_channels() -> bytes:
    """A WAV whose fmt chunk claims 7 channels."""
    data = bytearray(audio_bytes("WAV", "PCM_16"))
    fmt = data.index(b"fmt ")
    struct.pack_into("<H", data, fmt + 10, 7)
    return bytes(data)


def lying_wav_length() -> bytes:
    """A WAV whose data chunk claims far more bytes than it holds."""
    data = bytearray(audio_bytes("WAV", "PCM_16"))
    pos = data.index(b"data")
    struct.pack_into("<I", data, pos + 4, 50_000_000)
    return bytes(data)


def flac_magic_wav_body() -> bytes:
    """fLaC magic in front of a WAV body."""
    return b"fLaC" + audio_bytes("WAV", "PCM_16")[4:]


def wav(seconds: float, sr: int = 8000, channels: int = 1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * sr), channels), np.int16), sr, format="WAV")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("empty", b"", 422),
        ("wrong magic", b"GIF89a" + bytes(2000), 415),
        ("text", b"hello, I am not audio at all" * 10, 415),
        ("truncated wav", audio_bytes("WAV", "PCM_16")[:9000], 422),
        ("truncated header", audio_bytes("WAV", "PCM_16")[:30], 422),
        ("truncated flac", audio_bytes("FLAC", "PCM_16")[:3000], 422),
        ("truncated ogg", audio_bytes("OGG", "VORBIS")[:2000], 422),
        ("truncated mp3", audio_bytes("MP3", "MPEG_LAYER_III", seconds=3)[:2500], 422),
        ("lying channels", lying_wav_channels(), 422),
        ("lying length", lying_wav_length(), 422),
        ("flac magic, wav body", flac_magic_wav_body(), 422),
        ("ogg magic, garbage", b"OggS" + bytes(5000), 422),
        ("mp3 sync, garbage", b"\xff\xfb" + bytes(3000), 422),
        ("too long", wav(61.0), 413),
        ("three channels", wav(1.0, channels=3), 422),
        ("sample rate too high", wav(0.5, sr=384000), 422),
        ("silence", wav(2.0), 422),
        ("50 ms", audio_bytes("WAV", "PCM_16", seconds=0.05), 422),
    ],
)
def test_malformed_uploads_are_4xx(client, name, data, status):
    r = upload(client, data)
    assert r.status_code == status, (name, r.status_code, r.text)
    if name == "silence":
        assert r.json()["detail"] == "the audio is silent (its loudest sample is below -60 dBFS)"
    if name == "50 ms":
        assert "0.05 s long: at least 0.5 s of sound is needed" in r.json()["detail"]
    assert isinstance(r.json()["detail"], str)


def test_upload_needs_the_audio_field(client):
    r = client.post("/queries", files={"sound": ("a.wav", audio_bytes("WAV", "PCM_16"))})
    assert r.status_code == 422
    r = client.post("/queries", data={"audio": "not a file"})
    assert r.status_code in (415, 422)


def test_oversized_bodies_are_413(client):
    big = bytes(21 << 20)
    r = upload(client, b"RIFF" + big)
    assert r.status_code == 413

    def chunks():  # no Content-Length (chunked): the cap must still hold
        yield (
            b'--x\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\nRIFF"
        )
        for _ in range(22):
            yield bytes(1 << 20)

    r = client.post(
        "/queries", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 413
    assert client.get("/healthz").status_code == 200
