"""The stdout sink: one compact JSON object per result, one per line.

It is the default when MQTT is disabled; logs go to stderr, so stdout stays
machine-readable (`edgecam run --no-mqtt | jq .top[0].label`).
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from edgecam.publish.sink import Sink
from edgecam.result import Result


class StdoutSink(Sink):
    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def publish_result(self, result: Result) -> None:
        try:
            self._stream.write(json.dumps(result.to_payload(), separators=(",", ":")) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): nothing left to deliver to.
            pass
