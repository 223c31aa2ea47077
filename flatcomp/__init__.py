"""flatcomp: train flat, then compress.

A small library behind the book that reproduces Na, Mehta & Strubell (Findings of EMNLP 2022):
fine-tune BERT with Sharpness-Aware Minimization instead of Adam, then prune or quantize it.
One module per idea of the paper; data flows one way:

    config -> data -> models -> train (+ sam, pruning) -> experiments -> results -> book
"""

__version__ = "0.1.0"
