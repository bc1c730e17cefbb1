"""Samples for training your own classes, collected by the running daemon.

``store`` keeps one region's folder of samples within its caps; ``collector``
is the thread that decides, from each result, which crops are worth keeping
and writes them without ever holding up inference.
"""
