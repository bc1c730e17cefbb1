"""`edgecam run` whose model hangs while a gate file exists: a wedged classifier
in a real process (the daemon, its threads and systemd protocol are all real).

    python tests/support/wedged_daemon.py run ARGS...   (gate: $EDGECAM_TEST_WEDGE_FILE)
"""

from __future__ import annotations

import os
import time

from edgecam.model.classifier import Classifier

_GATE = os.environ["EDGECAM_TEST_WEDGE_FILE"]


def _hang_while_gated(method):
    def wrapper(self, *args, **kwargs):
        while os.path.exists(_GATE):
            time.sleep(0.02)
        return method(self, *args, **kwargs)
    return wrapper


for _name in ("probabilities", "probabilities_batch"):
    if hasattr(Classifier, _name):
        setattr(Classifier, _name, _hang_while_gated(getattr(Classifier, _name)))

if __name__ == "__main__":
    from edgecam.cli import entry

    entry()
