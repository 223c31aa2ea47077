"""The pack for a GPU box: parts under a size, put back together bit for bit, and a rehearsal of
the whole round trip at the smoke profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from flatcomp.lab import assemble, pack, plan
from flatcomp.lab.results import ResultsStore, read_record

ONE_SECOND = lambda profile: 1.0  # noqa: E731


def test_split_cuts_big_files_at_the_part_size_and_keeps_every_byte(tmp_path):
    files = {}
    for name, size in (("a", 10), ("big", 95), ("c", 7)):
        path = tmp_path / name
        path.write_bytes(os.urandom(size))
        files[name] = path
    parts = pack.split(files, max_bytes=40)
    assert all(sum(p.length for p in part) <= 40 for part in parts)
    assert len(parts) == 3  # 112 bytes in parts of 40
    for name, path in files.items():
        pieces = sorted((p for part in parts for p in part if p.name == name),
                        key=lambda p: p.offset)
        data = b"".join(path.read_bytes()[p.offset:p.offset + p.length] for p in pieces)
        assert data == path.read_bytes()


def test_split_needs_room(tmp_path):
    with pytest.raises(ValueError, match="--max-mib"):
        pack.split({}, max_bytes=0)


def _make_pack(smoke, out: Path, max_bytes: int) -> list[Path]:
    steps = plan.make_plan(smoke, experiments=["data_cards", "lr_sweep"],
                           seconds_per_step=ONE_SECOND)
    return pack.pack(smoke, steps, out, max_bytes, workers=2, deadline=600)


def test_a_pack_over_the_limit_comes_in_parts_that_fit(smoke, tmp_path):
    parts = _make_pack(smoke, tmp_path / "pack", max_bytes=1 << 20)
    assert len(parts) >= 2
    for part in parts:
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        assert size <= 1 << 20, part
    manifest = json.loads((parts[0] / "MANIFEST.json").read_text())
    names = set(manifest["files"])
    assert "run.sh" in names and "code/flatcomp/lab/plan.py" in names
    assert "code/flatcomp/sam.py" in names  # the library too, not only flatcomp.lab
    assert any(n.startswith("code/submitit/") for n in names)
    assert "model/vocab.txt" in names  # the smoke BERT's tokenizer; its weights come from a seed


def test_assemble_waits_for_every_part_and_refuses_a_damaged_one(smoke, tmp_path):
    parts = _make_pack(smoke, tmp_path / "pack", max_bytes=1 << 20)
    into = tmp_path / "assembled"
    assert [assemble.receive(p, into) for p in parts] == [False] * (len(parts) - 1) + [True]
    assert (into / "run.sh").exists() and (into / "code" / "flatcomp" / "lab" / "plan.py").exists()
    damaged = tmp_path / "damaged"
    piece = next((parts[-1] / "pieces").iterdir())
    piece.write_bytes(b"x" + piece.read_bytes()[1:])
    for p in parts[:-1]:
        assemble.receive(p, damaged)
    with pytest.raises(SystemExit, match="does not match its sha256"):
        assemble.receive(parts[-1], damaged)


def test_pack_refuses_a_folder_that_is_not_empty(smoke, tmp_path):
    (tmp_path / "pack").mkdir()
    (tmp_path / "pack" / "old").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        _make_pack(smoke, tmp_path / "pack", max_bytes=1 << 20)


@pytest.mark.slow
def test_smoke_rehearsal_runs_the_packed_plan_and_its_results_come_back(smoke, tmp_path):
    """The round trip a GPU run takes: pack in parts, assemble in a clean folder, run.sh with a
    deadline (outside this checkout: only the pack's code is on the path), unpack the results."""
    parts = _make_pack(smoke, tmp_path / "pack", max_bytes=1 << 20)
    into = tmp_path / "box"
    for part in parts:
        subprocess.run([sys.executable, str(part / "assemble.py"), "--into", str(into)],
                       check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLATCOMP_")}
    env.update(OUT=str(out), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    run = subprocess.run(["bash", str(into / "run.sh"), "--experiment", "data_cards",
                          "lr_sweep", "--threads", "1",
                          "--executor", "debug"],  # in the plan's process: one start, not two
                         cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with tarfile.open(out / "returned-results.tar.gz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "back", filter="data")
    assert len([n for n in names if "/lr_sweep/" in n]) == 4
    record = read_record(tmp_path / "back" / "results" / "smoke" / "lr_sweep" /
                         "mrpc-adam-lr0.001-seed0.json")
    assert record["provenance"]["git_commit"] == pack._commit()
    store = ResultsStore(smoke, tmp_path / "back" / "results")
    assert len(store.units("data_cards")) == 10
