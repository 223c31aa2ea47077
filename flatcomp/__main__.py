"""Command line: list experiments, run one for a profile, report what is stored.

    python -m flatcomp list
    python -m flatcomp run finetune --profile small --task rte mrpc --optimizer adam
    python -m flatcomp run imp --profile small --task mrpc --optimizer sam --round 0 1 2
    python -m flatcomp report --profile small
"""

from __future__ import annotations

import argparse
import sys

from flatcomp.config import PROFILES, get_profile
from flatcomp.experiments import EXPERIMENTS, get_experiment, load_or_run, select, unit_id
from flatcomp.results import CorruptResultError, ResultsStore


# The unit keys that `run` can select on, and their types.
UNIT_FILTERS = {"task": str, "optimizer": str, "seed": int, "mask": str, "source": str,
                "round": int}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flatcomp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the experiments and their units per profile")
    run = sub.add_parser("run", help="compute the missing units of an experiment")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    report = sub.add_parser("report", help="what is stored, per experiment")
    for p in (run, report):
        p.add_argument("--profile", choices=sorted(PROFILES),
                       help="default: $FLATCOMP_PROFILE, else small")
    for key, kind in UNIT_FILTERS.items():
        run.add_argument(f"--{key}", nargs="+", type=kind, help=f"only units with these {key}s")
    args = parser.parse_args(argv)

    width = max(map(len, EXPERIMENTS))
    try:
        if args.command == "list":
            for name, exp in EXPERIMENTS.items():
                sizes = ", ".join(f"{p}: {len(exp.units(PROFILES[p]))}" for p in PROFILES)
                print(f"{name:{width}s} {exp.description} (units: {sizes})")
            return 0
        profile = get_profile(args.profile)
        store = ResultsStore(profile)
        if args.command == "run":
            results = load_or_run(profile, args.experiment, store,
                                  **{key: getattr(args, key) for key in UNIT_FILTERS})
            print(f"{len(results)} units of {args.experiment} stored under "
                  f"{store.root}/{profile.name}/{args.experiment}")
            return 0
        for name, exp in EXPERIMENTS.items():
            wanted = {unit_id(u) for u in exp.units(profile)}
            have = set(store.units(name))
            print(f"{name:{width}s} {len(wanted & have):3d}/{len(wanted)} units stored"
                  + (f", missing: {', '.join(sorted(wanted - have)[:6])}"
                     f"{' ...' if len(wanted - have) > 6 else ''}" if wanted - have else ""))
        return 0
    except (ValueError, FileNotFoundError, CorruptResultError) as error:
        print(f"flatcomp: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
