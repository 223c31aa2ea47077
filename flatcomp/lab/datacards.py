"""Data cards: what each task's data looks like, computed once and stored as a result.

A card holds the split sizes, the label balance, the distribution of token lengths (with the
profile's tokenizer, before truncation), two example rows, and where the rows came from. Every
stored card is of data that was there (``"available": True``, kept for the tables' sake): without
the data, computing a card fails, and nothing is stored.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from flatcomp.lab.config import Profile
from flatcomp.lab.data import Examples, load_squad, load_task
from flatcomp.lab.models import load_tokenizer

LENGTH_BINS = list(range(0, 520, 8))  # histogram edges for token lengths


def data_card(task: str, profile: Profile) -> dict:
    """The card of ``task`` at ``profile``. A task no source has raises
    :class:`~flatcomp.lab.data.DataNotFoundError` (naming what was tried): a missing dataset is an
    error to fix, never a stored card that would outlive the data's arrival."""
    if task == "squad":
        return _squad_card(profile)
    data = load_task(task, profile)
    tokenizer = load_tokenizer(profile)
    lengths = [len(ids) for ids in tokenizer(*map(list, zip(*data.train.texts)))["input_ids"]]
    return {
        "task": task, "available": True, "source": _public_source(data.source), "cut": data.cut,
        "text_fields": list(data.task.text_fields), "metric": data.task.metric,
        "train_rows": len(data.train), "dev_rows": len(data.dev),
        "labels": _label_balance(data.train, data.task.label_names),
        "dev_labels": _label_balance(data.dev, data.task.label_names),
        "length_histogram": np.histogram(lengths, bins=LENGTH_BINS)[0].tolist(),
        "length_bins": LENGTH_BINS,
        "length_quantiles": {q: float(np.percentile(lengths, int(q[1:])))
                             for q in ("p50", "p90", "p99", "p100")},
        "truncated_at_max_length": float(np.mean([n > profile.max_length for n in lengths])),
        "examples": [{"text": list(t), "label": _label_name(y, data.task.label_names)}
                     for t, y in zip(data.train.texts[:2], data.train.labels[:2])],
    }


def _squad_card(profile: Profile) -> dict:
    train, dev, cut = load_squad(profile)
    return {"task": "squad", "available": True, "cut": cut, "metric": "f1",
            "train_rows": len(train), "dev_rows": len(dev),
            "train_articles": len({e.title for e in train}),
            "dev_articles": len({e.title for e in dev}),
            "examples": [{"text": [e.question, e.context[:200] + "..."], "label": e.answers[0]}
                         for e in train[:2]]}


def _label_balance(rows: Examples, names: tuple[str, ...]) -> dict[str, float]:
    if not names:  # regression: summarise the score distribution instead
        scores = np.asarray(rows.labels, dtype=float)
        return {"min": float(scores.min()), "mean": float(scores.mean()),
                "max": float(scores.max())}
    counts = Counter(int(y) for y in rows.labels)
    return {names[k]: counts.get(k, 0) / len(rows) for k in range(len(names))}


def _label_name(label: float, names: tuple[str, ...]) -> str | float:
    return names[int(label)] if names else float(label)


def _public_source(source: str) -> str:
    """Drop the machine-specific path: the card should read the same on every computer."""
    return "local data folder" if source.startswith("local folder") else source
