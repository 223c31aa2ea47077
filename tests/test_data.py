"""Data loading: shipped rows, the GLUE TSV quirks, parquet-only tasks, errors, encoding, batching.

The last section checks the canonical row counts of the real data folder; it runs only when
``FLATCOMP_DATA`` points at one (e.g. ``FLATCOMP_DATA=/work/shared/data``) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from flatcomp.lab import data as D
from flatcomp.lab.data import (TASKS, DataNotFoundError, Examples, batches, encode, get_task,
                               load_squad, load_task, split_in_two)

SHIPPED_TRAIN_ROWS = 256
SHIPPED_DEV_ROWS = 128
WNLI_DEV_ROWS = 71  # the whole WNLI dev set is smaller than 128 rows


@pytest.fixture
def local(smoke):
    """The smoke profile reading a local folder instead of the shipped rows."""
    return smoke.with_overrides(shipped_data=False)


# ---------------------------------------------------------------- shipped rows

@pytest.mark.parametrize("name", sorted(TASKS))
def test_shipped_row_counts(smoke, name):
    data = load_task(name, smoke)
    assert len(data.train) == SHIPPED_TRAIN_ROWS
    assert len(data.dev) == (WNLI_DEV_ROWS if name == "wnli" else SHIPPED_DEV_ROWS)
    assert len(data.train.texts) == len(data.train.labels)


@pytest.mark.parametrize("name", sorted(n for n in TASKS if not TASKS[n].is_regression))
def test_shipped_classification_labels_are_class_ids(smoke, name):
    data = load_task(name, smoke)
    classes = set(range(data.task.num_labels))
    for rows in (data.train, data.dev):
        assert set(rows.labels) <= classes
        assert all(isinstance(y, int) for y in rows.labels)
    assert len(set(data.train.labels)) > 1, "a sample of one class cannot train anything"


def test_shipped_stsb_labels_are_scores_between_0_and_5(smoke):
    data = load_task("stsb", smoke)
    for rows in (data.train, data.dev):
        assert all(isinstance(y, float) and 0.0 <= y <= 5.0 for y in rows.labels)
    assert len(set(data.train.labels)) > 10  # real scores, not a constant


@pytest.mark.parametrize("name", sorted(TASKS))
def test_shipped_texts_have_the_tasks_field_count(smoke, name):
    data = load_task(name, smoke)
    fields = len(TASKS[name].text_fields)
    for rows in (data.train, data.dev):
        assert all(isinstance(t, tuple) and len(t) == fields for t in rows.texts)
        assert all(all(isinstance(s, str) and s for s in t) for t in rows.texts)


# ---------------------------------------------------------------- errors

def test_unknown_task_raises_value_error(smoke):
    with pytest.raises(ValueError, match="nosuch"):
        load_task("nosuch", smoke)
    with pytest.raises(ValueError, match="nosuch"):
        get_task("nosuch")


def test_missing_folder_raises_data_not_found_naming_it(local, tmp_path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(DataNotFoundError) as info:
        load_task("rte", local, missing)
    assert str(missing) in str(info.value)


@pytest.fixture
def hub_reachable(monkeypatch):
    """The probe says yes, without any network (tests never touch it)."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                 "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    probes = []

    class Connection:
        def close(self):
            pass

    def connect(address, timeout):
        probes.append((address, timeout))
        return Connection()

    monkeypatch.setattr(D.socket, "create_connection", connect)
    return probes


@pytest.fixture
def hub_forbidden(monkeypatch):
    """Fail the test if the hub is read at all."""
    def read(*args, **kwargs):
        raise AssertionError("the hub was tried")

    monkeypatch.setattr(D, "_hub_split", read)
    monkeypatch.setattr(D, "_squad_hub_splits", read)


def test_empty_folder_and_no_hub_lists_what_was_tried(local, tmp_path, monkeypatch,
                                                     hub_reachable):
    def unreachable(task, split):
        raise ConnectionError("no network here")

    monkeypatch.setattr(D, "_hub_split", unreachable)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_task("rte", local, empty)
    message = str(info.value)
    assert str(empty) in message
    assert "glue/RTE/dev.tsv" in message
    assert "hub" in message and "ConnectionError: no network here" in message
    assert hub_reachable == [(("huggingface.co", 443), D.HUB_PROBE_SECONDS)]


@pytest.mark.parametrize("variable, value", [("HF_HUB_OFFLINE", "1"),
                                             ("HF_DATASETS_OFFLINE", "true")])
def test_offline_variable_skips_the_hub_without_probing(local, tmp_path, monkeypatch,
                                                        hub_reachable, hub_forbidden,
                                                        variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(DataNotFoundError) as info:
        load_task("rte", local, tmp_path)
    assert f"nyu-mll/glue (skipped: {variable}={value})" in str(info.value)
    assert hub_reachable == []  # not even the probe


def test_failed_probe_skips_the_hub_with_a_one_line_reason(local, tmp_path, monkeypatch,
                                                           hub_forbidden):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)

    def no_route(address, timeout):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(D.socket, "create_connection", no_route)
    with pytest.raises(DataNotFoundError) as info:
        load_task("rte", local, tmp_path)
    message = str(info.value)
    assert "nyu-mll/glue (skipped: huggingface.co:443 not reachable (OSError" in message
    assert message.count("Name or service not known") == 1 and "\n" not in message
    assert str(tmp_path) in message  # the folder that was tried too


def test_hub_that_answers_is_read(local, tmp_path, hub_reachable, monkeypatch):
    rows = Examples([("a", "b")], [0])
    monkeypatch.setattr(D, "_hub_split", lambda task, split: rows)
    data = load_task("rte", local, tmp_path)
    assert data.source == "Hugging Face hub nyu-mll/glue" and len(data.train) == 1


def test_probe_goes_to_the_proxy_or_endpoint_when_set(monkeypatch, hub_reachable):
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example:8443")
    assert D.hub_skip_reason() is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert D.hub_skip_reason() is None
    assert [a for a, _ in hub_reachable] == [("mirror.example", 8443), ("proxy.example", 3128)]


def test_squad_uses_the_same_hub_check(local, tmp_path, monkeypatch, hub_forbidden):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataNotFoundError) as info:
        load_squad(local, tmp_path)
    message = str(info.value)
    assert f"{tmp_path}/squad/v1.1/dev-v1.1.json (missing)" in message
    assert "rajpurkar/squad (skipped: HF_HUB_OFFLINE=1)" in message


def test_no_data_folder_says_so(local, monkeypatch, hub_forbidden):
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataNotFoundError, match="FLATCOMP_DATA is not set"):
        load_task("rte", local)
    with pytest.raises(DataNotFoundError, match="FLATCOMP_DATA is not set"):
        load_squad(local)


# ---------------------------------------------------------------- a handmade GLUE folder

def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


COLA = ("gj04\t1\t\tOur friends won't buy this analysis, let alone the next one we propose.\n"
        "gj04\t0\t*\tThey drank the pub.\n"
        "gj04\t1\t\tThe more we study verbs, the crazier they get.\n")
MRPC = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "1\t702876\t702977\tAmrozi accused his brother .\tReferring to him , Amrozi accused him .\n"
        "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 .\n")
RTE = ("index\tsentence1\tsentence2\tlabel\n"
       '0\t"Unclosed quote opens this premise.\tA hypothesis.\tentailment\n'
       '1\tA plain premise.\t"Quoted" words begin this one.\tnot_entailment\n'
       "2\tThird premise.\tThird hypothesis.\tentailment\n")
SST2 = ("sentence\tlabel\n"
        "it 's a charming and often affecting journey . \t1\n"
        "unflinchingly bleak and desperate \t0\n")
STSB = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off.\t"
        "An air plane is taking off.\t5.000\n"
        "1\tmain-captions\tMSRvid\t2012test\t0004\tnone\tnone\tA man is playing a flute.\t"
        "A man is eating.\t0.800\n")


@pytest.fixture
def glue_folder(tmp_path):
    """A tiny folder in the original GLUE TSV format, quirks included (train = dev here)."""
    folder = tmp_path / "data"
    for task_dir, text in (("CoLA", COLA), ("MRPC", MRPC), ("RTE", RTE), ("SST-2", SST2),
                           ("STS-B", STSB)):
        for split in ("train", "dev"):
            _write(folder / "glue" / task_dir / f"{split}.tsv", text)
    return folder


def test_cola_has_no_header_row(local, glue_folder):
    data = load_task("cola", local, glue_folder)
    assert len(data.train) == 3  # the first line is a row, not a header
    assert data.train.texts[0] == ("Our friends won't buy this analysis, let alone the next one "
                                   "we propose.",)
    assert data.train.labels == [1, 0, 1]
    assert data.cut is None


def test_mrpc_header_with_bom_is_skipped(local, glue_folder):
    data = load_task("mrpc", local, glue_folder)
    assert len(data.train) == 2
    assert data.train.texts[0] == ("Amrozi accused his brother .",
                                   "Referring to him , Amrozi accused him .")
    assert data.train.labels == [1, 0]
    assert not any("\ufeff" in s for t in data.train.texts for s in t)


def test_rte_field_starting_with_a_quote_is_read_verbatim(local, glue_folder):
    data = load_task("rte", local, glue_folder)
    assert len(data.train) == 3  # an opening quote must not swallow tabs and newlines
    assert data.train.texts[0] == ('"Unclosed quote opens this premise.', "A hypothesis.")
    assert data.train.texts[1] == ("A plain premise.", '"Quoted" words begin this one.')


def test_rte_string_labels_map_to_hugging_face_ids(local, glue_folder):
    data = load_task("rte", local, glue_folder)
    assert data.train.labels == [0, 1, 0]  # 0 = entailment, 1 = not_entailment


def test_sst2_trailing_space_is_stripped(local, glue_folder):
    data = load_task("sst2", local, glue_folder)
    assert data.train.texts == [("it 's a charming and often affecting journey .",),
                                ("unflinchingly bleak and desperate",)]
    assert data.train.labels == [1, 0]


def test_stsb_score_is_read_from_the_last_column(local, glue_folder):
    data = load_task("stsb", local, glue_folder)
    assert data.train.labels == [5.0, 0.8]
    assert all(isinstance(y, float) for y in data.train.labels)
    assert data.train.texts[1] == ("A man is playing a flute.", "A man is eating.")


MNLI_ROWS = 11


@pytest.fixture
def parquet_folder(tmp_path):
    """MNLI as Hugging Face parquet, matched dev only (no train split, as in the real folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    path = folder / "glue_hf_parquet" / "mnli" / "validation_matched-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table({"premise": [f"premise {i} " for i in range(MNLI_ROWS)],
                      "hypothesis": [f"hypothesis {i}" for i in range(MNLI_ROWS)],
                      "label": [i % 3 for i in range(MNLI_ROWS)],
                      "idx": list(range(MNLI_ROWS))})
    pq.write_table(table, path)
    return folder


def test_parquet_only_task_trains_on_a_seeded_half_of_dev(local, parquet_folder):
    data = load_task("mnli", local, parquet_folder)
    rows = {t: y for t, y in zip(data.train.texts + data.dev.texts,
                                 data.train.labels + data.dev.labels)}
    expected = {(f"premise {i}", f"hypothesis {i}"): i % 3 for i in range(MNLI_ROWS)}
    assert rows == expected  # every dev row once, stripped, with its label
    assert len(data.train) + len(data.dev) == MNLI_ROWS
    assert not set(data.train.texts) & set(data.dev.texts)
    assert {len(data.train), len(data.dev)} == {MNLI_ROWS // 2, MNLI_ROWS - MNLI_ROWS // 2}


def test_parquet_only_task_says_so_in_its_cut(local, parquet_folder):
    data = load_task("mnli", local, parquet_folder)
    assert data.cut is not None
    assert "half of the dev set" in data.cut
    assert str(len(data.train)) in data.cut and str(len(data.dev)) in data.cut


def test_parquet_only_split_is_the_same_every_time(local, parquet_folder):
    first = load_task("mnli", local, parquet_folder)
    second = load_task("mnli", local, parquet_folder)
    assert first.train.texts == second.train.texts
    assert first.dev.texts == second.dev.texts


def _numbered(n: int) -> Examples:
    return Examples([(f"row {i}",) for i in range(n)], list(range(n)))


def test_split_in_two_is_deterministic_disjoint_and_complete():
    rows = _numbered(25)
    a1, b1 = split_in_two(rows, seed=5)
    a2, b2 = split_in_two(rows, seed=5)
    assert (a1.texts, b1.texts) == (a2.texts, b2.texts)
    assert not set(a1.labels) & set(b1.labels)
    assert sorted(a1.labels + b1.labels) == list(range(25))
    assert (len(a1), len(b1)) == (12, 13)
    assert a1.labels == sorted(a1.labels)  # each half keeps the original order


def test_split_in_two_depends_on_the_seed():
    rows = _numbered(40)
    assert split_in_two(rows, seed=0)[0].labels != split_in_two(rows, seed=1)[0].labels


# ---------------------------------------------------------------- encoding and batching

def _words(counts: list[int]) -> Examples:
    """Rows of 1..n words; the label is the row's index, so batches reveal the order."""
    return Examples([(" ".join(["word"] * k),) for k in counts], list(range(len(counts))))


LENGTHS = [1, 9, 2, 3, 12, 4, 5, 1, 7, 2, 6, 3]


def test_encode_is_cached_per_object(tokenizer):
    rows = _words(LENGTHS)
    assert encode(rows, tokenizer, 32) is encode(rows, tokenizer, 32)
    assert encode(rows, tokenizer, 16) is not encode(rows, tokenizer, 32)


def test_encode_truncates_at_max_length(tokenizer):
    rows = _words([100, 3])
    enc = encode(rows, tokenizer, 16)
    assert len(enc.input_ids[0]) == 16
    assert enc.input_ids[0][-1] == tokenizer.sep_token_id  # truncated, still closed by [SEP]
    assert len(enc.input_ids[1]) == 3 + 2  # short rows are neither truncated nor padded
    batch = next(batches(enc, 2))
    assert batch["input_ids"].shape == (2, 16)


def test_encode_pairs_marks_the_second_segment(tokenizer):
    rows = Examples([("a premise here", "a hypothesis")], [0])
    enc = encode(rows, tokenizer, 32)
    types = enc.token_type_ids[0]
    assert set(types) == {0, 1}
    assert list(types) == sorted(types)  # all 0s (first segment) then all 1s


def test_batches_are_padded_to_their_own_longest_row(tokenizer):
    max_length = 64
    enc = encode(_words(LENGTHS), tokenizer, max_length)
    widths = []
    for start, batch in zip(range(0, len(LENGTHS), 4), batches(enc, 4)):
        longest = max(LENGTHS[start:start + 4]) + 2  # [CLS] ... [SEP]
        assert batch["input_ids"].shape == (min(4, len(LENGTHS) - start), longest)
        widths.append(longest)
    assert max(widths) < max_length
    assert len(set(widths)) > 1


def test_attention_mask_is_zero_exactly_on_padding(tokenizer):
    enc = encode(_words(LENGTHS), tokenizer, 64)
    for batch in batches(enc, 5, shuffle=True, seed=1, pad_id=0):
        for row, label in enumerate(batch["labels"].tolist()):
            ids = enc.input_ids[label]
            n, width = len(ids), batch["input_ids"].shape[1]
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
            assert batch["input_ids"][row, :n].tolist() == list(ids)
            assert batch["input_ids"][row, n:].eq(0).all()
            assert batch["token_type_ids"][row, n:].eq(0).all()


def _order(enc, seed):
    return [y for b in batches(enc, 3, shuffle=True, seed=seed) for y in b["labels"].tolist()]


def test_same_seed_gives_the_same_shuffled_order(tokenizer):
    enc = encode(_words(LENGTHS), tokenizer, 64)
    first = _order(enc, 7)
    assert first == _order(enc, 7)
    assert sorted(first) == list(range(len(LENGTHS)))  # a permutation: every row once


def test_different_seed_gives_a_different_order(tokenizer):
    enc = encode(_words(LENGTHS), tokenizer, 64)
    assert _order(enc, 7) != _order(enc, 8)
    assert _order(enc, 7) != list(range(len(LENGTHS)))


def test_regression_labels_are_float_tensors(tokenizer):
    rows = Examples([("a",), ("b",)], [0.5, 4.2])
    batch = next(batches(encode(rows, tokenizer, 8, regression=True), 2))
    assert batch["labels"].is_floating_point()
    assert batch["labels"].tolist() == pytest.approx([0.5, 4.2])


# ---------------------------------------------------------------- SQuAD

def test_shipped_squad_is_split_by_article(smoke):
    train, dev, cut = load_squad(smoke)
    assert train and dev
    assert not {e.title for e in train} & {e.title for e in dev}
    assert not {e.id for e in train} & {e.id for e in dev}
    assert cut is not None and "split by article" in cut
    for e in train + dev:
        assert e.answers and len(e.answers) == len(e.answer_starts)
        assert e.context[e.answer_starts[0]:].startswith(e.answers[0])


# ---------------------------------------------------------------- the real data folder

@pytest.fixture
def real_folder():
    value = os.environ.get("FLATCOMP_DATA")
    if not value:
        pytest.skip("FLATCOMP_DATA not set: the canonical row counts need the real data folder "
                    "(e.g. FLATCOMP_DATA=/work/shared/data)")
    return Path(value)


CANONICAL = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408),
             "stsb": (5749, 1500), "rte": (2490, 277), "wnli": (635, 71)}
# dev-only tasks: the size of the official dev set (matched for MNLI), split in two halves
CANONICAL_DEV_ONLY = {"qnli": 5463, "mnli": 9815, "qqp": 40430}


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_real_folder_canonical_row_counts(local, real_folder, name):
    data = load_task(name, local, real_folder)
    assert (len(data.train), len(data.dev)) == CANONICAL[name]
    assert data.cut is None


@pytest.mark.parametrize("name", sorted(CANONICAL_DEV_ONLY))
def test_real_folder_dev_only_tasks_split_their_dev_set(local, real_folder, name):
    data = load_task(name, local, real_folder)
    assert len(data.train) + len(data.dev) == CANONICAL_DEV_ONLY[name]
    assert abs(len(data.train) - len(data.dev)) <= 1
    assert data.cut is not None


def test_real_folder_squad_dev(local, real_folder):
    train, dev, cut = load_squad(local, real_folder)
    assert len(train) + len(dev) == 10570
    assert len({e.title for e in train + dev}) == 48
    assert not {e.title for e in train} & {e.title for e in dev}
    assert cut is not None


@pytest.mark.parametrize("split, hf_split", [("train", "train"), ("dev", "validation")])
def test_real_folder_rte_tsv_and_parquet_agree(real_folder, split, hf_split):
    task = get_task("rte")
    tsv = D._read_tsv(real_folder / "glue" / "RTE" / f"{split}.tsv", task)
    parquet = D._read_parquet(
        real_folder / "glue_hf_parquet" / "rte" / f"{hf_split}-00000-of-00001.parquet", task)
    assert len(tsv) == len(parquet) > 0
    assert tsv.labels == parquet.labels
    assert tsv.texts == parquet.texts


# ---------------------------------------------------------------- length-grouped batches

def _lengths_data(n=500, seed=0):
    import random

    from flatcomp.lab.data import Encoded

    rng = random.Random(seed)
    ids = tuple(tuple(range(rng.randint(3, 120))) for _ in range(n))
    return Encoded(ids, tuple(tuple(0 for _ in row) for row in ids), tuple(float(i % 2) for i in range(n)),
                   False)


def test_grouped_batches_hold_every_row_once_and_cut_the_padding():
    from flatcomp.lab.data import batch_order, padding_ratio

    data = _lengths_data()
    for shuffle in (False, True):
        order = batch_order(data, 16, shuffle=shuffle, seed=3, group_by_length=True)
        assert sorted(i for b in order for i in b) == list(range(len(data)))
        assert all(len(b) == 16 for b in order[:-1]) or not shuffle
    random_ratio = padding_ratio(data, 16, True, 3)
    grouped_ratio = padding_ratio(data, 16, True, 3, group_by_length=True)
    assert random_ratio > 1.5 and grouped_ratio < 1.1


def test_grouped_batches_are_seeded_and_differ_between_epochs():
    from flatcomp.lab.data import batch_order

    data = _lengths_data()
    a = batch_order(data, 16, True, 1, True)
    assert a == batch_order(data, 16, True, 1, True)
    assert a != batch_order(data, 16, True, 2, True)
    # the batches are shuffled after sorting: the epoch does not run from long to short rows
    firsts = [max(len(data.input_ids[i]) for i in b) for b in a]
    assert firsts != sorted(firsts, reverse=True)


def test_without_grouping_the_order_is_what_it_always_was():
    import torch

    from flatcomp.lab.data import batch_order

    data = _lengths_data(100)
    expected = torch.randperm(100, generator=torch.Generator().manual_seed(7)).tolist()
    assert [i for b in batch_order(data, 16, True, 7) for i in b] == expected
    assert [i for b in batch_order(data, 16) for i in b] == list(range(100))


def test_evaluation_sorted_by_length_gives_the_same_predictions():
    import torch

    from flatcomp.lab.config import SMOKE
    from flatcomp.lab.experiments.core import encoded_task
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import predict

    _, dev, _ = encoded_task(SMOKE, "mrpc")
    model = load_model(SMOKE, "mrpc", 0)
    plain = predict(model, dev, SMOKE.with_overrides(precision="fp32"))
    grouped = predict(model, dev, SMOKE.with_overrides(precision="fp32", length_grouped=True))
    assert torch.equal(plain, grouped)


# ---------------------------------------------------------------- the dev-set split from any source
# At ``small`` the dev-split tasks (MNLI, QQP, QNLI, SQuAD) train on a seeded half of their dev set
# whether the rows come from the local folder or the hub; ``paper`` keeps the hub's train split.

HUB_MNLI_TRAIN_ROWS = 37  # a fake hub train split, of another size than the dev set


def _mnli_hub(calls: list, train_rows: int = HUB_MNLI_TRAIN_ROWS, dev_rows: int = MNLI_ROWS):
    """A fake ``_hub_split``: MNLI's matched dev set as :func:`parquet_folder` holds it (texts
    stripped, as the readers strip them), and a train split of its own; ``calls`` records the
    splits read."""
    def read(task, split):
        calls.append((task.name, split))
        if split == "train":
            return Examples([(f"train premise {i}", f"train hypothesis {i}")
                             for i in range(train_rows)], [i % 3 for i in range(train_rows)])
        return Examples([(f"premise {i}", f"hypothesis {i}") for i in range(dev_rows)],
                        [i % 3 for i in range(dev_rows)])
    return read


@pytest.fixture
def no_folder(monkeypatch):
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)


def _small():
    from flatcomp.lab.config import SMALL

    return SMALL


def test_profiles_say_which_tasks_split_their_dev_set():
    from flatcomp.lab.config import PAPER, SMALL, SMOKE

    assert set(SMALL.dev_split_tasks) == set(D.DEV_SPLIT_TASKS)
    assert SMOKE.dev_split_tasks == () and PAPER.dev_split_tasks == ()


def test_small_mnli_from_the_hub_is_the_local_split(parquet_folder, monkeypatch, no_folder,
                                                    hub_reachable):
    local = load_task("mnli", _small(), parquet_folder)
    calls = []
    monkeypatch.setattr(D, "_hub_split", _mnli_hub(calls))
    hub = load_task("mnli", _small())
    assert calls == [("mnli", "dev")]  # the hub's train split is not even read
    assert hub.source == "Hugging Face hub nyu-mll/glue" and local.source.startswith("local")
    assert (hub.train.texts, hub.train.labels) == (local.train.texts, local.train.labels)
    assert (hub.dev.texts, hub.dev.labels) == (local.dev.texts, local.dev.labels)
    assert {len(hub.train), len(hub.dev)} == {MNLI_ROWS // 2, MNLI_ROWS - MNLI_ROWS // 2}
    assert hub.cut == local.cut == (
        f"no local train split: trained on a seeded half of the dev set ({len(local.train)} "
        f"rows), evaluated on the other half ({len(local.dev)})")


def test_paper_mnli_from_the_hub_keeps_the_hubs_train_split(parquet_folder, monkeypatch,
                                                            no_folder, hub_reachable):
    from flatcomp.lab.config import PAPER

    calls = []
    monkeypatch.setattr(D, "_hub_split", _mnli_hub(calls))
    data = load_task("mnli", PAPER)
    assert sorted(calls) == [("mnli", "dev"), ("mnli", "train")]
    assert (len(data.train), len(data.dev)) == (HUB_MNLI_TRAIN_ROWS, MNLI_ROWS)
    assert data.train.texts[0] == ("train premise 0", "train hypothesis 0")
    assert data.cut is None
    # a local folder without MNLI's train split is still split in two, as before
    assert load_task("mnli", PAPER, parquet_folder).cut == load_task("mnli", _small(),
                                                                     parquet_folder).cut


def test_a_local_train_split_is_not_read_for_a_dev_split_task(tmp_path, monkeypatch):
    """At small a dev-split task is split even where the folder has its train split: the rows do
    not depend on what the folder holds. A profile without it (smoke read locally) reads train."""
    folder = tmp_path / "data"
    for split in ("train", "dev"):
        _write(folder / "glue" / "RTE" / f"{split}.tsv", RTE)
    small = _small().with_overrides(dev_split_tasks=("rte",))
    data = load_task("rte", small, folder)
    assert (len(data.train), len(data.dev)) == (1, 2) and "half of the dev set" in data.cut
    plain = load_task("rte", _small(), folder)
    assert (len(plain.train), len(plain.dev)) == (3, 3) and plain.cut is None


def test_hub_texts_are_stripped_as_the_local_readers_strip_them(monkeypatch):
    import datasets

    seen = []

    def load_dataset(path, name, split):
        seen.append((path, name, split))
        return {"premise": [" premise 0 "], "hypothesis": ["hypothesis 0\n"], "label": [2]}

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    rows = D._hub_split(get_task("mnli"), "dev")
    assert seen == [("nyu-mll/glue", "mnli", "validation_matched")]
    assert (rows.texts, rows.labels) == ([("premise 0", "hypothesis 0")], [2])


@pytest.mark.parametrize("name", ["mnli", "qqp", "qnli"])
def test_task_rows_agree_with_loading_from_any_source(name, parquet_folder, monkeypatch,
                                                      hub_reachable):
    """At the official sizes, with a fake hub: what task_rows says is what loading gives, at
    small from the hub and from a local folder alike, and at paper from the hub."""
    from flatcomp.lab.config import PAPER, SMALL

    train_rows, dev_rows = D.OFFICIAL_ROWS[name]
    task = get_task(name)
    same = tuple("x" for _ in task.text_fields)  # one shared row: cheap at 392,702 rows

    def read(task, split):
        n = train_rows if split == "train" else dev_rows
        return Examples([same] * n, [0] * n)

    monkeypatch.setattr(D, "_hub_split", read)
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)
    for profile in (SMALL, PAPER):
        data = load_task(name, profile)
        assert D.task_rows(name, profile) == (len(data.train), len(data.dev))
    small_from_hub = D.task_rows(name, SMALL)
    assert small_from_hub[1] <= dev_rows - dev_rows // 2  # halves of dev, whatever the caps
    assert D.task_rows(name, PAPER) == (train_rows, dev_rows)
    monkeypatch.setenv("FLATCOMP_DATA", str(parquet_folder))
    assert D.task_rows(name, SMALL) == small_from_hub


def _squad_rows(articles: dict[str, int]) -> list:
    """Questions titled by article, two per paragraph, in the articles' order."""
    return [D.SquadExample(f"{title}-{q}", title, f"Context {q // 2} of {title}.",
                           f"Question {q}?", ["Context"], [0])
            for title, questions in articles.items() for q in range(questions)]


def _squad_blob(examples: list) -> dict:
    data = {}
    for e in examples:
        paragraphs = data.setdefault(e.title, {})
        paragraphs.setdefault(e.context, []).append(
            {"id": e.id, "question": e.question,
             "answers": [{"text": a, "answer_start": s}
                         for a, s in zip(e.answers, e.answer_starts)]})
    return {"version": "1.1", "data": [
        {"title": t, "paragraphs": [{"context": c, "qas": qas} for c, qas in ps.items()]}
        for t, ps in data.items()]}


def test_small_squad_from_the_hub_is_the_local_article_split(tmp_path, monkeypatch, no_folder,
                                                             hub_reachable):
    from flatcomp.lab.config import PAPER

    examples = _squad_rows({f"Article_{k}": 4 + k for k in range(8)})
    folder = tmp_path / "data"
    _write(folder / "squad" / "v1.1" / "dev-v1.1.json", json.dumps(_squad_blob(examples)))
    small = _small().with_overrides(squad={"eval_articles": 3, "train_questions": 20})
    hub_train = _squad_rows({"Train_article": 50})
    calls = []

    def splits(which=("train", "validation")):
        calls.append(tuple(which))
        return tuple({"train": hub_train, "validation": examples}[s] for s in which)

    monkeypatch.setattr(D, "_squad_hub_splits", splits)
    local = load_squad(small, folder)
    hub = load_squad(small)
    assert calls == [("validation",)]
    assert hub == local
    assert "split by article" in hub[2] and "20 of the" in hub[2]
    paper = PAPER.with_overrides(squad={"train_questions": 20})
    train, dev, cut = load_squad(paper)
    assert calls[-1] == ("train", "validation")
    assert {e.title for e in train} == {"Train_article"} and dev == examples
    assert cut == "a seeded subsample of 20 of the 50 training questions is trained on"


def test_squad_rows_agree_with_loading_from_the_hub(monkeypatch, no_folder, hub_reachable):
    """squad_rows sizes the article split from SQUAD_DEV_ARTICLES without reading anything; a
    hub holding a dev set of those articles gives the same sizes, at small and at paper."""
    from flatcomp.lab.config import PAPER, SMALL

    dev = _squad_rows(D.SQUAD_DEV_ARTICLES)
    train = _squad_rows({"Train_article": D.OFFICIAL_ROWS["squad"][0]})
    monkeypatch.setattr(D, "_squad_hub_splits", lambda which=("train", "validation"): tuple(
        {"train": train, "validation": dev}[s] for s in which))
    for profile in (SMALL, SMALL.with_overrides(squad={"eval_articles": 7, "split_seed": 3,
                                                       "train_questions": None}), PAPER):
        loaded_train, loaded_dev, _ = load_squad(profile)
        assert D.squad_rows(profile) == D.task_rows("squad", profile) == (len(loaded_train),
                                                                          len(loaded_dev))
    assert D.squad_rows(PAPER) == D.OFFICIAL_ROWS["squad"]
    assert D.squad_rows(SMALL)[1] == 2192  # the small profile's 10 evaluated articles


def test_real_folder_squad_articles_match_the_table(real_folder):
    blob = json.loads((real_folder / "squad" / "v1.1" / "dev-v1.1.json").read_text())
    assert {a["title"]: sum(len(p["qas"]) for p in a["paragraphs"]) for a in blob["data"]} \
        == D.SQUAD_DEV_ARTICLES


@pytest.mark.parametrize("name", sorted(TASKS))
def test_real_folder_task_rows_agree_with_loading(real_folder, monkeypatch, name):
    from flatcomp.lab.config import SMALL

    monkeypatch.setenv("FLATCOMP_DATA", str(real_folder))
    data = load_task(name, SMALL)
    assert D.task_rows(name, SMALL) == (len(data.train), len(data.dev))
