import pytest
import torch
import yaml

import unidiff
from unidiff.bundle import BundleError, save_bundle
from unidiff.canvas import position_roles, prompt_canvas


@pytest.fixture
def bundle(tmp_path, net):
    return save_bundle(tmp_path / "b", net, metrics={"x": 1.0})


def _logits(spec, net, random_sample):
    tokens, roles = prompt_canvas(spec, [random_sample(spec, torch.Generator().manual_seed(3))], ("action",))
    h = net(tokens, position_roles(spec, roles))
    return net.logits(h[:, spec.slices["action"]], "action")


def test_save_load_gives_identical_logits(bundle, spec, net, random_sample):
    m = unidiff.load(bundle)
    assert m.spec == spec and m.metrics == {"x": 1.0}
    assert torch.equal(_logits(spec, net, random_sample), _logits(spec, m.net, random_sample))
    assert not any(p.suffix in (".pt", ".ckpt", ".pkl", ".bin") for p in bundle.rglob("*"))


def test_tampered_weights_are_refused(bundle):
    f = bundle / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.safetensors does not match its checksum"):
        unidiff.load(bundle)


def test_incompatible_version_is_refused(bundle):
    cfg = yaml.safe_load((bundle / "config.yaml").read_text())
    cfg["format_version"] = 99
    (bundle / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(BundleError, match="format_version 99.*reads format 1"):
        unidiff.load(bundle)


def test_missing_file_and_missing_dir_are_named(bundle, tmp_path):
    (bundle / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="model.safetensors is missing"):
        unidiff.load(bundle)
    with pytest.raises(BundleError, match="no bundle at"):
        unidiff.load(tmp_path / "nope")


def test_overwrite_is_atomic_and_leaves_no_temp_dirs(bundle, net):
    save_bundle(bundle, net, metrics={"x": 2.0})
    assert unidiff.load(bundle).metrics == {"x": 2.0}
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["b"]
