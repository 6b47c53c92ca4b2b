"""All tokenizers together: one directory, one index, identical encodings after reload."""
import json

import numpy as np
import pytest
import torch

from unidiff.tokenize import joint_vocab, load_tokenizers, save_tokenizers
from unidiff.tokenize.bins import BinTokenizer
from unidiff.tokenize.image import ImageTokenizer, VQConfig
from unidiff.tokenize.text import TextTokenizer
from unidiff.tokenize.vq_train import synthetic_render
from unidiff.vocab import NUM_SPECIALS


@pytest.fixture(scope="module")
def toks():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    return {
        "text": TextTokenizer.train(["a red cube left of a blue ball"] * 10, vocab_size=300),
        "image": ImageTokenizer(VQConfig(size=32, block_out_channels=[8, 16], latent_channels=4,
                                         num_vq_embeddings=32, norm_num_groups=4)),
        "state": BinTokenizer("state", 64).fit(rng.normal(size=(500, 5))),
        "action": BinTokenizer("action", 128).fit(rng.normal(size=(500, 3))),
    }


def test_bundle_round_trip(toks, tmp_path):
    save_tokenizers(tmp_path / "tokenizers", toks)
    index = json.loads((tmp_path / "tokenizers" / "tokenizers.json").read_text())
    assert {m: e["class"] for m, e in index["tokenizers"].items()} == {
        "text": "TextTokenizer", "image": "ImageTokenizer", "state": "BinTokenizer", "action": "BinTokenizer"}
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.rglob("*.pt"))
    back = load_tokenizers(tmp_path / "tokenizers")
    img = np.stack([synthetic_render(s, 32) for s in range(2)])
    a = np.random.default_rng(1).normal(size=(7, 3))
    assert back["text"].encode("a blue cube") == toks["text"].encode("a blue cube")
    assert torch.equal(back["image"].encode(img), toks["image"].encode(img))
    assert torch.equal(back["action"].encode(a), toks["action"].encode(a))
    assert joint_vocab(back) == joint_vocab(toks)


def test_joint_vocab_ranges(toks):
    v = joint_vocab(toks)
    assert v.range("text") == (NUM_SPECIALS, NUM_SPECIALS + toks["text"].vocab_size)
    assert v.image == 32 and v.state == 64 and v.action == 128
    with pytest.raises(ValueError, match="missing"):
        joint_vocab({"text": toks["text"]})


def test_index_cannot_name_arbitrary_classes(toks, tmp_path):
    save_tokenizers(tmp_path / "t", {"action": toks["action"]})
    path = tmp_path / "t" / "tokenizers.json"
    index = json.loads(path.read_text())
    index["tokenizers"]["action"]["class"] = "os:system"
    path.write_text(json.dumps(index))
    with pytest.raises(ValueError, match="unknown tokenizer class"):
        load_tokenizers(tmp_path / "t")
    with pytest.raises(FileNotFoundError, match="tokenizers.json"):
        load_tokenizers(tmp_path / "nowhere")
