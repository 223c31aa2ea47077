"""GLUE and SQuAD v1.1: loading, tokenising once, and batching with dynamic padding.

Where the data comes from, in order:

1. ``profile.shipped_data``: the few hundred real rows per task in ``flatcomp/lab/smoke_data``;
2. a local folder (argument, or ``$FLATCOMP_DATA``) holding the original GLUE TSV files
   (``glue/RTE/train.tsv``...), the Hugging Face parquet files (``glue_hf_parquet/rte/...``) and
   ``squad/v1.1/dev-v1.1.json``;
3. the Hugging Face hub (``nyu-mll/glue``, ``rajpurkar/squad``), unless ``HF_HUB_OFFLINE`` or
   ``HF_DATASETS_OFFLINE`` is set, or a two-second probe cannot reach it (:func:`hub_skip_reason`);
4. otherwise a :class:`DataNotFoundError` naming what was tried.

Labels follow the Hugging Face ids (RTE/QNLI: 0 = entailment). A task whose train split is not
available locally (MNLI, QQP, QNLI) is trained on a seeded half of its dev set and evaluated on the
other half; ``TaskData.cut`` says so, and every result made from it carries that note. The
profile's ``dev_split_tasks`` (``small``: MNLI, QQP, QNLI and SQuAD) are split so from every
source, the hub included, so that their rows and cut do not depend on where they are read from;
elsewhere (``paper``) the hub's train split is used as it is.
"""

from __future__ import annotations

import csv
import json
import os
import random
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit

import torch

from flatcomp.lab.config import Profile, data_dir

SMOKE_DATA = Path(__file__).resolve().parent / "smoke_data"
csv.field_size_limit(10_000_000)


@dataclass(frozen=True)
class Task:
    """A GLUE task: its text fields (Hugging Face names), labels and metric."""

    name: str
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]       # empty for regression (STS-B)
    metric: str                        # the metric the paper reports
    glue_dir: str                      # folder name in the original GLUE release
    tsv_columns: tuple[int, ...]       # columns of the text fields in the TSV files
    tsv_label: int                     # column of the label
    tsv_header: bool = True

    @property
    def num_labels(self) -> int:
        """1 for regression, else the number of classes."""
        return len(self.label_names) or 1

    @property
    def is_regression(self) -> bool:
        return not self.label_names


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("cola", ("sentence",), ("unacceptable", "acceptable"), "mcc", "CoLA", (3,), 1, False),
    Task("sst2", ("sentence",), ("negative", "positive"), "accuracy", "SST-2", (0,), 1),
    Task("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "accuracy",
         "MRPC", (3, 4), 0),
    Task("stsb", ("sentence1", "sentence2"), (), "pearson", "STS-B", (7, 8), -1),
    Task("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), "accuracy",
         "QQP", (3, 4), 5),
    Task("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"),
         "accuracy", "MNLI", (8, 9), -1),
    Task("qnli", ("question", "sentence"), ("entailment", "not_entailment"), "accuracy",
         "QNLI", (1, 2), 3),
    Task("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), "accuracy",
         "RTE", (1, 2), 3),
    Task("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), "accuracy",
         "WNLI", (1, 2), 3),
)}
# Hugging Face split names; MNLI is evaluated on its matched dev set.
_HF_SPLIT = {"train": "train", "dev": "validation"}
_HF_DEV = {"mnli": "validation_matched"}


class DataNotFoundError(FileNotFoundError):
    """No source had the data; the message lists what was tried and how to get it."""


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)} (or 'squad')")
    return TASKS[name]


@dataclass
class Examples:
    """Rows of one split: ``texts[i]`` holds one or two strings, ``labels[i]`` an int or float."""

    texts: list[tuple[str, ...]]
    labels: list[float]

    def __len__(self) -> int:
        return len(self.labels)

    def subsample(self, n: int | None, seed: int = 0) -> "Examples":
        """A seeded random subset of ``n`` rows (all rows if ``n`` is None or too large)."""
        if n is None or n >= len(self):
            return self
        keep = sorted(random.Random(seed).sample(range(len(self)), n))
        return Examples([self.texts[i] for i in keep], [self.labels[i] for i in keep])


@dataclass
class TaskData:
    task: Task
    train: Examples
    dev: Examples
    source: str                 # where the rows came from
    cut: str | None = None      # a departure from the official splits, if any


# ---------------------------------------------------------------- readers of each source

def _read_tsv(path: Path, task: Task) -> Examples:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if task.tsv_header:
        rows = rows[1:]
    texts, labels = [], []
    for row in rows:
        texts.append(tuple(row[c].strip() for c in task.tsv_columns))
        labels.append(_label(task, row[task.tsv_label]))
    return Examples(texts, labels)


def _label(task: Task, value: Any) -> float:
    if task.is_regression:
        return float(value)
    if isinstance(value, str) and value in task.label_names:
        return task.label_names.index(value)
    return int(value)


def _read_parquet(path: Path, task: Task) -> Examples:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    texts = list(zip(*(map(str.strip, table[f]) for f in task.text_fields)))
    return Examples(texts, [_label(task, v) for v in table["label"]])


def _local_split(folder: Path, task: Task, split: str) -> Examples | None:
    tsv = folder / "glue" / task.glue_dir / f"{split}.tsv"
    if tsv.exists():
        return _read_tsv(tsv, task)
    hf_split = _HF_DEV.get(task.name, "validation") if split == "dev" else _HF_SPLIT[split]
    parquet = folder / "glue_hf_parquet" / task.name / f"{hf_split}-00000-of-00001.parquet"
    return _read_parquet(parquet, task) if parquet.exists() else None


def _hub_split(task: Task, split: str) -> Examples:
    """A split of ``nyu-mll/glue``, read as the local readers read it (texts stripped)."""
    import datasets

    hf_split = _HF_DEV.get(task.name, "validation") if split == "dev" else _HF_SPLIT[split]
    rows = datasets.load_dataset("nyu-mll/glue", task.name, split=hf_split)
    texts = list(zip(*(map(str.strip, rows[f]) for f in task.text_fields)))
    return Examples(texts, [_label(task, v) for v in rows["label"]])


_T = TypeVar("_T")
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_PROBE_SECONDS = 2.0


def hub_skip_reason() -> str | None:
    """Why the hub will not be tried here (one line), or None if it may be: an offline variable
    set to 1/true, or no connection to the hub (or to the HTTPS proxy) within two seconds. This
    spares an offline machine the ``datasets`` library's retries (about 24 s per task)."""
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"skipped: {name}={os.environ[name]}"
    host, port = _hub_address()
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as error:
        return f"skipped: {host}:{port} not reachable ({type(error).__name__}: {error})"
    return None


def _hub_address() -> tuple[str, int]:
    """Where a hub request goes first: the HTTPS proxy if one is set, else ``$HF_ENDPOINT``."""
    url = (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
           or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "huggingface.co", port


def _from_hub(dataset: str, load: Callable[[], _T], tried: list[str]) -> _T | None:
    """``load()``, which reads ``dataset`` from the hub; None if the hub is skipped
    (:func:`hub_skip_reason`) or fails, with what happened appended to ``tried``."""
    reason = hub_skip_reason()
    if reason is None:
        try:
            return load()
        except Exception as error:  # noqa: BLE001 - any hub failure means: not reachable here
            first_line = next(iter(str(error).splitlines()), "")[:200]
            reason = f"failed: {type(error).__name__}" + (f": {first_line}" if first_line else "")
    tried.append(f"the Hugging Face hub {dataset} ({reason})")
    return None


def _shipped_split(task: Task, split: str) -> Examples:
    rows = json.loads((SMOKE_DATA / f"{task.name}.json").read_text())[split]
    return Examples([tuple(r["text"]) for r in rows], [r["label"] for r in rows])


def _halves_of_dev(task: Task, dev: Examples, source: str) -> TaskData:
    """Train on a seeded half of ``dev``, evaluate on the other half. The cut reads the same
    whichever ``source`` the rows came from (it names the reason: the local data folder, which
    the stored results were made from, has no train split for these tasks)."""
    train, dev = split_in_two(dev)
    return TaskData(task, train, dev, source,
                    cut=f"no local train split: trained on a seeded half of the dev set "
                        f"({len(train)} rows), evaluated on the other half ({len(dev)})")


def split_in_two(examples: Examples, seed: int = 0) -> tuple[Examples, Examples]:
    """A seeded half/half split, for tasks whose train set is not available."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    half = len(order) // 2
    pick = lambda idx: Examples([examples.texts[i] for i in sorted(idx)],
                                [examples.labels[i] for i in sorted(idx)])
    return pick(order[:half]), pick(order[half:])


def load_task(name: str, profile: Profile, folder: Path | str | None = None) -> TaskData:
    """Train and dev rows of a GLUE task, subsampled as the profile says.

    A task of the profile's ``dev_split_tasks`` trains on a seeded half of its dev set and is
    evaluated on the other half (:func:`split_in_two`) whichever source supplies that dev set,
    with the same cut; any other task does so only where a local folder has no train split."""
    task = get_task(name)
    data = _load_unsampled(task, profile.shipped_data, Path(folder) if folder else data_dir(),
                           dev_split=name in profile.dev_split_tasks)
    data.train = data.train.subsample(profile.train_size.get(name))
    data.dev = data.dev.subsample(profile.eval_size.get(name))
    return data


def _load_unsampled(task: Task, shipped: bool, folder: Path | None,
                    dev_split: bool = False) -> TaskData:
    """The rows of ``task`` before any subsample; ``dev_split``: split the dev set in two from
    every source (the local folder's train split and the hub's are not read)."""
    if shipped:
        return TaskData(task, _shipped_split(task, "train"), _shipped_split(task, "dev"),
                        "rows shipped in flatcomp/lab/smoke_data")
    tried = []
    if folder is not None:
        if not folder.is_dir():
            raise DataNotFoundError(f"the data folder {folder} does not exist: point "
                                    "FLATCOMP_DATA at a folder holding glue/ (see README.md)")
        dev = _local_split(folder, task, "dev")
        if dev is not None:
            train = None if dev_split else _local_split(folder, task, "train")
            if train is not None:
                return TaskData(task, train, dev, f"local folder {folder}")
            return _halves_of_dev(task, dev, f"local folder {folder}")
        tried.append(f"{folder}/glue/{task.glue_dir}/dev.tsv and {folder}/glue_hf_parquet/"
                     f"{task.name}/")
    else:
        tried.append("no local folder (FLATCOMP_DATA is not set)")
    hub = "Hugging Face hub nyu-mll/glue"
    if dev_split:
        dev = _from_hub("nyu-mll/glue", lambda: _hub_split(task, "dev"), tried)
        if dev is not None:
            return _halves_of_dev(task, dev, hub)
    else:
        splits = _from_hub("nyu-mll/glue", lambda: (_hub_split(task, "train"),
                                                    _hub_split(task, "dev")), tried)
        if splits is not None:
            return TaskData(task, *splits, hub)
    raise DataNotFoundError(
        f"no data for task {task.name!r}. Tried: {'; '.join(tried)}. Set FLATCOMP_DATA to a "
        "folder with the GLUE files (glue/<TASK>/train.tsv, dev.tsv), or connect to the hub, or "
        "use the smoke profile, which ships its own rows.")


# ---------------------------------------------------------------- SQuAD v1.1

@dataclass
class SquadExample:
    id: str
    title: str                  # the Wikipedia article, the unit of the train/eval split
    context: str
    question: str
    answers: list[str]
    answer_starts: list[int]


def load_squad(profile: Profile, folder: Path | str | None = None
               ) -> tuple[list[SquadExample], list[SquadExample], str | None]:
    """SQuAD v1.1 as (train, dev, cut), as the profile's :meth:`~Profile.squad_settings` say.

    Locally only dev exists: it is split by article (:func:`split_by_article`), so that no
    paragraph is both trained and evaluated on. From the hub, ``rajpurkar/squad``'s train and
    validation splits; where ``"squad"`` is one of the profile's ``dev_split_tasks``, only its
    validation split, split by article as the local dev set is (the same rows and cut).
    ``train_questions`` then keeps a seeded subsample of the training questions. ``cut`` says
    what differs from the official splits (None: nothing)."""
    settings = profile.squad_settings()
    folder = Path(folder) if folder else data_dir()
    local = folder / "squad" / "v1.1" / "dev-v1.1.json" if folder is not None else None
    if profile.shipped_data:
        examples = _squad_examples(json.loads((SMOKE_DATA / "squad.json").read_text()))
    elif local is not None and local.exists():
        examples = _squad_examples(json.loads(local.read_text()))
    else:
        tried = [f"{local} (missing)" if local else "no local folder (FLATCOMP_DATA is not set)"]
        dev_split = "squad" in profile.dev_split_tasks
        splits = _from_hub("rajpurkar/squad",
                           lambda: _squad_hub_splits(("validation",) if dev_split
                                                     else ("train", "validation")), tried)
        if splits is None:
            raise DataNotFoundError(
                f"no SQuAD v1.1. Tried: {'; '.join(tried)}. Set FLATCOMP_DATA to a folder with "
                "squad/v1.1/dev-v1.1.json, or connect to the hub, or use the smoke profile.")
        if dev_split:
            examples, = splits
        else:
            train, dev = splits
            train, note = _subsample_questions(train, settings["train_questions"],
                                               settings["split_seed"])
            return train, dev, note
    train, dev = split_by_article(examples, settings["eval_articles"], settings["split_seed"])
    full = len(train)
    train, note = _subsample_questions(train, settings["train_questions"], settings["split_seed"])
    articles = len({e.title for e in examples})
    cut = (f"no local train split: the dev set is split by article (seed "
           f"{settings['split_seed']}), {articles - settings['eval_articles']} articles "
           f"({full} questions) to train, {settings['eval_articles']} ({len(dev)}) to evaluate")
    return train, dev, cut + (f"; {note}" if note else "")


def split_by_article(examples: list[SquadExample], eval_articles: int, seed: int = 0
                     ) -> tuple[list[SquadExample], list[SquadExample]]:
    """(train, eval): ``eval_articles`` Wikipedia articles drawn with ``seed`` are evaluated on,
    the rest trained on; each keeps the examples' order."""
    evaluated = _evaluated_titles({e.title for e in examples}, eval_articles, seed)
    return ([e for e in examples if e.title not in evaluated],
            [e for e in examples if e.title in evaluated])


def _evaluated_titles(titles: set[str], eval_articles: int, seed: int) -> set[str]:
    """The articles :func:`split_by_article` evaluates on."""
    titles = sorted(titles)
    if not 0 < eval_articles < len(titles):
        raise ValueError(f"eval_articles must be between 1 and {len(titles) - 1} (the data has "
                         f"{len(titles)} articles), got {eval_articles}")
    random.Random(seed).shuffle(titles)
    return set(titles[:eval_articles])


def _subsample_questions(examples: list[SquadExample], n: int | None, seed: int
                         ) -> tuple[list[SquadExample], str | None]:
    """A seeded subsample of ``n`` questions in their order, and a note saying so (None: all)."""
    if n is None or n >= len(examples):
        return examples, None
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return ([examples[i] for i in keep],
            f"a seeded subsample of {n} of the {len(examples)} training questions is trained on")


def _squad_examples(blob: dict) -> list[SquadExample]:
    out = []
    for article in blob["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                out.append(SquadExample(qa["id"], article["title"], paragraph["context"],
                                        qa["question"], [a["text"] for a in qa["answers"]],
                                        [a["answer_start"] for a in qa["answers"]]))
    return out


def _squad_hub_splits(splits: Sequence[str] = ("train", "validation")
                      ) -> tuple[list[SquadExample], ...]:
    import datasets

    return tuple(_squad_from_hub(datasets.load_dataset("rajpurkar/squad", split=split))
                 for split in splits)


def _squad_from_hub(rows) -> list[SquadExample]:
    return [SquadExample(r["id"], r["title"], r["context"], r["question"],
                         r["answers"]["text"], r["answers"]["answer_start"]) for r in rows]


# ---------------------------------------------------------------- tokenising and batching

@dataclass(frozen=True)
class Encoded:
    """Token ids of a split, truncated to ``max_length`` but not padded."""

    input_ids: tuple[tuple[int, ...], ...]
    token_type_ids: tuple[tuple[int, ...], ...]
    labels: tuple[float, ...]
    regression: bool

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, indices: Sequence[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
        """The rows at ``indices`` as one padded batch (:func:`collate`)."""
        return collate(indices, self, pad_id)


def encode(examples: Examples, tokenizer, max_length: int, regression: bool = False) -> Encoded:
    """Tokenise once; the result is cached per (tokenizer, rows, max_length)."""
    return _encode_cached(_Hashable(examples), _Hashable(tokenizer), max_length, regression)


class _Hashable:
    """Hash by identity, so lru_cache can memoise on objects that are not hashable."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Hashable) and other.obj is self.obj


@lru_cache(maxsize=64)
def _encode_cached(examples: _Hashable, tokenizer: _Hashable, max_length: int,
                   regression: bool) -> Encoded:
    rows: Examples = examples.obj
    columns = list(zip(*rows.texts)) if len(rows) else [[]]
    enc = tokenizer.obj(*[list(c) for c in columns], truncation=True, max_length=max_length)
    token_types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return Encoded(tuple(map(tuple, enc["input_ids"])), tuple(map(tuple, token_types)),
                   tuple(rows.labels), regression)


def batches(data: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0,
            pad_id: int = 0, group_by_length: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Mini-batches padded to their own longest row (dynamic padding), in a seeded order.
    ``data`` is any sized collection with a ``collate(indices, pad_id)`` method and
    ``input_ids``: GLUE rows (:class:`Encoded`) or SQuAD windows
    (:class:`flatcomp.lab.qa_features.QAFeatures`). ``group_by_length`` batches rows of similar
    length together (:func:`batch_order`), so that little of a batch is padding."""
    for indices in batch_order(data, batch_size, shuffle, seed, group_by_length):
        yield data.collate(indices, pad_id)


# How many batches a length-grouped shuffle sorts together: enough to find rows of similar
# length, few enough that every part of the data still mixes (Hugging Face's group_by_length
# sorts mega-batches of 50 batches too).
MEGA_BATCH = 50


def batch_order(data: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0,
                group_by_length: bool = False) -> list[list[int]]:
    """The row indices of each batch, in order.

    Without grouping: the rows in order, or in a permutation drawn from ``seed``, cut into
    batches. With ``group_by_length`` and ``shuffle``: the seeded permutation is cut into
    mega-batches of :data:`MEGA_BATCH` batches, each sorted by length (longest first) and cut
    into batches, and the batches are then shuffled with the same generator, so that a batch's
    length does not follow its place in the epoch. With ``group_by_length`` alone (evaluation):
    the rows sorted by length. Every row appears exactly once either way."""
    n = len(data)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    if group_by_length:
        lengths = [len(ids) for ids in data.input_ids]
        span = MEGA_BATCH * batch_size if shuffle else max(n, 1)
        order = [i for start in range(0, n, span)
                 for i in sorted(order[start:start + span], key=lambda i: -lengths[i])]
    cut = [order[start:start + batch_size] for start in range(0, n, batch_size)]
    if group_by_length and shuffle:
        cut = [cut[i] for i in torch.randperm(len(cut), generator=generator).tolist()]
    return cut


def padding_ratio(data: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0,
                  group_by_length: bool = False) -> float:
    """Tokens computed over real tokens: each batch is padded to its longest row, so this is
    sum over batches of (rows x longest) / sum of the rows' lengths (1.0: no padding)."""
    lengths = [len(ids) for ids in data.input_ids]
    computed = sum(len(b) * max(lengths[i] for i in b)
                   for b in batch_order(data, batch_size, shuffle, seed, group_by_length))
    return computed / max(1, sum(lengths))


def pad_rows(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
             indices: Sequence[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """The rows at ``indices`` padded to the longest of them, with their attention mask."""
    longest = max(len(input_ids[i]) for i in indices)
    ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    types = torch.zeros((len(indices), longest), dtype=torch.long)
    mask = torch.zeros((len(indices), longest), dtype=torch.long)
    for row, i in enumerate(indices):
        n = len(input_ids[i])
        ids[row, :n] = torch.tensor(input_ids[i])
        types[row, :n] = torch.tensor(token_type_ids[i])
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def collate(indices: Sequence[int], data: Encoded, pad_id: int = 0) -> dict[str, torch.Tensor]:
    label_dtype = torch.float if data.regression else torch.long
    labels = torch.tensor([data.labels[i] for i in indices], dtype=label_dtype)
    return {**pad_rows(data.input_ids, data.token_type_ids, indices, pad_id), "labels": labels}


def num_batches(data: Encoded, batch_size: int) -> int:
    return -(-len(data) // batch_size)


# ---------------------------------------------------------------- the rows shipped for smoke

def write_smoke_data(folder: Path | str, out: Path = SMOKE_DATA, train_rows: int = 256,
                     dev_rows: int = 128, squad_articles: int = 4) -> None:
    """Sample the shipped rows from a full data folder (seeded; how smoke_data was made)."""
    from flatcomp.lab.config import SMALL

    out.mkdir(parents=True, exist_ok=True)
    full = SMALL.with_overrides(train_size={}, eval_size={})
    for name in TASKS:
        data = load_task(name, full, folder)
        blob = {split: [{"text": list(t), "label": y}
                        for t, y in zip(rows.texts, rows.labels)]
                for split, rows in (("train", data.train.subsample(train_rows)),
                                    ("dev", data.dev.subsample(dev_rows)))}
        (out / f"{name}.json").write_text(json.dumps(blob, ensure_ascii=False, indent=0) + "\n")
    squad = json.loads((Path(folder) / "squad/v1.1/dev-v1.1.json").read_text())
    articles = random.Random(0).sample(squad["data"], squad_articles)
    blob = {"version": squad["version"],
            "data": [{"title": a["title"], "paragraphs": a["paragraphs"][:6]} for a in articles]}
    (out / "squad.json").write_text(json.dumps(blob, ensure_ascii=False, indent=0) + "\n")


# ---------------------------------------------------------------- sizes, without reading

# Rows of the official splits (GLUE; SQuAD v1.1 questions), for cost estimates before any data
# is read. MNLI's dev is the matched set.
OFFICIAL_ROWS = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408),
                 "stsb": (5749, 1500), "qqp": (363846, 40430), "mnli": (392702, 9815),
                 "qnli": (104743, 5463), "rte": (2490, 277), "wnli": (635, 71),
                 "squad": (87599, 10570)}
# Tasks whose train split is not in the local data folder: trained on half of dev (see above).
DEV_SPLIT_TASKS = ("qqp", "mnli", "qnli", "squad")
# Questions per article of the SQuAD v1.1 dev set (48 articles, 10,570 questions): the article
# split of :func:`load_squad` sized without reading the set (:func:`squad_rows`).
SQUAD_DEV_ARTICLES = {
    "Super_Bowl_50": 810, "Warsaw": 247, "Normans": 112, "Nikola_Tesla": 511,
    "Computational_complexity_theory": 197, "Teacher": 268, "Martin_Luther": 479,
    "Southern_California": 180, "Sky_(United_Kingdom)": 108, "Victoria_(Australia)": 124,
    "Huguenot": 217, "Steam_engine": 215, "Oxygen": 247, "1973_oil_crisis": 106,
    "Apollo_program": 242, "European_Union_law": 243, "Amazon_rainforest": 183,
    "Ctenophora": 182, "Fresno,_California": 136, "Packet_switching": 106, "Black_Death": 108,
    "Geology": 116, "Newcastle_upon_Tyne": 264, "Victoria_and_Albert_Museum": 295,
    "American_Broadcasting_Company": 407, "Genghis_Khan": 245, "Pharmacy": 129,
    "Immune_system": 238, "Civil_disobedience": 197, "Construction": 98, "Private_school": 113,
    "Harvard_University": 112, "Jacksonville,_Florida": 96, "Economic_inequality": 297,
    "Doctor_Who": 319, "University_of_Chicago": 176, "Yuan_dynasty": 228, "Kenya": 231,
    "Intergovernmental_Panel_on_Climate_Change": 104, "Chloroplast": 295, "Prime_number": 153,
    "Rhine": 291, "Scottish_Parliament": 189, "Islamism": 200, "Imperialism": 187,
    "United_Methodist_Church": 191, "French_and_Indian_War": 172, "Force": 206}


def task_rows(task: str, profile: Profile) -> tuple[int, int]:
    """(train rows, dev rows) a profile trains and evaluates ``task`` on, without tokenising: the
    shipped rows for smoke; else the official sizes (halves of dev for the profile's
    ``dev_split_tasks``, and where a local folder has no train split), capped by the profile's
    ``train_size`` and ``eval_size``."""
    if task == "squad":
        return squad_rows(profile)
    if profile.shipped_data:
        blob = json.loads((SMOKE_DATA / f"{task}.json").read_text())
        return len(blob["train"]), len(blob["dev"])
    train, dev = OFFICIAL_ROWS[task]
    if task in profile.dev_split_tasks or (task in DEV_SPLIT_TASKS and data_dir() is not None):
        train, dev = dev // 2, dev - dev // 2
    return (min(train, profile.train_size.get(task, train)),
            min(dev, profile.eval_size.get(task, dev)))


def squad_rows(profile: Profile) -> tuple[int, int]:
    """(train questions, eval questions) of SQuAD at the profile, without tokenising: counted
    in the article split of the shipped rows or of a local dev set (a read of one JSON file);
    else, where ``"squad"`` is one of the profile's ``dev_split_tasks``, the same article split
    of the dev set sized from :data:`SQUAD_DEV_ARTICLES`; else the official sizes. The profile's
    cap on the training questions applies to both."""
    if squad_is_local(profile):
        train, dev, _ = load_squad(profile)
        return len(train), len(dev)
    settings = profile.squad_settings()
    if "squad" in profile.dev_split_tasks:
        evaluated = _evaluated_titles(set(SQUAD_DEV_ARTICLES), settings["eval_articles"],
                                      settings["split_seed"])
        dev = sum(SQUAD_DEV_ARTICLES[t] for t in evaluated)
        train = sum(SQUAD_DEV_ARTICLES.values()) - dev
    else:
        train, dev = OFFICIAL_ROWS["squad"]
    cap = settings["train_questions"]
    return min(train, cap) if cap is not None else train, dev


def squad_is_local(profile: Profile) -> bool:
    """Whether :func:`load_squad` reads SQuAD here without the hub: the shipped rows, or the
    dev set in the local data folder."""
    folder = data_dir()
    return profile.shipped_data or (folder is not None
                                    and (folder / "squad" / "v1.1" / "dev-v1.1.json").exists())
