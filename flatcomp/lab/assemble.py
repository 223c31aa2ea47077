"""Put a packed plan back together (standard library only: it runs before flatcomp is installed).

``python -m flatcomp pack`` writes one folder, or several parts when the whole is over the size a
transfer allows. Each part holds this script, its own pieces and the manifest of the whole:

    python3 part-1/assemble.py --into /tmp/flatcomp-pack     # first transfer
    python3 part-2/assemble.py --into /tmp/flatcomp-pack     # second transfer, same machine

Each call copies its part's pieces into the folder. Once every part has arrived, the pieces are
joined, every file is checked against the sha256 in the manifest (the starting weights too), and
the script says the pack is ready: ``bash /tmp/flatcomp-pack/run.sh``. A file that does not match
stops it with the name of the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def receive(part: Path, into: Path) -> bool:
    """Copy ``part``'s pieces into ``into``; join and check the whole once all parts are there.
    Returns whether the pack is complete."""
    manifest = json.loads((part / "MANIFEST.json").read_text())
    pieces = into / ".pieces"
    pieces.mkdir(parents=True, exist_ok=True)
    for piece in (part / "pieces").iterdir():
        shutil.copyfile(piece, pieces / piece.name)
    (into / f".part-{manifest['part']}").touch()
    arrived = [p for p in range(1, manifest["parts"] + 1) if (into / f".part-{p}").exists()]
    if len(arrived) < manifest["parts"]:
        print(f"part {manifest['part']} of {manifest['parts']} received in {into}; "
              f"waiting for part(s) {sorted(set(range(1, manifest['parts'] + 1)) - set(arrived))}")
        return False
    for name, entry in manifest["files"].items():
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for piece in entry["pieces"]:
                with open(pieces / piece, "rb") as f:
                    shutil.copyfileobj(f, out)
        if sha256(target) != entry["sha256"]:
            sys.exit(f"assemble: {name} does not match its sha256 in the manifest: a part is "
                     "damaged or from another pack; copy the parts again")
    shutil.rmtree(pieces)
    (into / "run.sh").chmod(0o755)
    print(f"pack complete and checked ({len(manifest['files'])} files): bash {into}/run.sh")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, required=True, help="the folder to assemble in")
    args = parser.parse_args(argv)
    receive(Path(__file__).resolve().parent, args.into)
    return 0


if __name__ == "__main__":
    sys.exit(main())
