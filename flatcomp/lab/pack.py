"""A GPU run in one step: everything a machine without internet needs to run the plan, in parts
that each fit a transfer limit.

    python -m flatcomp pack --profile small --out pack --max-mib 56

writes ``pack/part-1``, ``pack/part-2``, ... Together they hold the code (flatcomp, and submitit,
which the plan runs through), the stored results of the profile (so that only what is missing
runs), the data files of the tasks the plan's units use, and the starting weights with their
tokenizer: bit for bit the files this machine trains from, so that both devices start from the
same fp32 weights. A file larger than a part (MiniLM's weights, 87 MiB) is cut into pieces.

On the other machine, each part is handed over in turn and assembled (:mod:`flatcomp.lab.assemble`,
which checks every file's sha256 once all parts are in), then ``run.sh`` runs the plan with a
deadline and leaves ``returned-results.tar.gz`` (in ``$OUT`` if that is set): every results file
the run wrote. Back here, ``tar -xzkf returned-results.tar.gz`` in the repository adds them to
``results/`` (``-k``: a file already here is never replaced).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flatcomp.lab import assemble
from flatcomp.lab.config import REPO_ROOT, Profile, data_dir
from flatcomp.lab.data import TASKS
from flatcomp.lab.models import model_source
from flatcomp.lab.plan import Step
from flatcomp.lab.results import ResultsStore

MiB = 1 << 20
PACKAGE = Path(__file__).resolve().parents[1]  # all of flatcomp: the library and flatcomp.lab


@dataclass(frozen=True)
class Piece:
    """``length`` bytes of ``source`` from ``offset``: all of a small file, or a cut of a big one."""

    name: str        # the file's path inside the assembled pack
    source: Path
    offset: int
    length: int

    @property
    def file_name(self) -> str:
        return f"{self.name.replace('/', '__')}.{self.offset:012d}"


def pack(profile: Profile, steps: list[Step], out: Path, max_bytes: int, workers: int = 12,
         deadline: float = 480) -> list[Path]:
    """Write the parts of a pack for running ``steps`` elsewhere; returns the part folders."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: pack into a new folder (or delete it)")
    files = packed_files(profile, steps)
    files["run.sh"] = _write_run_script(out, profile, workers, deadline)
    parts = split(files, max_bytes - 64 * 1024)  # room for the manifest and this script
    manifest = {"files": {name: {"sha256": assemble.sha256(path), "pieces": []}
                          for name, path in files.items()}, "parts": len(parts)}
    for part in parts:
        for piece in part:
            manifest["files"][piece.name]["pieces"].append(piece.file_name)
    folders = []
    for number, part in enumerate(parts, start=1):
        folder = out / f"part-{number}"
        (folder / "pieces").mkdir(parents=True)
        for piece in part:
            _copy_piece(piece, folder / "pieces" / piece.file_name)
        shutil.copyfile(Path(assemble.__file__), folder / "assemble.py")
        (folder / "MANIFEST.json").write_text(json.dumps({**manifest, "part": number},
                                                         indent=1, sort_keys=True))
        folders.append(folder)
    (out / "run.sh.template").unlink()
    return folders


def packed_files(profile: Profile, steps: list[Step]) -> dict[str, Path]:
    """What the pack holds, by its path in the pack: code, results, data, weights."""
    files = {f"code/{p.relative_to(PACKAGE.parent)}": p for p in _python_files(PACKAGE)}
    files.update({f"code/{p.relative_to(_submitit().parent)}": p
                  for p in _python_files(_submitit())})
    root = Path(ResultsStore(profile).root)
    files.update({f"results/{p.relative_to(root)}": p
                  for p in sorted((root / profile.name).rglob("*.json"))})
    files.update(_data_files(profile, steps))
    source = Path(model_source(profile))
    if source.is_dir():
        weights = profile.model != "tiny-bert"  # the tiny BERT is built from a seed
        files.update({f"model/{p.name}": p for p in sorted(source.iterdir())
                      if p.is_file() and (weights or not p.name.endswith(".safetensors"))})
    return files


def _python_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _submitit() -> Path:
    import submitit

    return Path(submitit.__file__).resolve().parent


def _data_files(profile: Profile, steps: list[Step]) -> dict[str, Path]:
    """The local data files of every task a step of the plan uses (none for shipped rows)."""
    if profile.shipped_data:
        return {}
    folder = data_dir()
    if folder is None:
        raise FileNotFoundError("pack needs the data here: set FLATCOMP_DATA to the folder "
                                "holding glue/, glue_hf_parquet/ and squad/ (see README.md)")
    tasks = {t for s in steps for key in ("task", "source") for t in s.job.filters.get(key, [])}
    wanted = []
    for task in sorted(tasks):
        if task == "squad":
            wanted.append(folder / "squad" / "v1.1")
        else:
            wanted += [folder / "glue" / TASKS[task].glue_dir, folder / "glue_hf_parquet" / task]
    return {f"data/{p.relative_to(folder)}": p for d in wanted if d.is_dir()
            for p in sorted(d.rglob("*")) if p.is_file()}


def split(files: dict[str, Path], max_bytes: int) -> list[list[Piece]]:
    """The files as pieces in parts of at most ``max_bytes`` each, in order; a file that does not
    fit in what is left of a part is cut at the part's end and goes on in the next."""
    if max_bytes <= 0:
        raise ValueError("the size limit leaves no room for any data: pass a larger --max-mib")
    parts: list[list[Piece]] = [[]]
    room = max_bytes
    for name, path in files.items():
        size, offset = path.stat().st_size, 0
        while True:
            length = min(size - offset, room)
            parts[-1].append(Piece(name, path, offset, length))
            offset, room = offset + length, room - length
            if offset == size:
                break
            parts.append([])
            room = max_bytes
    return parts


def _copy_piece(piece: Piece, target: Path) -> None:
    with open(piece.source, "rb") as f, open(target, "wb") as out:
        f.seek(piece.offset)
        out.write(f.read(piece.length))


RUN_SCRIPT = """#!/usr/bin/env bash
# The packed plan of the {profile} profile, written by `python -m flatcomp pack` at {commit}.
# WORKERS, DEADLINE (seconds) and PYTHON may be set; extra arguments go to `flatcomp plan`.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/code${{PYTHONPATH:+:$PYTHONPATH}}" PYTHONUNBUFFERED=1
export FLATCOMP_DATA="$here/data" FLATCOMP_MODEL_DIR="$here/model"
export FLATCOMP_RESULTS="$here/results" FLATCOMP_CACHE="${{FLATCOMP_CACHE:-$here/cache}}"
export FLATCOMP_GIT_COMMIT={commit}
touch "$here/.started"
"${{PYTHON:-python3}}" -m flatcomp plan --profile {profile} --executor local \\
    --workers "${{WORKERS:-{workers}}}" --deadline "${{DEADLINE:-{deadline}}}" \\
    --logs "$here/plan-logs" "$@"
status=$?
mkdir -p "${{OUT:-$here}}"
cd "$here" && find results -name '*.json' -newer .started -print0 \\
    | tar --null -czf "${{OUT:-$here}}/returned-results.tar.gz" -T -
echo "results written: ${{OUT:-$here}}/returned-results.tar.gz"
exit $status
"""


def _write_run_script(out: Path, profile: Profile, workers: int, deadline: float) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.sh.template"
    path.write_text(RUN_SCRIPT.format(profile=profile.name, commit=_commit(), workers=workers,
                                      deadline=int(deadline)))
    return path


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"
