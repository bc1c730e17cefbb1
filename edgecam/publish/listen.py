"""Placeholder: replaced by the real module."""


def register(subparsers) -> None:
    pass
