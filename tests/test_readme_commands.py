"""The README's two commands: they are what the README says, and the main one works."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat", "lynx", "Persian cat", "Siamese cat"}


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    assert readme_commands() == ["scripts/demo.sh", "scripts/test.sh"]
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_main_command_classifies_the_demo_for_real() -> None:
    """scripts/demo.sh end to end: set-up, model build (ResNet-18 ImageNet, or the
    EfficientNet-Lite0 fallback offline), then the daemon on the demo clip. The
    demo opens on chelsea.png, so a trained model must see a cat."""
    proc = subprocess.run(["scripts/demo.sh", "--duration", "3"], cwd=REPO, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) >= 20, proc.stderr[-2000:]
    assert results[0]["source"] == "demo"
    assert results[0]["model"]["precision"] == "int8"
    cats = sum(1 for r in results if r["top"][0]["label"] in CAT_LABELS)
    assert cats >= len(results) // 2, [r["top"][0]["label"] for r in results[:20]]
    if not (REPO / "models" / "resnet18_160_int8.onnx").exists():
        assert "EfficientNet-Lite0" in proc.stderr or "efficientnet_lite0" in proc.stderr
