"""Every task by name: `make_task(name, ...)`, `task_from_config(tcfg)`, and the RMT curriculum over the
number of segments (`curriculum_stages`). A family of tasks is a module of this package; a new task joins by
its class and one entry in TASKS.
"""
from __future__ import annotations

from .base import HELD_OUT_EVERY, SYMBOLS, Task, digests, held_out
from .classify import Classify, DataFileError, Majority, classification_batch, classify_ids, read_table
from .hmu import HMUHierarchical, HMUPattern, HMURandom, HMURepetitive, HMUTemporal, without_source
from .icll import InContextLanguages, LegalBatch
from .rmt import Copy, QuadraticEquations, Retrieval, Reverse, TextTask

TASKS = {"copy": Copy, "reverse": Reverse, "retrieval": Retrieval, "sqeq": QuadraticEquations,
         "majority": Majority, "icll": InContextLanguages, "hmu_random": HMURandom, "hmu_temporal": HMUTemporal,
         "hmu_hierarchical": HMUHierarchical, "hmu_repetitive": HMURepetitive, "classify": Classify}


def make_task(name: str, task_len: int = 0, task_vocab: int = 10, n_keys: int = 4, **options) -> Task:
    """Task `name`; task_len 0 leaves the task's own default (8 symbols; classify from a file: the longest
    example); `options` are a task's own (classify: data, text_column, text_pair_column, label_column,
    block_size)."""
    if name not in TASKS:
        raise ValueError(f"task = {name!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[name](**({"task_len": task_len} if task_len else {}), task_vocab=task_vocab, n_keys=n_keys,
                       **options)


def curriculum_stages(task: Task, seg_len: int) -> list[Task]:
    """The RMT paper's curriculum over the number of segments (Bulatov et al. 2022, section 4: training
    starts on one segment and the number grows): for each segment count below the full task's, the longest
    smaller task whose sequence fits in that many segments of seg_len, then the task itself; a count no
    smaller task fills exactly is skipped. ValueError when the task cannot shrink."""
    if not task.size_field:
        raise ValueError(f"task {task.name!r} has one size only, so it has no curriculum; tasks that can shrink: "
                         f"{sorted(n for n, t in TASKS.items() if t.size_field)}")
    smaller, stages = task.smaller(), []
    for segments in range(1, -(-task.seq_len // seg_len)):
        fits = [t for t in smaller if t.seq_len <= segments * seg_len]
        if fits and fits[-1] not in stages:
            stages.append(fits[-1])
    return stages + [task]


def task_from_config(tcfg, block_size: int | None = None) -> Task:
    """The task a TrainConfig names, with the fields it reads; `block_size`: the model's, the most a length
    taken from the data may be (classify)."""
    if tcfg.task not in TASKS:
        raise ValueError(f"task = {tcfg.task!r} is not valid; choose one of {sorted(TASKS)}")
    return TASKS[tcfg.task].from_config(tcfg, block_size)




__all__ = ["Classify", "Copy", "DataFileError", "HELD_OUT_EVERY", "HMUHierarchical", "HMUPattern", "HMURandom",
           "HMURepetitive", "HMUTemporal", "InContextLanguages", "LegalBatch", "Majority", "QuadraticEquations",
           "Retrieval", "Reverse", "SYMBOLS", "TASKS", "Task", "TextTask", "classification_batch", "classify_ids",
           "curriculum_stages", "digests", "held_out", "make_task", "read_table", "task_from_config", "without_source"]
