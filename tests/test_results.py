"""The results store: round trip with provenance, atomic writes, compute-once, corrupt files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from flatcomp.lab.results import (SCHEMA, CorruptResultError, ResultsStore, check_record,
                                  read_record)

from conftest import FAKE_COMMIT

PROVENANCE_KEYS = ("git_commit", "versions", "config", "seed", "device", "wall_seconds", "date",
                   "data_cut")
RESULT = {"accuracy": 0.625, "history": [{"epoch": 1, "train_loss": 0.69}], "name": "rte"}


@pytest.fixture
def store(smoke, tmp_path):
    return ResultsStore(smoke, tmp_path / "store")


def _plain(result: dict) -> dict:
    """A loaded result without the environment that loading adds to it."""
    return {k: v for k, v in result.items() if k != "environment"}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_default_root_is_the_results_environment_variable(smoke, tmp_path):
    assert Path(ResultsStore(smoke).root) == tmp_path / "results"


def test_save_then_load_round_trip(store):
    store.save("exp", "rte-adam-seed0", dict(RESULT), seed=0, seconds=1.234)
    assert _plain(store.load("exp", "rte-adam-seed0")) == RESULT
    assert store.path("exp", "rte-adam-seed0") == store.root / "smoke" / "exp" / "rte-adam-seed0.json"
    assert store.units("exp") == ["rte-adam-seed0"]


def test_load_of_a_unit_never_computed_is_none(store):
    assert store.load("exp", "nothing") is None
    assert store.units("exp") == []


def test_saved_record_carries_provenance(store, smoke):
    store.save("exp", "u", dict(RESULT), seed=3, seconds=1.234, cut="half of dev")
    record = read_record(store.path("exp", "u"))
    assert record["schema"] == SCHEMA
    assert (record["experiment"], record["unit"], record["profile"]) == ("exp", "u", "smoke")
    prov = record["provenance"]
    for key in PROVENANCE_KEYS:
        assert key in prov, key
    assert prov["git_commit"] == FAKE_COMMIT
    assert prov["seed"] == 3
    assert prov["wall_seconds"] == 1.23
    assert prov["data_cut"] == "half of dev"
    assert prov["config"] == json.loads(json.dumps(smoke.to_dict()))
    assert prov["versions"]["torch"]
    assert prov["date"].startswith("20")


def test_failed_write_leaves_no_file_and_no_temporary_file(store, monkeypatch):
    def broken_dump(obj, f, **kwargs):
        f.write('{"schema": "flatcomp-res')  # half a file...
        raise OSError("disk full")           # ...then the write dies

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        store.save("exp", "u", dict(RESULT), seed=0, seconds=1.0)
    folder = store.path("exp", "u").parent
    assert _leftovers(folder) == []


def test_failed_overwrite_leaves_the_previous_file_unchanged(store, monkeypatch):
    store.save("exp", "u", dict(RESULT), seed=0, seconds=1.0)
    path = store.path("exp", "u")
    before = path.read_bytes()

    def broken_dump(obj, f, **kwargs):
        f.write("{")
        raise KeyboardInterrupt  # a kill in the middle of the write

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(KeyboardInterrupt):
        store.save("exp", "u", {"accuracy": 0.0}, seed=0, seconds=1.0, overwrite=True)
    assert path.read_bytes() == before
    assert _leftovers(path.parent) == [path.name]


def test_save_refuses_to_overwrite_without_permission(store):
    store.save("exp", "u", dict(RESULT), seed=0, seconds=1.0)
    before = store.path("exp", "u").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        store.save("exp", "u", {"accuracy": 0.0}, seed=0, seconds=1.0)
    assert store.path("exp", "u").read_bytes() == before


def test_save_overwrites_when_asked(store):
    store.save("exp", "u", dict(RESULT), seed=0, seconds=1.0)
    store.save("exp", "u", {"accuracy": 0.0}, seed=0, seconds=1.0, overwrite=True)
    assert _plain(store.load("exp", "u")) == {"accuracy": 0.0}


def test_load_or_run_computes_once_then_reads(store):
    calls = []

    def run():
        calls.append(1)
        return {"score": 0.5 + len(calls), "data_cut": "trained on half of dev"}

    first = store.load_or_run("exp", "u", run, seed=1)
    second = store.load_or_run("exp", "u", run, seed=1)
    assert len(calls) == 1
    assert first == second and _plain(first) == {"score": 1.5}
    record = read_record(store.path("exp", "u"))
    assert record["provenance"]["data_cut"] == "trained on half of dev"
    assert record["provenance"]["seed"] == 1


def test_load_or_run_does_not_store_a_failed_run(store):
    def run():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        store.load_or_run("exp", "u", run)
    assert store.load("exp", "u") is None


BAD_FILES = {"corrupt": '{"schema": "flatcomp-result/1", "result": {"acc',
             "foreign": json.dumps({"accuracy": 0.9, "note": "someone else's file"})}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_raises_naming_the_path_and_is_left_untouched(store, kind):
    path = store.path("exp", "u")
    path.parent.mkdir(parents=True)
    path.write_text(BAD_FILES[kind])
    before = path.read_bytes()
    calls = []

    with pytest.raises(CorruptResultError, match=re.escape(str(path))):
        store.load("exp", "u")
    with pytest.raises(CorruptResultError, match=re.escape(str(path))):
        store.load_or_run("exp", "u", lambda: calls.append(1) or {"accuracy": 0.0})
    with pytest.raises(CorruptResultError, match=re.escape(str(path))):
        store.save("exp", "u", {"accuracy": 0.0}, seed=0, seconds=1.0)
    assert calls == []  # nothing was recomputed over it
    assert path.read_bytes() == before


def test_json_list_is_a_foreign_file(store):
    path = store.path("exp", "u")
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2, 3]")
    with pytest.raises(CorruptResultError, match="not written by flatcomp"):
        store.load("exp", "u")


def test_check_record_accepts_a_record_in_its_own_place(store, smoke):
    store.save("exp", "u", RESULT, seed=0, seconds=1.0)
    record = check_record(store.path("exp", "u"), "exp", "u", smoke.name)
    assert record["result"] == RESULT


@pytest.mark.parametrize("where, field", [(("exp", "v", "smoke"), "unit 'u' (expected 'v')"),
                                          (("other", "u", "smoke"), "experiment 'exp'"),
                                          (("exp", "u", "small"), "profile 'smoke'")])
def test_check_record_names_the_fields_that_differ_from_its_place(store, where, field):
    store.save("exp", "u", RESULT, seed=0, seconds=1.0)
    path = store.path("exp", "u")
    with pytest.raises(CorruptResultError, match=re.escape(str(path))) as info:
        check_record(path, *where)
    assert field in str(info.value)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_check_record_rejects_what_read_record_rejects(store, kind):
    path = store.path("exp", "u")
    path.parent.mkdir(parents=True)
    path.write_text(BAD_FILES[kind])
    with pytest.raises(CorruptResultError, match=re.escape(str(path))):
        check_record(path, "exp", "u", "smoke")


def test_a_copy_without_our_git_is_told_its_commit(monkeypatch):
    """A GPU box's copy of the working tree: $FLATCOMP_GIT_COMMIT wins over whatever git says."""
    from flatcomp.lab import results

    monkeypatch.setenv("FLATCOMP_GIT_COMMIT", "abc1234")
    monkeypatch.setattr(results, "_git", lambda *args: "stale")
    assert results._code_version() == {"git_commit": "abc1234", "git_dirty": None}
    monkeypatch.delenv("FLATCOMP_GIT_COMMIT")
    assert results._code_version()["git_commit"] == "stale"


# ---------------------------------------------------------------- precision, weights, environment

def test_provenance_names_the_precision_and_the_starting_weights(store, smoke):
    from flatcomp.lab.models import start_weights_sha256
    from flatcomp.lab.precision import resolve_precision
    from flatcomp.lab.train import default_device

    store.save("exp", "u", dict(RESULT), seed=0, seconds=1.0)
    prov = read_record(store.path("exp", "u"))["provenance"]
    assert prov["precision"] == resolve_precision(smoke, default_device())
    assert prov["start_weights_sha256"] == start_weights_sha256(smoke)
    assert re.fullmatch(r"[0-9a-f]{64}", prov["start_weights_sha256"])
    # the vector instructions of torch's kernels: two CPUs of one model name can differ
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""


def test_the_tiny_berts_hash_is_its_encoders_and_leaves_the_rng_alone(smoke):
    import torch

    from flatcomp.lab.models import load_model, start_weights_sha256, state_dict_sha256

    torch.manual_seed(123)
    before = torch.get_rng_state()
    sha = start_weights_sha256(smoke)
    assert torch.equal(torch.get_rng_state(), before)
    encoder = {k: v for k, v in load_model(smoke, "mrpc", seed=5).state_dict().items()
               if not k.startswith("classifier.")}
    assert state_dict_sha256(encoder) == sha
    encoder["bert.pooler.dense.bias"] = encoder["bert.pooler.dense.bias"] + 1e-3
    assert state_dict_sha256(encoder) != sha


def test_model_dir_environment_variable_supplies_weights_and_tokenizer(smoke, tmp_path,
                                                                      monkeypatch):
    """$FLATCOMP_MODEL_DIR: a packed run loads this folder's files, and hashes its weights."""
    import hashlib
    import shutil

    import torch
    from safetensors.torch import save_file

    from flatcomp.lab.models import load_tokenizer, model_source, start_weights_sha256

    original = Path(model_source(smoke))
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "config.json"):
        shutil.copy(original / name, folder / name)
    save_file({"w": torch.arange(4.0)}, folder / "model.safetensors")
    monkeypatch.setenv("FLATCOMP_MODEL_DIR", str(folder))
    hub = smoke.with_overrides(model="someone/else-model")
    assert model_source(hub) == model_source(smoke) == str(folder)
    assert load_tokenizer(hub)("a b")["input_ids"][0] == 101  # [CLS] from the folder's vocab
    expected = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert start_weights_sha256(hub) == expected
    monkeypatch.delenv("FLATCOMP_MODEL_DIR")
    assert model_source(smoke) == str(original)


def test_loading_adds_the_environment_and_saving_never_writes_it(store, smoke):
    from flatcomp.lab.models import start_weights_sha256

    returned = store.save("exp", "u", {**RESULT, "environment": {"stale": 1}}, seed=0,
                          seconds=1.0)
    record = read_record(store.path("exp", "u"))
    assert "environment" not in record["result"]
    loaded = store.load("exp", "u")
    assert loaded == returned
    env = loaded["environment"]
    assert env["unit"] == "u"
    assert env["device"] == record["provenance"]["device"].rsplit(", ", 1)[0]
    assert env["precision"] == record["provenance"]["precision"]
    assert env["weights"] == f"sha256 {start_weights_sha256(smoke)[:12]}"


LEGACY_CPU = {"device": "cpu: Intel(R) Xeon(R) Processor, 2 cores",
              "config": {"name": "small", "model": "sentence-transformers/all-MiniLM-L6-v2",
                         "bf16": True}}
LEGACY_GPU = {**LEGACY_CPU, "device": "cuda: NVIDIA H200"}


@pytest.mark.parametrize("prov, result, expected", [
    (LEGACY_GPU, {"device": "cuda"}, ("cuda: NVIDIA H200", "bf16", "fp16-rounded copy")),
    (LEGACY_GPU, {}, ("cuda: NVIDIA H200", "bf16", "fp16-rounded copy")),
    # a GPU's result stored again on the CPU: its own "device" says where it trained
    (LEGACY_CPU, {"device": "cuda"}, ("cuda: NVIDIA H200", "bf16", "fp16-rounded copy")),
    (LEGACY_CPU, {"device": "cpu"}, ("cpu: Intel(R) Xeon(R) Processor", "bf16", "fp32 file")),
    (LEGACY_CPU, {"precision": "fp32"}, ("cpu: Intel(R) Xeon(R) Processor", "fp32", "fp32 file")),
])
def test_legacy_records_environment_is_derived(prov, result, expected):
    from flatcomp.lab.config import SMALL
    from flatcomp.lab.models import start_weights_sha256
    from flatcomp.lab.results import environment

    fp32_file = f"sha256 {start_weights_sha256(SMALL)[:12]}"
    expected = (*expected[:2], fp32_file if expected[2] == "fp32 file" else expected[2])
    env = environment(prov, result)
    assert (env["device"], env["precision"], env["weights"]) == expected


def test_a_new_record_copied_from_another_machine_has_an_unknown_environment():
    from flatcomp.lab.results import environment

    prov = {"device": "cpu: AMD EPYC, 16 cores", "precision": "bf16",
            "start_weights_sha256": "ab" * 32}
    assert environment(prov, {"device": "cpu"}) == {
        "device": "cpu: AMD EPYC", "precision": "bf16", "weights": "sha256 abababababab",
        "batching": "random"}
    assert environment(prov, {"device": "cuda"}) == {
        "device": "cuda", "precision": "unknown", "weights": "unknown", "batching": "random"}


def test_the_batching_is_part_of_the_environment():
    from flatcomp.lab.results import environment

    prov = {"device": "cpu: AMD EPYC, 2 cores", "precision": "fp32",
            "start_weights_sha256": "ab" * 32, "config": {"length_grouped": True}}
    assert environment(prov, {})["batching"] == "length-grouped"
    assert environment({**prov, "config": {}}, {})["batching"] == "random"
    # a result that names its own batching wins over its profile's
    assert environment({**prov, "config": {}}, {"batching": "length-grouped"})["batching"] == \
        "length-grouped"
    assert environment({"device": "cpu: x, 2 cores", "config": {}}, {})["batching"] == "random"
