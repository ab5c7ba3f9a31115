"""Data: corpora (token streams sampled as windows) and tasks (seeded prompt/answer examples), as batches.

- `data.batch`: the Batch every model reads, and the two layouts of a task's examples;
- `data.sources`: where a corpus's text comes from (built in, downloaded, a file) and fitting it to a tokenizer;
- `data.corpus`: Corpus and Records, tokenized once, split, sampled as windows;
- `data.tasks`: the tasks, one module per family (rmt, icll, classify, hmu), by name;
- `data.metrics`: metrics of answers against references.

Data makes batches and reference answers, and turns answers into metrics; it never imports `modules` or
runs a model (scoring a model is evaluation.py's). See docs/design.md#data-and-tasks.
"""
from __future__ import annotations

from .batch import DECODER, ENCODER_DECODER, IGNORE, Batch, pad_rows
from .corpus import VAL_EVERY, VAL_FRACTION, Corpus, Records, Stream
from .metrics import bleu, classification_metrics, distinct_n, rouge_n, sequence_metrics
from .sources import (BUILTINS, CACHE, MAX_DROPPED, REMOTES, SHIPPED, DownloadError, Remote, builtin_records,
                      builtin_text,
                      corpus_name, download, fit_texts, load_text, make_tokenizer, split_records)
from .tasks import (HELD_OUT_EVERY, SYMBOLS, TASKS, Classify, Copy, DataFileError, HMUHierarchical, HMUPattern,
                    HMURandom, HMURepetitive, HMUTemporal, InContextLanguages, LegalBatch, Majority, QuadraticEquations,
                    Retrieval, Reverse, Task, TextTask, classification_batch, classify_ids, curriculum_stages,
                    digests, held_out, make_task, read_table, task_from_config, without_source)

__all__ = ["BUILTINS", "Batch", "CACHE", "Classify", "Copy", "Corpus", "DECODER", "DataFileError", "DownloadError",
           "ENCODER_DECODER", "HELD_OUT_EVERY", "HMUHierarchical", "HMUPattern", "HMURandom", "HMURepetitive",
           "HMUTemporal", "IGNORE", "InContextLanguages", "LegalBatch", "MAX_DROPPED", "Majority",
           "QuadraticEquations", "REMOTES", "Records", "Remote", "Retrieval", "Reverse", "SHIPPED", "SYMBOLS", "Stream",
           "TASKS",
           "Task", "TextTask", "VAL_EVERY", "VAL_FRACTION", "bleu", "builtin_records", "builtin_text",
           "classification_batch", "classification_metrics", "classify_ids", "corpus_name", "curriculum_stages",
           "digests", "distinct_n", "download", "fit_texts", "held_out", "load_text", "make_task", "make_tokenizer",
           "pad_rows", "read_table", "rouge_n", "sequence_metrics", "split_records", "task_from_config",
           "without_source"]
