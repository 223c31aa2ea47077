"""Command line: list experiments, run one for a profile, report what is stored.

    python -m flatcomp list
    python -m flatcomp run finetune --profile small --task rte mrpc --optimizer adam
    python -m flatcomp run imp --profile small --task mrpc --optimizer sam --round 0 1 2
    python -m flatcomp run finetune --profile small --task mrpc --seeds 0 1 2 3 4
    python -m flatcomp report --profile small
    python -m flatcomp lottery --profile small --workers 12 --stop-after 480 --kill-after 540
    python -m flatcomp ticket --profile small --task rte --mask sam --out rte-sam-ticket.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flatcomp import schedule
from flatcomp.config import GLUE_TASKS, PROFILES, Profile, get_profile
from flatcomp.experiments import (EXPERIMENTS, load_or_run, planned_units, ticket_and_origin,
                                  unit_id)
from flatcomp.pruning import save_masks, sparsity_report
from flatcomp.results import CorruptResultError, ResultsStore, check_record


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r}: say true or false")
    return text.lower() == "true"


# The unit keys that `run` can select on, and their types.
UNIT_FILTERS = {"task": str, "optimizer": str, "seed": int, "mask": str, "source": str,
                "round": int, "rewind": _boolean}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flatcomp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the experiments and their units per profile")
    run = sub.add_parser("run", help="compute the missing units of an experiment")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                     help="run these seeds instead of the profile's (extra seeds: 0 1 2 3 4); "
                          "--seed then filters among them")
    report = sub.add_parser("report", help="what is stored, per experiment (each file checked; "
                            "exit 1 if any is bad)")
    lottery = sub.add_parser("lottery", help="every lottery experiment, in parallel processes "
                             "(a GPU box): see flatcomp.schedule")
    lottery.add_argument("--workers", type=int, default=4, help="processes at once (default 4)")
    lottery.add_argument("--stop-after", type=float, default=float("inf"), metavar="SECONDS",
                         help="start no job after this")
    lottery.add_argument("--kill-after", type=float, default=float("inf"), metavar="SECONDS",
                         help="kill the jobs still running after this")
    lottery.add_argument("--logs", type=Path, default=Path("lottery-logs"),
                         help="one log per job (default lottery-logs/)")
    ticket = sub.add_parser("ticket", help="a task's Adam or SAM winning ticket (IMP with "
                            "rewinding at the lottery schedule), trained or remade if missing")
    ticket.add_argument("--task", required=True, choices=GLUE_TASKS)
    ticket.add_argument("--mask", required=True, choices=("adam", "sam"),
                        help="the optimizer that found it")
    ticket.add_argument("--out", type=Path, help="also write its masks here (safetensors)")
    for p in (run, report, lottery, ticket):
        p.add_argument("--profile", choices=sorted(PROFILES),
                       help="default: $FLATCOMP_PROFILE, else small")
    for key, kind in UNIT_FILTERS.items():
        run.add_argument(f"--{key}", nargs="+", type=kind, help=f"only units with these {key}s")
    args = parser.parse_args(argv)

    width = max(map(len, EXPERIMENTS))
    try:
        if args.command == "list":
            for name, exp in EXPERIMENTS.items():
                sizes = ", ".join(f"{p}: {len(planned_units(PROFILES[p], name))}"
                                  for p in PROFILES)
                print(f"{name:{width}s} {exp.description} (units: {sizes})")
            return 0
        profile = get_profile(args.profile)
        if args.command == "lottery":
            outcomes = schedule.run_jobs(profile, schedule.lottery_jobs(profile), args.workers,
                                         args.logs, args.stop_after, args.kill_after)
            print(schedule.summary(outcomes))
            return 0 if all(o.status == "done" for o in outcomes) else 1
        if args.command == "ticket":
            return _ticket(profile, args.task, args.mask, args.out)
        if args.command == "run":
            return _run(profile, args)
        return _report(profile, width)
    except (ValueError, FileNotFoundError, CorruptResultError) as error:
        print(f"flatcomp: error: {error}", file=sys.stderr)
        return 2


def _run(profile: Profile, args: argparse.Namespace) -> int:
    """Compute the missing units that the filters select. A filter value that matches no unit is
    a ``ValueError`` naming the values there are (``flatcomp.experiments.select_or_explain``)."""
    if args.seeds is not None:
        profile = profile.with_seeds(args.seeds)
    store = ResultsStore(profile)
    results = load_or_run(profile, args.experiment, store,
                          **{key: getattr(args, key) for key in UNIT_FILTERS})
    print(f"{len(results)} units of {args.experiment} stored under "
          f"{store.root}/{profile.name}/{args.experiment}")
    return 0


def _report(profile: Profile, width: int) -> int:
    """Stored units per experiment against the planned ones. Only files that are whole records
    of their own place count (:func:`flatcomp.results.check_record`); each bad one is named on
    stderr, and any makes the exit status 1."""
    store = ResultsStore(profile)
    bad = 0
    for name in EXPERIMENTS:
        wanted = {unit_id(u) for u in planned_units(profile, name)}
        have, errors = _checked_units(store, name)
        for error in errors:
            print(f"flatcomp: {error}", file=sys.stderr)
        bad += len(errors)
        print(f"{name:{width}s} {len(wanted & have):3d}/{len(wanted)} units stored"
              + (f", {len(errors)} bad files (see above)" if errors else "")
              + (f", missing: {', '.join(sorted(wanted - have)[:6])}"
                 f"{' ...' if len(wanted - have) > 6 else ''}" if wanted - have else ""))
    if bad:
        print(f"flatcomp: {bad} bad results files, not counted: move them away or delete them, "
              "then run the units again", file=sys.stderr)
    return 1 if bad else 0


def _checked_units(store: ResultsStore, experiment: str) -> tuple[set[str], list[str]]:
    """The stored units of ``experiment`` whose files check out, and what is wrong with the
    others."""
    good, errors = set(), []
    for unit in store.units(experiment):
        try:
            check_record(store.path(experiment, unit), experiment, unit, store.profile.name)
            good.add(unit)
        except CorruptResultError as error:
            errors.append(str(error))
    return good, errors


def _ticket(profile: Profile, task: str, mask: str, out: Path | None) -> int:
    lottery = profile.for_lottery()
    masks, origin = ticket_and_origin(lottery, task, mask, seed=lottery.seeds[0])
    print(f"{task} {mask} ticket: {100 * sparsity_report(masks)['sparsity']:.1f}% of the prunable "
          f"weights pruned, by IMP round {origin['imp_round']} (trained on {origin['device']}, "
          f"dev score {origin['round_score']:.4f})")
    if out:
        save_masks(masks, out, {"task": task, "mask": mask, "profile": lottery.name, **origin})
        print(f"masks written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
