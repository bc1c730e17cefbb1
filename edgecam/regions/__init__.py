"""Regions: named crops of a camera's frame, each with a trigger and a debounced state.

A region sits between the ring buffer and the classifier: ``Region.crop`` cuts
its box out of the newest frame, its ``Trigger`` decides whether this frame is
worth classifying, and its ``Debouncer`` turns a stream of Top-1 labels into
state changes ("door: open since 03:12"), published only when they happen.
"""
