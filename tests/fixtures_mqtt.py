"""MQTT fixtures: filled in by the MQTT work."""
