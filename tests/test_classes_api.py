"""Your own classes through the web API, against the real daemon process (auth on, a real
Mosquitto, a video camera): define a region (written to config.yaml, running at once), burst
capture, labels with time and reason, the model's suggestions, training as a niced child
under a memory limit (cancel, a name that belongs to another region), deploy through the
checked deploy and roll back. The daemon never restarts (same PID)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from edgecam.bench.models import ModelPair
from tests.support.classes_flow import ClassesDaemon
from tests.support.mqtt import Broker, wait_until

Q = "camera=garage&region=door"
BOX = [0.1, 0.1, 0.6, 0.7]


def _limits(pid: int) -> tuple[int, str]:
    """(nice, max address space line) of a running process."""
    nice = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])
    line = next(row for row in open(f"/proc/{pid}/limits") if row.startswith("Max address space"))
    return nice, line


def test_define_collect_label_train_deploy_rollback(broker: Broker, effnet_models: ModelPair, tmp_path: Path) -> None:
    daemon = ClassesDaemon(tmp_path, broker, effnet_models.int8)
    web = daemon.web
    try:
        # everything is behind auth
        for method, path in [("POST", "/api/region"), ("POST", "/api/burst"), ("POST", "/api/train"),
                             ("GET", "/api/train?" + Q), ("POST", "/api/deploy"), ("GET", "/classes")]:
            status, _ = web.call(method, path, {"camera": "garage"} if method == "POST" else None, auth=False)
            assert status == 401, (method, path, status)

        # 1. define: a region that does not validate changes nothing; a good one runs at once
        status, reply = web.call("POST", "/api/region", {"camera": "garage", "region": "door",
                                                         "box": [0.6, 0.1, 0.1, 0.7]})
        assert status == 422 and "x2 must be greater than x1" in reply["error"], reply
        assert "door" not in daemon.config.read_text()
        reply = web.ok("POST", "/api/region", {"camera": "garage", "region": "door", "box": BOX,
                                               "trigger": "interval", "interval_s": 0.2, "confirm": 2})
        assert reply["written"] == str(daemon.config) and any("door" in c for c in reply["changes"]), reply
        region = yaml.safe_load(daemon.config.read_text())["cameras"]["garage"]["regions"]["door"]
        assert region == {"box": BOX, "trigger": "interval", "confirm": 2, "interval_s": 0.2}
        daemon.mqtt.wait_for("edgecam/classes/garage/door/result", 3, timeout=30)
        info = web.ok("GET", "/api/region?" + Q)
        assert info["box"] == BOX and info["trigger"] == "interval" and info["confirm"] == 2
        assert info["dataset"] == str(daemon.dataset / "garage" / "door")
        status, jpeg = web.call("GET", "/api/crop.jpg?" + Q)  # the live crop: 0.5 x 0.6 of a 320x240 frame
        assert status == 200 and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (144, 160, 3)

        # 2. collect: a burst of 16 crops over 2 s, each with its time and reason
        started = web.ok("POST", "/api/burst", {"camera": "garage", "region": "door", "count": 16, "seconds": 2})
        assert started["running"] is True and started["count"] == 16
        status, reply = web.call("POST", "/api/burst", {"camera": "garage", "region": "door", "count": 1})
        assert status == 400 and "already running" in reply["error"], reply
        listing = web.wait("/api/samples?" + Q, lambda r: r["burst"] and not r["burst"]["running"], 30, "the burst")
        burst = listing["burst"]
        assert burst["taken"] == 16 and burst["kept"] + burst["similar"] == 16 and burst["kept"] >= 10, burst
        samples = listing["samples"]
        assert len(samples) == burst["kept"] and {s["reason"] for s in samples} == {"burst"}
        assert all(s["time"].startswith(time.strftime("%Y-%m-%dT", time.gmtime())) for s in samples), samples[0]

        # 3. label: the model's guesses, then two classes in bulk
        ids = [s["id"] for s in samples]
        guesses = web.ok("POST", "/api/suggest", {"camera": "garage", "region": "door", "ids": ids})
        assert set(guesses["suggestions"]) == set(ids) and guesses["model"].startswith("efficientnet_lite0")
        half = len(ids) // 2
        assert web.ok("POST", "/api/samples", {"camera": "garage", "region": "door", "ids": ids[:half],
                                               "label": "closed"}) == {"labelled": half}
        web.ok("POST", "/api/samples", {"camera": "garage", "region": "door", "ids": ids[half:], "label": "open"})

        # 4. train: a child at a lower priority under a memory limit; cancel; then a whole run
        job = web.ok("POST", "/api/train", {"camera": "garage", "region": "door"})
        assert job["state"] == "running" and job["name"] == "garage_door"
        # the trampoline sets nice and the limit, then becomes `edgecam train`
        wait_until(lambda: b"RLIMIT_AS" not in Path(f"/proc/{job['pid']}/cmdline").read_bytes(), 20, "the exec")
        nice, limit = _limits(job["pid"])
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, daemon.pid) + 10), nice
        assert limit.split()[3] == str(1536 * 2**20), limit
        status, reply = web.call("POST", "/api/train", {"camera": "garage", "region": "door"})
        assert status == 409 and "still running" in reply["error"]
        web.ok("POST", "/api/train/cancel", {"camera": "garage", "region": "door"})
        web.wait("/api/train?" + Q, lambda r: r["state"] == "cancelled", 30, "the cancel")
        assert not (daemon.models / "garage_door_int8.onnx").exists()

        web.ok("POST", "/api/train", {"camera": "garage", "region": "door"})
        done = web.wait("/api/train?" + Q, lambda r: r["state"] != "running", 300, "training")
        assert done["state"] == "done", (done["error"], done["log"])
        assert done["dataset"]["labels"] == ["closed", "open"]
        assert done["done"]["int8"] == str(daemon.models / "garage_door_int8.onnx")
        assert "garage_door_int8.onnx" in done["report"] and any(e["event"] == "epoch" for e in done["epochs"])
        status, png = web.call("GET", "/api/train/confusion.png?" + Q)
        assert status == 200 and png[:4] == b"\x89PNG"

        # a model of that name trained on another region is not replaced without force
        gate = daemon.dataset / "garage" / "gate"
        shutil.copytree(daemon.dataset / "garage" / "door", gate)
        web.ok("POST", "/api/region", {"camera": "garage", "region": "gate", "box": [0.5, 0.5, 1.0, 1.0]})
        for suffix in ("int8.onnx", "fp32.onnx"):
            shutil.copy(daemon.models / f"garage_door_{suffix}", daemon.models / f"garage_gate_{suffix}")
        web.ok("POST", "/api/train", {"camera": "garage", "region": "gate"})
        refused = web.wait("/api/train?camera=garage&region=gate", lambda r: r["state"] != "running", 120, "gate")
        assert refused["state"] == "failed" and "belongs to region garage/door" in refused["error"], refused

        # 5. deploy: checked, live, kept in the config; the state topic carries the new classes
        before = web.ok("GET", "/api/region?" + Q)["model"]
        deployed = web.ok("POST", "/api/deploy", {"camera": "garage", "region": "door"})
        assert deployed["rolled_back"] is False and deployed["persisted"] is True, deployed
        assert deployed["labels"] == ["closed", "open"] and deployed["previous"] == before
        assert yaml.safe_load(daemon.config.read_text())["cameras"]["garage"]["regions"]["door"]["model"] \
            == deployed["model"]
        wait_until(lambda: (daemon.state("door") or {}).get("label") in ("closed", "open")
                   and {t["label"] for t in daemon.state("door")["top"]} <= {"closed", "open"}, 30,
                   "the new classes on the region's state topic")
        assert daemon.process.proc.poll() is None and daemon.process.proc.pid == daemon.pid
        assert Path(before).exists(), "the previous model is kept"

        # rollback: one call, back to the previous model, in the config too
        assert web.ok("GET", "/api/region?" + Q)["previous"] == before
        rolled = web.ok("POST", "/api/rollback", {"camera": "garage", "region": "door"})
        assert rolled["model"] == before
        assert yaml.safe_load(daemon.config.read_text())["cameras"]["garage"]["regions"]["door"]["model"] == before
        wait_until(lambda: web.ok("GET", "/api/region?" + Q)["model"] == before, 20, "the rollback running")
        assert Path(deployed["model"] + ".previous").read_text().strip() == before  # survives a restart
        status, reply = web.call("POST", "/api/rollback", {"camera": "garage", "region": "door"})
        assert status == 409 and "nothing to roll back to" in reply["error"], reply
        assert daemon.process.proc.pid == daemon.pid and daemon.process.proc.poll() is None
        assert not [line for line in daemon.process.errors if "Traceback" in line], daemon.process.errors[-20:]
    finally:
        daemon.close()
