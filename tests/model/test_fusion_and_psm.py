import numpy as np
import pytest
import torch

from model.metadata import apply_metadata_drop, make_metadata, no_metadata
from model.scoring import uncertainty


def metadata(n=4, **kw):
    base = dict(month=5, hour=14, asource=0, tsource=1)
    base.update(kw)
    return make_metadata(np.linspace(-40, 40, n), np.linspace(-100, 100, n), **base)


def test_no_metadata_runs_the_fuser_with_everything_masked(tiny_model):
    h = torch.randn(4, tiny_model.config.embed_dim)
    fused = tiny_model.fuse(h, None)
    explicit = tiny_model.fuse(h, no_metadata(4))
    skipped = tiny_model.image_head(h)  # what the reference map scripts did (wrong)
    torch.testing.assert_close(fused.mu, explicit.mu)
    assert not torch.allclose(fused.mu, skipped.mu, atol=1e-3)


def test_masked_components_do_not_influence_the_output(tiny_model):
    h = torch.randn(4, tiny_model.config.embed_dim)
    a = tiny_model.fuse(h, metadata(month=None, hour=None))
    b = tiny_model.fuse(
        h, make_metadata(np.linspace(-40, 40, 4), np.linspace(-100, 100, 4), asource=0, tsource=1)
    )
    torch.testing.assert_close(a.mu, b.mu)
    # ...while present components do.
    c = tiny_model.fuse(h, metadata(month=1))
    d = tiny_model.fuse(h, metadata(month=7))
    assert not torch.allclose(c.mu, d.mu, atol=1e-4)


def test_masking_equals_omitting_the_token(tiny_model):
    """Zeroed + key-masked tokens are exactly absent tokens (docs/ARCHITECTURE.md, "Metadata")."""
    fuser = tiny_model.fuser
    h = torch.randn(3, tiny_model.config.embed_dim)
    meta = metadata(3, month=None, hour=None, asource=None, tsource=None, use_location=False)
    masked = fuser(h, meta)
    tokens = torch.cat([fuser.cls_token.expand(3, -1, -1), h.unsqueeze(1)], dim=1)
    omitted = fuser.transformer_encoder(tokens)[:, 0]
    torch.testing.assert_close(masked, omitted, rtol=1e-5, atol=1e-5)


def test_hour_encoding_uses_23_so_midnight_equals_23h(tiny_model):
    h = torch.randn(2, tiny_model.config.embed_dim)
    a = tiny_model.fuse(h, metadata(2, hour=0))
    b = tiny_model.fuse(h, metadata(2, hour=23))
    torch.testing.assert_close(a.mu, b.mu)


def test_metadata_drop_counts_per_component():
    meta = metadata(10, hour=np.array([np.nan] * 3 + [5] * 7))
    dropped = apply_metadata_drop(meta, 0.5, np.random.default_rng(0))
    for comp, present in dropped.present.items():
        assert int((~present).sum()) == 5, comp
    assert not dropped.present["time"][:3].any()


@pytest.mark.parametrize(
    "kw,msg", [(dict(month=13), "month"), (dict(hour=24), "hour"), (dict(asource=9), "source")]
)
def test_bad_metadata_values_are_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        metadata(**kw)


def test_embeddings_are_unit_mean_with_initial_small_variance(tiny_model):
    e = tiny_model.embed_images(torch.randn(2, 3, 32, 32), torch.tensor([1.0, 5.0]), metadata(2))
    torch.testing.assert_close(e.mu.norm(dim=-1), torch.ones(2))
    assert e.logvar.shape == e.mu.shape
    # std-head biases start at -4 -> sigma^2 around e^-4 per dimension
    assert 0.1 < uncertainty(e.logvar).mean().item() / e.mu.shape[1] < 0.3


def test_zoom_changes_the_image_embedding(tiny_model):
    x = torch.randn(1, 3, 32, 32)
    assert not torch.allclose(tiny_model.encode_image(x, 1.0), tiny_model.encode_image(x, 5.0))


def test_text_and_audio_queries_are_deterministic(tiny_model):
    t1, t2 = tiny_model.embed_texts(["birds at dawn"]), tiny_model.embed_texts(["birds at dawn"])
    torch.testing.assert_close(t1.mu, t2.mu)
    rng = np.random.default_rng(0)
    long_clip = rng.normal(size=3 * 16000).astype(
        np.float32
    )  # longer than max_seconds: random fusion crops
    np.random.seed(123)
    a1 = tiny_model.embed_audio([long_clip], 16000)
    state = np.random.get_state()
    a2 = tiny_model.embed_audio([long_clip], 16000)
    torch.testing.assert_close(a1.mu, a2.mu)
    assert np.array_equal(np.random.get_state()[1], state[1])  # caller's RNG untouched


def test_stereo_and_resampled_audio(tiny_model):
    rng = np.random.default_rng(1)
    stereo = rng.normal(size=(2, 44100)).astype(np.float32)
    e = tiny_model.embed_audio([stereo], 44100)
    mono = tiny_model.embed_audio([stereo.mean(0)], 44100)
    torch.testing.assert_close(e.mu, mono.mu)


def test_match_parameters(tiny_model):
    assert tiny_model.match_parameters() == (5.0, 5.0)


def test_a_few_cells_fuse_to_the_bits_they_get_among_many(tiny_model):
    """A map's corner cell fused alone must equal the same cell fused with its chunk, or a tile
    would depend on which neighbour was cached first (tests/server/test_views.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the server's jobs run
    try:
        check_few_rows(tiny_model)
    finally:
        torch.set_num_threads(threads)


def check_few_rows(tiny_model) -> None:
    from model.inference import fuse_embeddings
    from model.metadata import Metadata

    rng = np.random.default_rng(0)
    dim = tiny_model.config.embed_dim
    h = rng.normal(size=(64, dim)).astype(np.float32)
    lat, lon = rng.uniform(25, 49, 64), rng.uniform(-120, -70, 64)
    meta = Metadata(3, 4, "yfcc")
    tiny_model.eval()
    whole = fuse_embeddings(tiny_model, h, lat, lon, meta)
    for n in (1, 2, 3, 5, 7, 9, 15, 16, 17):
        part = fuse_embeddings(tiny_model, h[5 : 5 + n], lat[5 : 5 + n], lon[5 : 5 + n], meta)
        assert part.mu.shape == (n, dim) and part.c.shape == (n,)
        assert np.array_equal(part.mu, whole.mu[5 : 5 + n]), n
        assert np.array_equal(part.c, whole.c[5 : 5 + n]), n
        assert np.array_equal(part.uncertainty, whole.uncertainty[5 : 5 + n]), n
