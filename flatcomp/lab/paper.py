"""The numbers we compare against, as published (Na, Mehta & Strubell, Findings of EMNLP 2022,
and Chen et al., NeurIPS 2020, for the BERT-base references). These are the paper's facts, kept
apart from our measurements, which only ever come from ``results/``. All scores in percent.
"""

from __future__ import annotations

# Chen et al. (2020): full BERT-base dev scores and the sparsity of the winning ticket per task.
FULL_BERT_BASE = {"mnli": 82.4, "qqp": 90.2, "stsb": 88.4, "qnli": 89.1, "mrpc": 85.2,
                  "rte": 66.2, "sst2": 92.1, "cola": 54.5, "squad": 88.1}
TICKET_SPARSITY = {"mnli": 0.7, "qqp": 0.9, "stsb": 0.5, "qnli": 0.7, "mrpc": 0.5, "rte": 0.6,
                   "sst2": 0.6, "cola": 0.5, "squad": 0.4, "wnli": 0.9}

# IMP with rewinding at the reference sparsity: (Adam, SAM).
IMP_REWIND = {"mnli": (82.3, 83.2), "qqp": (83.0, 85.4), "stsb": (83.3, 84.1),
              "qnli": (88.6, 89.4), "mrpc": (81.5, 83.6), "rte": (63.3, 65.0),
              "sst2": (92.2, 92.9), "cola": (47.7, 49.5), "squad": (86.9, 87.8)}

# Table 2: (mask, optimizer) -> (mean, std) over 3 seeds.
MASK_X_OPTIMIZER = {
    ("rte", 0.6): {("random", "adam"): (54.9, 1.3), ("random", "sam"): (55.4, 1.6),
                   ("adam", "adam"): (63.7, 0.9), ("adam", "sam"): (61.7, 2.4),
                   ("sam", "adam"): (70.2, 1.9), ("sam", "sam"): (71.8, 1.7)},
    ("mrpc", 0.5): {("random", "adam"): (70.8, 0.8), ("random", "sam"): (70.1, 0.2),
                    ("adam", "adam"): (84.2, 0.1), ("adam", "sam"): (85.3, 0.5),
                    ("sam", "adam"): (85.3, 1.3), ("sam", "sam"): (85.7, 0.8)},
}

# Accuracy drop after dynamic int8 quantization: (Adam, SAM); SQuAD in F1 points.
INT8_DROP = {"mnli": (6.18, 1.21), "rte": (10.83, 2.17), "squad": (9.07, 4.28),
             "sst2": (1.53, 0.69)}

# CoFi at 95% sparsity: (Adam teacher, SAM teacher).
COFI_95 = {"sst2": (90.2, 91.3), "qnli": (85.9, 86.9), "qqp": (90.0, 90.1), "mnli": (80.2, 80.6)}

# Ticket transfer (poster Figures 8 and 9): row = source task of the ticket, column = target task,
# in the order of TRANSFER_TASKS, differences in points on the target's dev score. Keys:
# ("ticket", o): SAM ticket minus Adam ticket, both fine-tuned with optimizer o (Figure 8);
# ("optimizer", m): SAM minus Adam fine-tuning, both on the m-found ticket (Figure 9).
# Transcribed from the poster; the means of rows (Figure 8) and columns (Figure 9) agree with
# its printed averages to their rounding (tests/test_reports.py).
TRANSFER_TASKS = ("mnli", "qqp", "stsb", "qnli", "mrpc", "rte", "sst2", "cola")
_TRANSFER_ROWS = {
    ("ticket", "sam"): """
        0.1  0.3  0.9  0.8  2.2  0.0 -0.6  1.3
       -0.3  0.1  1.9  0.1  5.2  1.8 -0.1  2.4
        0.0  0.4  0.1 -0.3  0.2  3.2 -0.1  2.3
        0.2  0.2  0.6  0.3 -1.2 -1.4  0.3  6.1
       -0.4 -0.1  0.3 -0.7  1.0  1.8  0.0 -0.1
        0.5 -0.1  0.7  0.1  3.9 10.5 -0.1 -2.7
        0.1 -0.2  0.5  0.1 -0.7  0.0  0.5 -3.6
        0.1 -0.1 -0.1 -0.5  0.5 -1.1  0.1 -0.2""",
    ("ticket", "adam"): """
        0.2 -0.0  0.5  0.2  0.7  2.5  0.2 -1.6
       -0.5  0.2  0.5 -1.3  3.4  1.1  0.8 -6.3
       -0.3  0.0  0.1 -0.3 -1.2  0.7  0.2 -0.4
       -0.2  0.0 -0.1  0.3  0.2  0.4  0.5  0.6
       -0.2  0.1  0.2  0.1  1.0  1.4 -0.3 -0.8
       -0.3 -0.1  0.4  0.0  2.0  7.2  0.2  1.0
        0.2 -0.1  0.4 -0.4  0.5  1.8  0.2  0.6
       -0.1  0.0  0.1 -0.0 -1.2 -1.1  0.5  1.9""",
    ("optimizer", "sam"): """
        0.6  0.3  0.6  0.1 -8.1 -7.2  1.1  2.2
        0.4  0.3  1.1 -0.8 -1.5  1.8  0.7  5.9
        0.6  0.1  0.5 -0.8  0.7  1.1  0.5  1.7
        0.2 -0.0  0.1  0.6 -4.4 -3.2  1.3 -1.8
        0.2 -0.0  0.3 -0.9  1.5  0.4  1.3  0.5
        0.5  0.2  0.6  0.1 -1.2 -2.5  0.3 -1.4
        0.1  0.1  0.2 -0.2 -3.7 -5.4  0.8 -1.9
        0.1 -0.2 -0.1 -0.4  2.7 -6.1  0.9 -1.1""",
    ("optimizer", "adam"): """
        0.7 -0.1  0.1 -0.6 -9.6 -4.7  1.9 -0.7
        0.2  0.4 -0.3 -2.1 -3.2  1.1  1.6 -2.8
        0.2 -0.2  0.4 -0.8 -0.7 -1.4  0.8 -1.0
       -0.3 -0.2 -0.6  0.6 -2.9 -1.4  1.4 -7.3
        0.4  0.2  0.2 -0.1  1.5  0.0  0.9 -0.3
       -0.3  0.1  0.2 -0.0 -3.2 -5.8  0.7  2.4
        0.2  0.2  0.1 -0.6 -2.5 -3.6  0.6  2.2
       -0.1 -0.1 -0.0 -0.0  1.0 -6.1  1.3  1.0""",
}
TRANSFER: dict[tuple[str, str], dict[tuple[str, str], float]] = {
    panel: {(source, target): float(value)
            for source, row in zip(TRANSFER_TASKS, rows.split("\n")[1:])
            for target, value in zip(TRANSFER_TASKS, row.split())}
    for panel, rows in _TRANSFER_ROWS.items()}
