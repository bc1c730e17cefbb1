"""Model fixtures: filled in by the model work."""
