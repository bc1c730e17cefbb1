"""`model build --weights FILE` never runs code from a pickle unless told to (--trust-pickle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecam.cli import main
from edgecam.errors import ModelBuildError
from edgecam.export import load_model


class _Evil:
    """Unpickling this calls open(marker, "w"): the file appears when its code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture()
def evil(tmp_path) -> tuple[Path, Path]:
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.zeros(2, 512), "payload": _Evil(marker)}, path)
    assert not marker.exists()
    return path, marker


def test_build_refuses_a_code_running_pickle(evil, tmp_path, capsys):
    path, marker = evil
    code = main(["model", "build", "--arch", "resnet18", "--weights", str(path),
                 "--size", "96", "--out", str(tmp_path / "models")])
    err = capsys.readouterr().err
    assert code == 2
    assert not marker.exists(), "the pickle's code ran"
    assert "not a plain state_dict" in err and "io.open" in err and "--trust-pickle" in err
    assert not (tmp_path / "models" / "resnet18_96_int8.onnx").exists()


def test_trust_pickle_is_what_runs_it(evil):
    """The same file with the flag: its code runs (proof that the refusal above matters)."""
    path, marker = evil
    with pytest.raises(ModelBuildError, match="checkpoint has 2 classes"):
        load_model("resnet18", str(path), 96, trust_pickle=True)
    assert marker.exists()


def test_pickled_full_model_needs_the_flag(tmp_path):
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(3)
    net = resnet18(num_classes=1000).eval()
    path = tmp_path / "full.pt"
    torch.save(net, path)
    with pytest.raises(ModelBuildError, match="--trust-pickle") as caught:
        load_model("resnet18", str(path), 96)
    assert "torchvision.models.resnet.ResNet" in str(caught.value)
    model = load_model("resnet18", str(path), 96, trust_pickle=True)
    assert torch.equal(model.module.fc.weight, net.fc.weight)
    plain = tmp_path / "plain.pth"
    torch.save(net.state_dict(), plain)  # the safe format loads without the flag
    assert torch.equal(load_model("resnet18", str(plain), 96).module.fc.weight, net.fc.weight)
