"""The results store: one JSON file per finished unit of work, written atomically, with provenance.

    results/<profile>/<experiment>/<unit>.json

A unit is the smallest piece of an experiment worth keeping (one task x optimizer x seed x round).
A run that was killed resumes where it stopped: finished units are read back, missing ones are
computed. Each unit is seeded on its own, so a resumed run ends with the same numbers as an
uninterrupted one. A file that does not parse, or was not written by flatcomp, raises
:class:`CorruptResultError` naming the file; it is never silently overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch

from flatcomp.lab.config import ENVIRONMENT, REPO_ROOT, Profile, results_dir

SCHEMA = "flatcomp-result/1"
_PACKAGES = ("flatcomp", "torch", "transformers", "numpy", "scipy", "scikit-learn")


class CorruptResultError(RuntimeError):
    """A results file that cannot be trusted; the message names it and says what to do."""


@dataclass
class ResultsStore:
    """Results of one profile under ``root`` (``$FLATCOMP_RESULTS``, else ``results/``)."""

    profile: Profile
    root: Path = field(default_factory=results_dir)

    def path(self, experiment: str, unit: str) -> Path:
        return Path(self.root) / self.profile.name / experiment / f"{unit}.json"

    def load(self, experiment: str, unit: str) -> dict | None:
        """The stored result of a unit, or None if it was never computed. It carries where it
        was computed under the key ``"environment"`` (:func:`with_environment`)."""
        path = self.path(experiment, unit)
        if not path.exists():
            return None
        return with_environment(read_record(path))

    def save(self, experiment: str, unit: str, result: dict, seed: int | None,
             seconds: float, cut: str | None = None, overwrite: bool = False) -> dict:
        """Write ``result`` with its provenance; refuse to replace an existing file unless asked."""
        path = self.path(experiment, unit)
        if path.exists() and not overwrite:
            read_record(path)  # a corrupt file raises here, naming itself
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        result = {k: v for k, v in result.items() if k != ENVIRONMENT}  # derived, never stored
        record = {"schema": SCHEMA, "experiment": experiment, "unit": unit,
                  "profile": self.profile.name, "result": result,
                  "provenance": provenance(self.profile, seed, seconds, cut)}
        atomic_write_json(path, record)
        return with_environment(record)

    def load_or_run(self, experiment: str, unit: str, run: Callable[[], dict],
                    seed: int | None = None) -> dict:
        """The stored result if there is one, else ``run()``'s, stored before it is returned.

        ``run`` may return a ``"data_cut"`` entry: it is moved into the provenance.
        """
        stored = self.load(experiment, unit)
        if stored is not None:
            return stored
        start = time.perf_counter()
        result = run()
        cut = result.pop("data_cut", None)
        return self.save(experiment, unit, result, seed, time.perf_counter() - start, cut)

    def units(self, experiment: str) -> list[str]:
        folder = Path(self.root) / self.profile.name / experiment
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def read_record(path: Path) -> dict:
    """A whole stored record (result and provenance), checked to be one of ours."""
    try:
        record = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptResultError(
            f"results file {path} is corrupt ({error}). It was left untouched: move it away "
            "or delete it to compute this unit again.") from error
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or "result" not in record:
        raise CorruptResultError(
            f"results file {path} was not written by flatcomp (no schema {SCHEMA!r}). It was "
            "left untouched: move it out of the results folder.")
    return record


def check_record(path: Path, experiment: str, unit: str, profile: str) -> dict:
    """:func:`read_record`, also checked to belong where it sits: its ``experiment``, ``unit``
    and ``profile`` fields must say ``results/<profile>/<experiment>/<unit>.json``. A copied or
    renamed file raises :class:`CorruptResultError` naming it and the fields that differ."""
    record = read_record(path)
    expected = {"experiment": experiment, "unit": unit, "profile": profile}
    wrong = [f"{key} {record.get(key)!r} (expected {value!r})" for key, value in expected.items()
             if record.get(key) != value]
    if wrong:
        raise CorruptResultError(
            f"results file {path} is not the record its place says: its {', '.join(wrong)}. It "
            "was left untouched: move it to where its fields say, or delete it to compute this "
            "unit again.")
    return record


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def provenance(profile: Profile, seed: int | None, seconds: float, cut: str | None) -> dict:
    """Where a number came from: code version, packages, configuration, seed, device, the vector
    instructions torch's CPU kernels used (``AVX512``, ``AVX2``: two CPUs of one name can differ),
    the precision it ran in there, the starting weights' sha256, time."""
    return {
        **_CODE_VERSION,
        "versions": {name: _version(name) for name in _PACKAGES},
        "python": platform.python_version(),
        "config": profile.to_dict(),
        "seed": seed,
        "device": device_description(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision": _precision(profile),
        "start_weights_sha256": _start_weights_sha256(profile),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(seconds, 2),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data_cut": cut,
    }


def _code_version() -> dict:
    """The commit and whether tracked files differ from it. A copy of the working tree whose own
    git is absent or not ours (a GPU box) is told its commit in ``$FLATCOMP_GIT_COMMIT``; then
    whether it was dirty is unknown."""
    if os.environ.get("FLATCOMP_GIT_COMMIT"):
        return {"git_commit": os.environ["FLATCOMP_GIT_COMMIT"], "git_dirty": None}
    commit = _git("rev-parse", "HEAD")
    return {"git_commit": commit,
            "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def device_description() -> str:
    """The machine a unit runs on: ``cuda: <GPU name>`` or ``cpu: <model name>, <n> cores``."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {_cpu_name()}, {os.cpu_count()} cores"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _precision(profile: Profile) -> str:
    """The profile's precision resolved on the default device: what its fine-tunes ran in."""
    from flatcomp.lab.precision import resolve_precision
    from flatcomp.lab.train import default_device

    return resolve_precision(profile, default_device())


def _start_weights_sha256(profile: Profile) -> str | None:
    """:func:`flatcomp.lab.models.start_weights_sha256`, or None where it cannot be computed (a hub
    model out of reach): a finished result is never lost to its fingerprint."""
    from flatcomp.lab.models import start_weights_sha256

    try:
        return start_weights_sha256(profile)
    except Exception:  # noqa: BLE001 - any failure to fetch or hash the weights
        return None


# ---- a stored result's environment: what a comparison between results must hold fixed
# (ENVIRONMENT, the key a loaded result carries it under, and its fields are in flatcomp.lab.config)

# Before provenance named the precision and the weights, every record ran bf16 autocast
# (``config.bf16``), and all GPU work ran in one session on this GPU, which received MiniLM's
# weights rounded to fp16 and widened back to fp32 (a 64 MiB transfer limit).
_LEGACY_GPU = "cuda: NVIDIA H200"
_LEGACY_GPU_WEIGHTS = "fp16-rounded copy"


def environment(provenance: dict, result: dict | None = None) -> dict[str, str]:
    """Where a result was computed, in what a comparison must hold fixed: the device ("cpu:
    <model>" or "cuda: <name>"), the precision ("bf16" or "fp32"), the starting weights
    ("sha256 <first 12 hex digits>") and the batching ("length-grouped" or "random"). Records
    older than those provenance fields are described from what is known of them
    (:func:`_legacy_environment`)."""
    if "precision" not in provenance:
        return {**_legacy_environment(provenance, result), "batching": "random"}
    batching = _batching(provenance, result)
    trained, stored = _trained_on(result), provenance.get("device", "unknown")
    if trained and not stored.startswith(trained):  # copied from another machine's record
        return {"device": trained, "precision": "unknown", "weights": "unknown",
                "batching": batching}
    sha = provenance.get("start_weights_sha256")
    return {"device": _device_kind(stored),
            "precision": _own_precision(result) or provenance["precision"],
            "weights": f"sha256 {sha[:12]}" if sha else "unknown", "batching": batching}


def _batching(provenance: dict, result: dict | None) -> str:
    """The result's own ``batching``, else its profile's (``length_grouped``), else random."""
    own = result.get("batching") if isinstance(result, dict) else None
    if own in ("length-grouped", "random"):
        return own
    return "length-grouped" if provenance.get("config", {}).get("length_grouped") else "random"


def with_environment(record: dict) -> dict:
    """A stored record's result with its unit id and :func:`environment` under ``"environment"``
    (a result that is not a dict comes back as it is)."""
    result = record["result"]
    if not isinstance(result, dict):
        return result
    return {**result, ENVIRONMENT: {"unit": record.get("unit"),
                                    **environment(record.get("provenance", {}), result)}}


def _legacy_environment(provenance: dict, result: dict | None) -> dict[str, str]:
    """A record from before provenance named the precision and the weights: bf16 (unless the
    result names its own precision); a GPU-trained one (its result's ``device``, or else its
    provenance's) started from the fp16-rounded copy, a CPU one from the fp32 file as installed
    now."""
    config = provenance.get("config", {})
    precision = _own_precision(result) or ("bf16" if config.get("bf16") else "fp32")
    stored = provenance.get("device", "unknown")
    if (_trained_on(result) or stored.split(":")[0]) == "cuda":
        device = _device_kind(stored) if stored.startswith("cuda") else _LEGACY_GPU
        return {"device": device, "precision": precision, "weights": _LEGACY_GPU_WEIGHTS}
    return {"device": _device_kind(stored), "precision": precision,
            "weights": _legacy_cpu_weights(config.get("name"), config.get("model"))}


def _legacy_cpu_weights(profile_name: str | None, model: str | None) -> str:
    """The starting weights of an old CPU record: those its profile's model loads now."""
    from flatcomp.lab.config import PROFILES

    if profile_name not in PROFILES or not model:
        return "unknown"
    sha = _start_weights_sha256(PROFILES[profile_name].with_overrides(model=model))
    return f"sha256 {sha[:12]}" if sha else "unknown"


def _trained_on(result: dict | None) -> str | None:
    """The device type a result says it trained on (its ``device`` field), if it says."""
    device = result.get("device") if isinstance(result, dict) else None
    return device.split(":")[0] if isinstance(device, str) and device else None


def _own_precision(result: dict | None) -> str | None:
    """A precision the result names itself (the bf16 check's units override the profile's)."""
    precision = result.get("precision") if isinstance(result, dict) else None
    return precision if precision in ("bf16", "fp32") else None


def _device_kind(device: str) -> str:
    """``"cpu: <model name>"`` or ``"cuda: <name>"``, without the core count."""
    return device.rsplit(", ", 1)[0] if device.endswith(" cores") else device


# The code that computes a result is the code imported when the process started: record its
# commit then, not when the result is saved (a long run may outlive several commits).
_CODE_VERSION = _code_version()
