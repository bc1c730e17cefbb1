"""edgecam: a real-time camera classifier daemon for edge devices.

Data flow (one folder per stage):
    sources/  -> buffer/ -> model/ -> publish/
    (capture)   (ring)     (INT8 ONNX) (stdout / MQTT)
service/ wires the threads together; preview/ draws what the model sees.
"""

__version__ = "0.1.0"
