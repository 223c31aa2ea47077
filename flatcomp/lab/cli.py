"""Command line: list experiments, run one for a profile, report what is stored.

    python -m flatcomp list
    python -m flatcomp run finetune --profile small --task rte mrpc --optimizer adam
    python -m flatcomp run imp --profile small --task mrpc --optimizer sam --round 0 1 2
    python -m flatcomp run finetune --profile small --task mrpc --seeds 0 1 2 3 4
    python -m flatcomp report --profile small
    python -m flatcomp plan --profile small --dry-run
    python -m flatcomp plan --profile small --workers 12 --deadline 540
    python -m flatcomp plan --profile paper --executor slurm --partition gpu --gpus-per-job 1
    python -m flatcomp pack --profile small --out pack --max-mib 56
    python -m flatcomp bench --profile small
    python -m flatcomp ticket --profile small --task rte --mask sam --out rte-sam-ticket.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flatcomp.lab import plan
from flatcomp.lab.config import GLUE_TASKS, PROFILES, Profile, get_profile
from flatcomp.lab.experiments import (EXPERIMENTS, load_or_run, planned_units, ticket_and_origin,
                                      ticket_file, unit_id)
from flatcomp.lab.experiments.lottery import ticket_job_cost, ticket_imp_unit
from flatcomp.lab.results import CorruptResultError, ResultsStore, check_record
from flatcomp.pruning import save_masks, sparsity_report


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"{text!r}: say true or false")
    return text.lower() == "true"


# The unit keys that `run` can select on, and their types.
UNIT_FILTERS = {"task": str, "optimizer": str, "seed": int, "lr": float, "epochs": int,
                "mask": str, "source": str, "round": int, "rewind": _boolean}


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
    planner = sub.add_parser("plan", help="every missing unit of every chapter, most important "
                             "first, on this machine or a Slurm cluster (flatcomp.lab.plan)")
    _plan_arguments(planner)
    packer = sub.add_parser("pack", help="a folder, in parts under a size, from which a machine "
                            "without internet runs the plan (flatcomp.lab.pack)")
    packer.add_argument("--out", type=Path, required=True, help="a new, empty folder")
    packer.add_argument("--max-mib", type=float, default=64, help="size of each part (default 64)")
    packer.add_argument("--experiment", nargs="+", choices=sorted(EXPERIMENTS),
                        help="only these experiments (default: all)")
    packer.add_argument("--workers", type=int, default=12, help="run.sh's default (12)")
    packer.add_argument("--deadline", type=float, default=480, help="run.sh's default (480 s)")
    bench = sub.add_parser("bench", help="every optimizer's step, a masked step and int8 "
                           "inference against their baselines, measured here and stored")
    ticket = sub.add_parser("ticket", help="a task's Adam or SAM winning ticket (IMP with "
                            "rewinding at the lottery schedule), trained or remade if missing")
    ticket.add_argument("--task", required=True, choices=GLUE_TASKS)
    ticket.add_argument("--mask", required=True, choices=("adam", "sam"),
                        help="the optimizer that found it")
    ticket.add_argument("--out", type=Path, help="also write its masks here (safetensors)")
    ticket.add_argument("--dry-run", action="store_true",
                        help="say what would be trained and how long it would take, and stop")
    for p in (run, report, planner, packer, bench, ticket):
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
        if args.command == "plan":
            return _plan(profile, args)
        if args.command == "pack":
            return _pack(profile, args)
        if args.command == "bench":
            return _bench(profile)
        if args.command == "ticket":
            return _ticket(profile, args.task, args.mask, args.out, args.dry_run)
        if args.command == "run":
            return _run(profile, args)
        return _report(profile, width)
    except (ValueError, FileNotFoundError, CorruptResultError) as error:
        print(f"flatcomp: error: {error}", file=sys.stderr)
        return 2


def _run(profile: Profile, args: argparse.Namespace) -> int:
    """Compute the missing units that the filters select. A filter value that matches no unit is
    a ``ValueError`` naming the values there are
    (``flatcomp.lab.experiments.select_or_explain``)."""
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
    of their own place count (:func:`flatcomp.lab.results.check_record`); each bad one is named on
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


def _plan_arguments(planner: argparse.ArgumentParser) -> None:
    planner.add_argument("--experiment", nargs="+", choices=sorted(EXPERIMENTS),
                         help="only these experiments (default: every chapter's)")
    planner.add_argument("--dry-run", action="store_true", help="list every missing unit with "
                         "its device, precision and estimated seconds, and the total; run nothing")
    planner.add_argument("--check", action="store_true",
                         help="run nothing; exit 1 if any unit is missing")
    planner.add_argument("--executor", choices=plan.EXECUTORS, default="local",
                         help="local: processes on this machine (default); debug: in this "
                              "process, one by one; slurm: job arrays through submitit")
    planner.add_argument("--workers", type=int, default=1, help="units at once (local; default 1)")
    planner.add_argument("--deadline", type=float, default=float("inf"), metavar="SECONDS",
                         help="start no unit that cannot finish by then; kill what runs then")
    planner.add_argument("--threads", type=int, help="PyTorch threads per worker")
    planner.add_argument("--pace", type=float, default=1.0, metavar="FACTOR",
                         help="real seconds per estimated second, assumed against the deadline "
                              "until the run's own steps measure it (default 1)")
    planner.add_argument("--remeasure", action="store_true",
                         help="time a training step again instead of using the cached time "
                              "(one measured on a busy machine inflates every estimate)")
    planner.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                         help="these seeds instead of the profile's (extra seeds: 0 1 2 3 4)")
    planner.add_argument("--logs", type=Path, default=Path("plan-logs"),
                         help="submitit's folder: one log per job (default plan-logs/)")
    slurm = planner.add_argument_group("slurm")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-job", type=int, default=1)
    slurm.add_argument("--cpus-per-job", type=int, default=8)
    slurm.add_argument("--hours", type=float, default=24.0, help="time limit of each job")
    slurm.add_argument("--array-parallelism", type=int, default=32,
                       help="tasks of one array at once")
    slurm.add_argument("--jobs-per-task", type=int, default=1,
                       help="plan jobs run one after the other in each array task")


def _plan(profile: Profile, args: argparse.Namespace) -> int:
    """List, check or run every missing unit (:mod:`flatcomp.lab.plan`)."""
    seeds = tuple(args.seeds) if args.seeds else None
    if seeds:
        profile = profile.with_seeds(seeds)
    if args.remeasure:
        plan.forget_step_times()
    steps = plan.make_plan(profile, experiments=args.experiment)
    if args.dry_run or args.check:
        print(plan.describe(profile, steps))
        return 1 if args.check and steps else 0
    print(plan.describe(profile, steps).splitlines()[-1], flush=True)
    slurm = dict(partition=args.partition, gpus_per_job=args.gpus_per_job,
                 cpus_per_job=args.cpus_per_job, hours=args.hours,
                 array_parallelism=args.array_parallelism, jobs_per_task=args.jobs_per_task)
    outcomes = plan.execute(profile, steps, args.executor, args.workers, args.deadline,
                            args.logs, seeds=seeds, threads=args.threads, slurm=slurm,
                            pace=args.pace)
    print(plan.summary(outcomes))
    if args.executor == "slurm":
        return 0
    return 0 if all(o.status == "done" for o in outcomes) else 1


def _pack(profile: Profile, args: argparse.Namespace) -> int:
    from flatcomp.lab import pack

    steps = plan.make_plan(profile, experiments=args.experiment)
    parts = pack.pack(profile, steps, args.out, int(args.max_mib * pack.MiB), args.workers,
                      args.deadline)
    print(plan.describe(profile, steps).splitlines()[-1])
    for part in parts:
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        print(f"{part}: {size / pack.MiB:.1f} MiB")
    print("on the other machine, for each part in turn: python3 <part>/assemble.py --into "
          "/tmp/flatcomp-pack; then bash /tmp/flatcomp-pack/run.sh (see flatcomp/lab/pack.py)")
    return 0


def _bench(profile: Profile) -> int:
    """The bench of :mod:`flatcomp.lab.experiments.efficiency`, measured once (alone on the machine:
    stop other work first) and then read back from ``results/<profile>/bench``."""
    from flatcomp.lab import efficiency_report

    bench = load_or_run(profile, "bench")
    print(efficiency_report.bench_table(bench).to_string())
    print(efficiency_report.inference_table(bench).to_string())
    return 0


def _ticket(profile: Profile, task: str, mask: str, out: Path | None, dry_run: bool) -> int:
    """A task's ticket, saying first what must be trained for it (on a fresh machine, its IMP
    chain) and about how long that takes here."""
    lottery = profile.for_lottery()
    cost = ticket_job_cost(lottery, task, mask)
    if cost:
        chain = ticket_imp_unit(lottery, task, mask)
        seconds = cost * plan.measured_seconds_per_step(lottery)
        print(f"{ticket_file(lottery, task, mask).name} is not in the checkpoint cache: this "
              f"trains IMP rounds 0 to {chain['round']} of {task} with {mask} (rewinding), "
              f"about {seconds / 60:.0f} min on this machine", flush=True)
    elif dry_run:
        print(f"the {task} {mask} ticket is in the checkpoint cache: nothing to train")
    if dry_run:
        return 0
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
