"""What the outside may ask of a running daemon, below every package that asks.

``protocol.DaemonControl`` is the interface MQTT commands (publish/) and the web
preview (preview/) call; ``settings`` validates runtime changes with the same
rules as config.yaml. Both import only config/ and model/, so publish/ and
preview/ never import service/ (the daemon), which implements the protocol.
"""
