"""edgecam: a real-time camera classifier daemon for edge devices.

Data flow (one folder per stage):
    sources/  -> buffer/ -> model/ -> publish/
    (capture)   (ring)     (INT8 ONNX) (stdout / MQTT)
service/ wires the threads together; preview/ draws what the model sees.
"""

import os

__version__ = "0.1.0"

# onnxruntime >= 1.29 sends telemetry events on Linux (DNS lookups of a vendor host,
# and a process exit that waits on them when DNS is unreachable). A camera daemon makes
# no connection its user did not configure: opt out before onnxruntime is first imported
# (edgecam.model imports it after this package). ORT_DISABLE_TELEMETRY=0 opts back in.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# OpenCV's own pixel limit for every decode (its default is 2**30): the second
# fence behind preview.http.max_image_pixels. OpenCV reads it once, when cv2 is
# first imported, so it is set here, before any edgecam module imports cv2.
OPENCV_MAX_IMAGE_PIXELS = 2**27
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_MAX_IMAGE_PIXELS))

# OpenCV writes its own warnings ("[ WARN:0@...] ... PNG input buffer is incomplete") to
# stderr, one unformatted journal line per hostile upload /classify already answers with a
# 400. Errors still show; a user's own OPENCV_LOG_LEVEL wins.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
