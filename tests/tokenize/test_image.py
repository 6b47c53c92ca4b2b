import json

from pathlib import Path

import numpy as np
import pytest
import torch

from unidiff.tokenize import load_tokenizers, save_tokenizers
from unidiff.tokenize.image import ImageTokenizer, VQConfig
from unidiff.tokenize.vq_train import SceneRenders, VQTokenizerModule, spread_picks, synthetic_render

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CFG = VQConfig(size=32, block_out_channels=[8, 16], latent_channels=4, num_vq_embeddings=32, norm_num_groups=4)


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    return ImageTokenizer(CFG)


@pytest.fixture(scope="module")
def images():
    return np.stack([synthetic_render(s, 32) for s in range(4)])


def test_encode_decode_shapes(tok, images):
    codes = tok.encode(images)
    assert tok.grid_shape == (16, 16)
    assert codes.shape == (4, 16, 16) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < tok.vocab_size == 32
    assert tok.encode(images[0]).shape == (1, 16, 16)  # a single (H, W, 3) image
    out = tok.decode(codes)
    assert out.shape == (4, 32, 32, 3) and out.dtype == torch.uint8
    # decoding is deterministic and consistent with the codes: re-decoding the same codes is identical
    assert torch.equal(tok.decode(codes), out)


def test_bad_input(tok, images):
    with pytest.raises(ValueError, match=r"\(B, 32, 32, 3\)"):
        tok.encode(np.zeros((2, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, 32, 32, 3\)"):
        tok.encode(np.zeros((2, 32, 32, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        tok.encode(images.astype(np.float32))
    with pytest.raises(ValueError, match=r"must lie in \[0, 32\)"):
        tok.decode(torch.full((1, 16, 16), 32))
    with pytest.raises(ValueError, match=r"\(B, 16, 16\)"):
        tok.decode(torch.zeros(1, 8, 8, dtype=torch.long))


def test_save_load_identical(tok, images, tmp_path):
    save_tokenizers(tmp_path / "tokenizers", {"image": tok})
    back = load_tokenizers(tmp_path / "tokenizers")["image"]
    codes = tok.encode(images)
    assert torch.equal(back.encode(images), codes)
    assert torch.equal(back.decode(codes), tok.decode(codes))
    assert back.config == tok.config


@pytest.mark.parametrize("picks", ["uniform", "spread"])
def test_fit_through_cli_writes_tokenizer_and_metrics(tmp_path, picks):
    """`unidiff fit --config configs/vq-tiny.yaml`: the real Lightning run, end to end."""
    from unidiff.cli import main

    out = tmp_path / "vq"
    main(["fit", "--config", str(CONFIGS / "vq-tiny.yaml"), "--trainer.default_root_dir", str(tmp_path),
          "--model.init_args.output_dir", str(out), "--trainer.max_steps", "6", "--model.init_args.restart_picks", picks])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokenizer.image.psnr"] > 5
    assert 0 < metrics["tokenizer.image.codebook_usage"] <= 1
    assert 1 <= metrics["tokenizer.image.codes_per_image"] <= 16 * 16
    assert metrics["tokenizer.image.train_steps"] == 6
    back = load_tokenizers(out)["image"]
    data = SceneRenders(n_train=1, n_heldout=4, size=32, source="synthetic")
    assert back.encode(data.heldout_images()).shape == (4, 16, 16)
    assert set(data.heldout_seeds()).isdisjoint(range(data.n_train))


def test_train_crop_is_grid_aligned():
    module = VQTokenizerModule(size=32, block_out_channels=[8, 16], latent_channels=4, num_vq_embeddings=32,
                               norm_num_groups=4, train_crop=16)
    x = torch.zeros(2, 3, 32, 32)
    assert module._crop(x).shape == (2, 3, 16, 16)


def test_shipped_tabletop_tokenizer_meets_targets():
    """The trained CPU tokenizer in artifacts/ on a few held-out renders (full numbers: metrics.json)."""
    path = CONFIGS.parent / "artifacts" / "vq-tabletop"
    if not (path / "tokenizers.json").is_file():
        pytest.skip("artifacts/vq-tabletop not trained yet")
    pytest.importorskip("unidiff_envs.tabletop")  # sets MUJOCO_GL before mujoco loads
    from unidiff.tokenize.vq_train import evaluate_tokenizer

    tok = load_tokenizers(path)["image"]
    images = SceneRenders(n_heldout=16).heldout_images()
    m = evaluate_tokenizer(tok, images, "tabletop")
    assert m["tokenizer.image.psnr"] >= 28
    assert m.get("tokenizer.image.parser_agreement", 1.0) >= 0.85  # 16 images: loose; 512 in metrics.json
    recorded = json.loads((path / "metrics.json").read_text())
    assert recorded["tokenizer.image.psnr"] >= 28 and recorded["tokenizer.image.parser_agreement"] >= 0.95


def test_restarts_pick_content_the_codebook_lacks():
    """A batch of mostly background: uniform picks would mostly land new codes on the background;
    k-means++ picks take the rare patches the codebook does not cover yet."""
    torch.manual_seed(0)
    background = torch.zeros(500, 4)
    rare = torch.eye(4) * 3.0
    points = torch.cat([background, rare])
    picks = spread_picks(points, centres=torch.zeros(1, 4), n=4)
    assert sorted(map(tuple, picks.tolist())) == sorted(map(tuple, rare.tolist()))
    # with no codes yet (initialisation) the first pick is uniform, the rest spread out
    picks = spread_picks(points, centres=torch.zeros(0, 4), n=5)
    assert len({tuple(p) for p in picks.tolist()}) == 5
