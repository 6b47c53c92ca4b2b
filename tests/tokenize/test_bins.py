import numpy as np
import pytest
import torch

from unidiff.tokenize import load_tokenizers, save_tokenizers
from unidiff.tokenize.bins import BinTokenizer


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 0.5, (5000, 3)), rng.uniform(-1, 1, (5000, 1))], axis=1)


def test_round_trip_error_is_half_a_bin(data):
    tok = BinTokenizer("action", n_bins=256).fit(data)
    ids = tok.encode(data)
    assert ids.dtype == torch.int64 and ids.shape == data.shape
    assert int(ids.min()) >= 0 and int(ids.max()) < 256
    m = tok.metrics(data)
    assert m["tokenizer.action.max_abs_error"] <= tok.width.max() / 2 + 1e-9
    assert m["tokenizer.action.mean_abs_error"] < m["tokenizer.action.max_abs_error"]
    assert 0.97 < m["tokenizer.action.in_range_fraction"] < 0.99


def test_edges_from_quantiles_and_clipping(data):
    tok = BinTokenizer("state", n_bins=16).fit(data)
    np.testing.assert_allclose(tok.low, np.quantile(data, 0.01, axis=0))
    np.testing.assert_allclose(tok.high, np.quantile(data, 0.99, axis=0))
    far = np.array([[100.0, -100.0, 0.0, 0.0]])
    ids = tok.encode(far)
    assert ids[0, 0] == 15 and ids[0, 1] == 0
    centres = tok.decode(ids)
    assert centres.dtype == torch.float32
    assert centres[0, 0] == pytest.approx(tok.high[0] - tok.width[0] / 2, rel=1e-5)


def test_chunks(data):
    tok = BinTokenizer(n_bins=64).fit(data)
    chunks = tok.encode_chunks(data[:20], horizon=8)
    assert chunks.shape == (13, 8, 4)
    assert torch.equal(chunks[3], tok.encode(data[3:11]))


def test_constant_dimension():
    x = np.zeros((100, 2))
    x[:, 1] = np.linspace(0, 1, 100)
    tok = BinTokenizer(n_bins=8).fit(x)
    assert np.abs(tok.decode(tok.encode(x)).numpy()[:, 0]).max() < 1e-3


def test_bad_input(data):
    tok = BinTokenizer(n_bins=8).fit(data)
    with pytest.raises(ValueError, match="NaN or infinite"):
        tok.encode(np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        BinTokenizer().fit(np.array([[np.inf]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        tok.encode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 8\)"):
        tok.decode(torch.tensor([[0, 1, 2, 8]]))
    with pytest.raises(ValueError, match="integer"):
        tok.decode(torch.zeros(1, 4))
    with pytest.raises(RuntimeError, match="not fitted"):
        BinTokenizer().encode(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="modality"):
        BinTokenizer("image")


def test_save_load_identical(data, tmp_path):
    toks = {"action": BinTokenizer("action", 256).fit(data), "state": BinTokenizer("state", 32).fit(data[:, :2])}
    save_tokenizers(tmp_path / "tok", toks)
    back = load_tokenizers(tmp_path / "tok")
    assert set(back) == {"action", "state"}
    assert torch.equal(back["action"].encode(data), toks["action"].encode(data))
    assert torch.equal(back["state"].encode(data[:, :2]), toks["state"].encode(data[:, :2]))
    assert back["state"].vocab_size == 32
