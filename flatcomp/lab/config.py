"""Profiles: one typed config object per scale of the experiments.

    smoke  a tiny randomly initialised BERT and a few hundred shipped rows per task (CI, seconds)
    small  all-MiniLM-L6-v2 (a 6-layer BERT, 22.7M parameters) on a 2-core CPU (the book's results)
    paper  bert-base-uncased with the paper's hyper-parameters (a GPU, e.g. Colab)

A profile is passed explicitly to every function that needs one. The only switch outside code is
the environment variable ``FLATCOMP_PROFILE``, read by :func:`get_profile` when no name is given.
Every way in which ``small`` departs from ``paper`` is written in its ``cuts`` with the reason.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

PRECISIONS = ("auto", "bf16", "fp32")  # a profile's choices; "auto" resolves per device
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# The paper's schedule: 3 epochs on the large GLUE tasks, 10 on the small ones (best epoch kept).
_PAPER_EPOCHS = {"mnli": 3, "qqp": 3, "qnli": 3, "sst2": 3,
                 "stsb": 10, "mrpc": 10, "rte": 10, "cola": 10, "wnli": 10, "squad": 2}


# SQuAD settings a profile may change in its ``squad`` dict (see :meth:`Profile.squad_settings`):
#   eval_articles    a local dev set (no train split) is split by article: this many articles,
#                    drawn with split_seed, are evaluated on, the others trained on
#   train_questions  a seeded subsample of the training questions (None: all of them)
#   imp_rounds       IMP rounds of imp_rate each (4 x 0.1: the chapter's curve up to 40%)
SQUAD_DEFAULTS: dict[str, Any] = {"eval_articles": 10, "split_seed": 0, "train_questions": None,
                                  "imp_rounds": 4, "imp_rate": 0.1}


@dataclass(frozen=True)
class Profile:
    """Everything an experiment needs to know about its scale. Per-task values are dicts."""

    name: str
    model: str                        # "tiny-bert", or a Hugging Face model id
    tasks: tuple[str, ...]            # the tasks every analysis of the book runs on
    seeds: tuple[int, ...]
    lr: dict[str, float]              # peak learning rate per task (linear decay, no warm-up)
    epochs: dict[str, int]            # epochs per task; the best epoch on dev is kept
    max_length: int = 128
    batch_size: int = 32
    train_size: dict[str, int] = field(default_factory=dict)  # subsample of train, if cut
    eval_size: dict[str, int] = field(default_factory=dict)   # subsample of dev, if cut
    shipped_data: bool = False        # True: read the rows shipped in flatcomp/lab/smoke_data
    # "auto": bf16 autocast where the device multiplies bf16 fast, else fp32 (see
    # :func:`flatcomp.lab.precision.resolve_precision`); "bf16" or "fp32" forces one.
    precision: str = "auto"
    # Batches of rows of similar length (:func:`flatcomp.lab.data.batch_order`), evaluation sorted
    # by length: the same science with a fraction of the padding. Records made without it (every
    # record before it existed) are their own environment.
    length_grouped: bool = False
    sam_rho: float = 0.05
    weight_decay: float = 0.0         # the paper sets 0 to remove an L2 confound
    imp_rounds: int = 9               # pruning steps: round k trains at sparsity k * imp_rate
    imp_rate: float = 0.1             # fraction of the *original* prunable weights per round
    imp_rewind: tuple[bool, ...] = (True, False)  # IMP curves with rewinding, and without
    squad_max_length: int = 384      # tokens per SQuAD window (question, context and specials)
    squad_doc_stride: int = 128      # tokens shared by consecutive windows of one context
    squad_batch_size: int = 16
    # Tasks trained on a seeded half of their dev set and evaluated on the other half (SQuAD:
    # its dev set split by article) whichever source supplies the rows, the local data folder or
    # the hub, so that the rows and the data cut do not depend on where they are read from.
    # Empty: the dev set is split only where a local folder has no train split (the hub's train
    # split is used as it is). See :func:`flatcomp.lab.data.load_task`.
    dev_split_tasks: tuple[str, ...] = ()
    # SQuAD beyond length, stride and batch (see :data:`SQUAD_DEFAULTS`): the article split of a
    # local dev set, a cap on the training questions, the IMP schedule. Applied by
    # :meth:`squad_settings`; the SQuAD experiments run at :meth:`for_squad`.
    squad: dict[str, Any] = field(default_factory=dict)
    cuts: dict[str, str] = field(default_factory=dict)        # what differs from paper, and why
    # The tasks of the full-model and int8 comparisons (the paper's Table 1 and its int8 table),
    # in the plan's order after ``tasks``; empty: ``tasks`` only. See :meth:`dense_tasks`.
    glue_tasks: tuple[str, ...] = ()
    # The setup chapter's Adam baselines: the paper's two smallest tasks, kept even where a task
    # is dropped from ``tasks`` (its baseline shows why).
    baseline_tasks: tuple[str, ...] = ("rte", "mrpc")
    # The ticket-transfer grid (every ordered pair) is cut to these of ``tasks``; empty: no cut.
    transfer_tasks: tuple[str, ...] = ()
    # Changes for the lottery-ticket experiments (IMP, tickets, transfer), the book's costliest:
    # e.g. ``{"epochs": {"default": 3}}``. Applied by :meth:`for_lottery`.
    lottery: dict[str, Any] = field(default_factory=dict)
    # The CoFi chapter's units and schedule (see :mod:`flatcomp.lab.experiments.cofi_runs`): tasks,
    # target sparsities and seeds (each in priority order), pruning and fine-tune epochs...
    cofi: dict[str, Any] = field(default_factory=dict)
    # The units ``python -m flatcomp plan`` computes when no experiment is named: experiment ->
    # filters on its units (``{}``: all of them). Empty: every unit of every experiment. A
    # profile whose whole plan does not fit its machine keeps here the units that decide its
    # verdicts; naming an experiment (``--experiment``) still runs all of its units.
    plan_scope: dict[str, dict[str, tuple]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of "
                             f"{', '.join(map(repr, PRECISIONS))}")

    def in_plan(self, experiment: str, unit: dict[str, Any]) -> bool:
        """Whether the plan computes ``unit`` of ``experiment`` when no experiment is named
        (:attr:`plan_scope`)."""
        if not self.plan_scope:
            return True
        filters = self.plan_scope.get(experiment)
        return filters is not None and all(unit.get(k) in v for k, v in filters.items())

    def lr_for(self, task: str) -> float:
        return self.lr.get(task, self.lr["default"])

    def epochs_for(self, task: str) -> int:
        return self.epochs.get(task, self.epochs["default"])

    def dense_tasks(self) -> tuple[str, ...]:
        """The tasks fine-tuned by every optimizer and quantized: ``tasks``, then the rest of
        ``glue_tasks``."""
        return tuple(dict.fromkeys(self.tasks + self.glue_tasks))

    def transfer_grid(self) -> tuple[str, ...]:
        """The tasks whose tickets the transfer experiment moves to each other."""
        return tuple(t for t in self.tasks if not self.transfer_tasks or t in self.transfer_tasks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **changes: Any) -> "Profile":
        """A copy with some fields changed, e.g. ``profile.with_overrides(seeds=(0,))``."""
        return replace(self, **changes)

    def with_seeds(self, seeds: Sequence[int]) -> "Profile":
        """A copy that runs these seeds instead of its own (extra seeds: ``(0, 1, 2, 3, 4)``),
        in its lottery experiments too. Raises ``ValueError`` unless they are distinct
        non-negative integers, at least one."""
        seeds = tuple(seeds)
        if not seeds:
            raise ValueError("no seeds given: name at least one, e.g. 0 1 2")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
        if bad:
            raise ValueError("seeds must be non-negative integers, not "
                             + ", ".join(map(repr, bad)))
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed {', '.join(map(str, repeated))} given twice: name each seed "
                             "once")
        lottery = {**self.lottery, "seeds": seeds} if "seeds" in self.lottery else self.lottery
        return replace(self, seeds=seeds, lottery=lottery)

    def squad_settings(self) -> dict[str, Any]:
        """:data:`SQUAD_DEFAULTS` updated with this profile's ``squad``; an unknown key raises
        ``ValueError``."""
        unknown = sorted(set(self.squad) - set(SQUAD_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown SQuAD setting(s) {', '.join(map(repr, unknown))} in "
                             f"profile {self.name!r}: choose among {', '.join(SQUAD_DEFAULTS)}")
        return {**SQUAD_DEFAULTS, **self.squad}

    def for_squad(self) -> "Profile":
        """The profile the SQuAD experiments run at: batch size and maximum length are the
        ``squad_`` ones (idempotent: a SQuAD profile maps to itself)."""
        return replace(self, batch_size=self.squad_batch_size, max_length=self.squad_max_length)

    def for_lottery(self) -> "Profile":
        """The profile the lottery-ticket experiments run at: this one with ``lottery`` applied."""
        return replace(self, **self.lottery, lottery={})


SMOKE = Profile(
    name="smoke",
    model="tiny-bert",
    tasks=("mrpc", "stsb"),
    seeds=(0, 1),
    lr={"default": 1e-3},
    epochs={"default": 3},
    max_length=64,
    batch_size=16,
    shipped_data=True,
    precision="auto",
    imp_rounds=2,
    cuts={
        "model": "a 2-layer, 64-wide BERT with random weights, so that CI trains in seconds",
        "data": "the few hundred real rows per task shipped in flatcomp/lab/smoke_data",
        "seeds": "2 seeds: enough to exercise mean and std",
        "tasks": "MRPC and STS-B: one classification and one regression task exercise every "
                 "code path in a fraction of the time",
        "lottery": "IMP, the tickets and their transfer train 1 epoch on the first seed: the "
                   "lottery chapter trains about 60 models",
        "cofi": "CoFi on MRPC at 95% and 50%, one seed, 4 pruning epochs of 32 steps (batch 8) "
                "with the log alphas and lambdas at 0.1 and 0.05, 1 fine-tune epoch",
    },
    lottery={"epochs": {"default": 1}, "seeds": (0,)},
    squad_max_length=128,
    squad_doc_stride=32,
    squad={"eval_articles": 2, "split_seed": 2, "imp_rounds": 2},  # seed 2: 118 train, 46 eval
    cofi={"tasks": ("mrpc",), "sparsities": (0.95, 0.5), "seeds": (0,),
          "prune_epochs": {"default": 4}, "warmup_epochs": {"default": 1},
          "finetune_epochs": 1, "max_length": 64, "batch_size": 8, "lr": 1e-3,
          "finetune_lr": 1e-3, "gate_lr": 0.1, "lambda_lr": 0.05, "alpha_layer": 0.9,
          "alpha_ce": 0.1, "sparsity_epsilon": 0.01, "evals_per_epoch": 2,
          "latency_repeats": 2},
)

SMALL = Profile(
    name="small",
    model="sentence-transformers/all-MiniLM-L6-v2",
    tasks=("mrpc",),
    seeds=(0, 1, 2),
    # Calibrated by the `lr_sweep` experiment (results/small/lr_sweep, shown in the setup chapter):
    # the paper's 2e-5 leaves MiniLM-L6 at the majority class on RTE.
    lr={"default": 5e-5, "rte": 1e-4, "squad": 1e-4},
    epochs={"default": 6, "squad": 2},
    max_length=128,
    batch_size=32,
    train_size={"sst2": 8000, "qqp": 8000},
    eval_size={"qqp": 5000},
    glue_tasks=("sst2", "rte", "mnli", "qnli", "qqp", "stsb", "cola"),
    precision="auto",
    length_grouped=True,
    dev_split_tasks=("qqp", "mnli", "qnli", "squad"),  # the local folder's split, from the hub too
    imp_rounds=6,
    cuts={
        "model": "all-MiniLM-L6-v2 (6 layers, 384 wide, 22.7M parameters) instead of bert-base "
                 "(110M): a CPU fine-tunes it in minutes instead of hours",
        "tasks": "the analyses of the SAM and quantization chapters (flatness, loss surfaces, "
                 "the Hessian's prediction of the int8 damage) run on MRPC only: each costs CPU "
                 "hours per task. The full-model and int8 comparisons cover all eight GLUE "
                 "tasks, MNLI, QQP and QNLI on a seeded half of their dev sets (the other half "
                 "evaluates; no local train split). The lottery chapter trains MRPC, SST-2, RTE, "
                 "STS-B and CoLA at its own shorter schedule, CoFi SST-2, QNLI and MRPC",
        "lr": "5e-5 instead of 2e-5: at 2e-5 Adam is still improving on MRPC at the last epoch "
              "and ends below its best at 5e-5 (lr_sweep experiment)",
        "epochs": "6 epochs on every task instead of 10 on small and 3 on large tasks: 10 "
                  "would cost 2/3 more CPU time on the small tasks. Adam's dev accuracy on MRPC "
                  "is flat over the last epochs, but two of SAM's three seeds peak at the last "
                  "one, so the budget experiment trains both for 10 epochs on MRPC to see "
                  "whether six stopped SAM before its plateau",
        "train_size": "SST-2 trains on 8,000 of its 67,349 sentences and QQP on 8,000 of the "
                      "20,215 pairs of its dev half; QQP is evaluated on 5,000 of the other "
                      "20,215 (CPU budget: a 6-epoch fine-tune on 8,000 rows is about 1,500 "
                      "steps)",
        "precision": "\"auto\": bf16 autocast where the CPU or GPU multiplies bf16 "
                "matrices fast (AMX or AVX512-BF16 on a CPU, any recent GPU), fp32 elsewhere "
                "(a CPU without them runs bf16 several times slower than fp32); the bf16_check "
                "experiment measures the difference in dev score and training loss",
        "imp_rounds": "6 IMP rounds (60% sparsity: the largest reference sparsity of the five "
                      "lottery tasks, one round past MRPC's 50%) instead of the paper's 9 (to "
                      "90%)",
        "lottery": "IMP, the tickets and their transfer run on MRPC, SST-2, RTE, STS-B and CoLA "
                   "and train 3 epochs at max length 64 and learning rate 1e-4 (the dense "
                   "fine-tunes: 6 epochs at 128 and 5e-5; 64 truncates about a fifth of MRPC's "
                   "pairs): one IMP run to 60% at the full schedule costs about 45 min of a 2-core "
                   "CPU with Adam and 1.5 h with SAM. The rate is doubled because at 5e-5 SAM's "
                   "dense MRPC model was barely above the majority class after 3 epochs (SAM "
                   "converges more slowly, see the SAM chapter); IMP's dense round 0 is trained "
                   "at the same schedule, so every comparison in the lottery chapter is within "
                   "it. Ticket transfer is cut to four of the five tasks (MRPC, SST-2, RTE, CoLA: "
                   "48 transfers; STS-B's 32 would add about four CPU hours), IMP without "
                   "rewinding to MRPC, RTE and CoLA (STS-B's and SST-2's: about three more). "
                   "Where the runs were made, and which comparisons that splits, is on the "
                   "appendix page",
        "cofi": "CoFi prunes for 4 epochs on SST-2 (its 8,000 training rows: 1,000 steps, the "
                "target warmed up over the first 2), 8 on QNLI (a seeded half of dev, 2,731 "
                "rows: about 690 steps, warm-up 3) and 10 on MRPC (warm-up 4), then fine-tunes "
                "the compact model for 2 epochs, instead of CoFi's 20 pruning epochs (warm-up "
                "2) on large tasks and 100 (warm-up 20) on small ones, each followed by 20 "
                "fine-tune epochs: a distillation step of MiniLM on SST-2 takes about 0.6 s on "
                "the 2-core CPU, so CoFi's schedule would take about 1.7 h per SST-2 unit "
                "(10,000 steps) and over 2 h per MRPC unit, for 48 units. The epochs "
                "of QNLI and MRPC are raised so that the gates get a few hundred steps after "
                "the warm-up. CoFi's rates are kept (log alpha and lambda 0.01; the model at "
                "MiniLM's calibrated 5e-5 for pruning and fine-tune), with distillation weights "
                "0.9 (layers) and 0.1 (logits), one pair of CoFi's grid, not a search over it. "
                "Once the target has warmed up the gated model is a candidate four times an "
                "epoch, as CoFi evaluates every few hundred steps. "
                "Three seeds, and MRPC after SST-2 and QNLI; the CPU plan runs SST-2 at 70% "
                "only (see plan)",
        "plan": "the plan on the 2-core CPU computes only what decides a claim, in this "
                "order: Adam and SAM at their own tuned rates on MRPC and SST-2 (5 seeds), "
                "every model measured for int8, bit widths, flatness and one-shot compression "
                "(C1, C6); IMP with a dense pooler on MRPC and SST-2, 3 chains per optimizer, "
                "and their mask x optimizer table (C2, C3); MNLI's tuned models (3 seeds), "
                "ticket transfer between MRPC and SST-2 (C4) and CoFi on SST-2 at 70% with 3 "
                "seeds per teacher (C5); SQuAD with 3 seeds and int8 (C7); then the rho sweep "
                "of the flatness-and-compressibility chapter. In fp32 (a CPU without fast "
                "bf16) that is tens of hours of the 2-core CPU, so it runs over many sessions "
                "and writes each unit when done (`plan --dry-run` gives the hours left). The "
                "rest of the "
                "book's units leave the CPU plan for the paper profile (a GPU or Slurm), each "
                "listed once in its chapter's cut table, and their stored results stay as "
                "the faithful variant: RTE, which MiniLM-L6 learns only a few points beyond "
                "its majority class at these budgets; the lottery on RTE, STS-B and CoLA; "
                "transfer beyond MRPC and SST-2; the dense QQP, QNLI, STS-B and CoLA "
                "fine-tunes; CoFi at other sparsities and on QNLI and MRPC; SQuAD IMP, SWA "
                "and bit widths. Naming an experiment (--experiment) still runs all of it",
        "squad": "SQuAD v1.1 has no local train split: its dev set is split by article (seed "
                 "0), 10 articles (2,192 questions) to evaluate and 38 to train, of whose "
                 "8,378 questions a seeded 2,000 are trained on, for the paper's 2 epochs, in "
                 "windows of 256 tokens overlapping by 64 instead of 384 and 128: a MiniLM "
                 "training step at batch 16 on real windows took about 5 s at 256 and 7.6 s "
                 "at 384 on the busy 2-core CPU (one thread; SAM 9.8 and 13.8 s), and at 256 "
                 "89% of the questions still fit in one window and every answer lies wholly "
                 "inside some window. A 2-epoch fine-tune then costs about 25 min with Adam "
                 "and 45 min with SAM on the 2-core CPU instead of about 2.2 and 4 h for 4,000 "
                 "questions at 384. Learning rate 1e-4, not "
                 "calibrated (MiniLM's GLUE rate doubled for the short schedule, as in the "
                 "lottery cut), instead of the paper's 3e-5 for bert-base. IMP prunes 4 "
                 "rounds of 10% (to 40%)",
    },
    squad_max_length=256,
    squad_doc_stride=64,
    squad={"eval_articles": 10, "train_questions": 2000},
    lottery={"tasks": ("mrpc", "sst2", "rte", "stsb", "cola"),
             "transfer_tasks": ("mrpc", "sst2", "rte", "cola"),
             "epochs": {"default": 3}, "max_length": 64, "lr": {"default": 1e-4}},
    cofi={"tasks": ("sst2", "qnli", "mrpc"), "sparsities": (0.95, 0.7, 0.9, 0.5),
          "seeds": (0, 1, 2), "prune_epochs": {"default": 4, "qnli": 8, "mrpc": 10},
          "warmup_epochs": {"default": 2, "qnli": 3, "mrpc": 4}, "finetune_epochs": 2,
          "max_length": 128, "lr": 5e-5, "finetune_lr": 5e-5, "gate_lr": 0.01,
          "lambda_lr": 0.01, "alpha_layer": 0.9, "alpha_ce": 0.1, "sparsity_epsilon": 0.01,
          "evals_per_epoch": 4},
    # The decisive plan: the smallest design that decides each claim on the 2-core CPU, in the
    # order the plan runs it (cuts["plan"] says what is left out, and why).
    plan_scope={
        "tuned_lr": {}, "tuned": {},                                        # C1, C6
        "imp_encoder": {"task": ("mrpc", "sst2")},                          # C2: 3 chains
        "tickets_encoder": {"task": ("mrpc", "sst2")},                      # C3
        "transfer_encoder": {"source": ("mrpc", "sst2"), "task": ("mrpc", "sst2")},  # C4
        # C5: CoFi's teachers (seeds 0 and 1 are stored), then seeds 1 and 2 of SST-2 at 70%
        "finetune": {"task": ("sst2",), "optimizer": ("adam", "sam"), "seed": (2,)},
        "cofi_more": {"task": ("sst2",), "sparsity": (0.7,)},
        "squad_more": {"optimizer": ("adam", "sam")},                       # C7: seeds 1, 2
        "squad_more_quant": {"optimizer": ("adam", "sam")},
        "rho_sweep": {},                                                    # chapter 9
    },
)

PAPER = Profile(
    name="paper",
    model="bert-base-uncased",
    tasks=("mnli", "qqp", "stsb", "qnli", "mrpc", "rte", "sst2", "cola"),
    seeds=(0, 1, 2),
    lr={"default": 2e-5, "squad": 3e-5},
    epochs={"default": 3, **_PAPER_EPOCHS},
    max_length=128,
    batch_size=32,
    precision="auto",
    length_grouped=True,
    imp_rounds=9,  # the dense fine-tune and 9 pruned rounds: 0%, 10%, ..., 90% sparsity
    # CoFi's schedule: 20 pruning epochs (warm-up 2) on large tasks, 100 (warm-up 20) on small
    # ones, then 20 fine-tune epochs of the pruned model; distillation 0.9 layers + 0.1 logits.
    cofi={"tasks": ("sst2", "qnli", "mnli", "qqp", "mrpc"), "sparsities": (0.95, 0.7, 0.9, 0.5),
          "seeds": (0, 1, 2), "prune_epochs": {"default": 100, "sst2": 20, "qnli": 20,
                                               "mnli": 20, "qqp": 20},
          "warmup_epochs": {"default": 20, "sst2": 2, "qnli": 2, "mnli": 2, "qqp": 2},
          "finetune_epochs": 20, "max_length": 128, "lr": 2e-5, "finetune_lr": 3e-5,
          "gate_lr": 0.01, "lambda_lr": 0.01, "alpha_layer": 0.9, "alpha_ce": 0.1,
          "sparsity_epsilon": 0.01, "evals_per_epoch": 4},
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SMOKE, SMALL, PAPER)}
DEFAULT_PROFILE = "small"


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``; by default the one named by ``$FLATCOMP_PROFILE``, else small."""
    name = name or os.environ.get("FLATCOMP_PROFILE") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)} "
                         "(argument or the FLATCOMP_PROFILE environment variable)")
    return PROFILES[name]


# ---- a stored result's environment: the key the results store adds to a loaded result
# (:func:`flatcomp.lab.results.with_environment`) and its fields, here so that the tables can read
# them without importing the store

ENVIRONMENT = "environment"  # the key ResultsStore.load adds to a result (never written)
ENVIRONMENT_FIELDS = ("device", "precision", "weights", "batching")


# ---- where things live (environment, not experiment configuration) ----

REPO_ROOT = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    """``$FLATCOMP_RESULTS``, else ``results/`` in the repository."""
    return Path(os.environ.get("FLATCOMP_RESULTS") or REPO_ROOT / "results")


def cache_dir() -> Path:
    """Fine-tuned checkpoints (outside git): ``$FLATCOMP_CACHE``, else ``~/.cache/flatcomp``."""
    return Path(os.environ.get("FLATCOMP_CACHE") or Path.home() / ".cache" / "flatcomp")


def data_dir() -> Path | None:
    """The local data folder named by ``$FLATCOMP_DATA``, or None (then the hub is used)."""
    value = os.environ.get("FLATCOMP_DATA")
    return Path(value) if value else None
