import numpy as np
import pytest
import torch

from unidiff.tokenize import load_tokenizers, save_tokenizers
from unidiff.tokenize.dct import DCTTokenizer, dct_matrix


@pytest.fixture(scope="module")
def chunks():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 16)[:, None]
    return np.sin(2 * np.pi * (rng.uniform(0, 0.5, (2000, 1, 3)) * t + rng.uniform(0, 1, (2000, 1, 3))))


def test_dct_is_orthonormal():
    m = dct_matrix(16)
    np.testing.assert_allclose(m @ m.T, np.eye(16), atol=1e-12)


def test_round_trip_smooth_chunks(chunks):
    tok = DCTTokenizer(horizon=16, n_keep=6).fit(chunks)
    ids = tok.encode(chunks)
    assert ids.shape == (2000, 6, 3) and ids.dtype == torch.int64
    out = tok.decode(ids)
    assert out.shape == chunks.shape
    assert tok.metrics(chunks)["tokenizer.action.dct.mean_abs_error"] < 0.05


def test_bad_input(chunks):
    tok = DCTTokenizer(horizon=16, n_keep=4).fit(chunks)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16, D\)"):
        tok.encode(chunks[:, :8])
    with pytest.raises(ValueError, match="NaN or infinite"):
        tok.encode(np.full((1, 16, 3), np.nan))
    with pytest.raises(ValueError, match="n_keep"):
        DCTTokenizer(horizon=4, n_keep=5)


def test_save_load_identical(chunks, tmp_path):
    tok = DCTTokenizer(horizon=16, n_keep=4, n_bins=64).fit(chunks)
    save_tokenizers(tmp_path / "t", {"action": tok})
    back = load_tokenizers(tmp_path / "t")["action"]
    assert isinstance(back, DCTTokenizer) and back.n_keep == 4 and back.vocab_size == 64
    assert torch.equal(back.encode(chunks), tok.encode(chunks))
