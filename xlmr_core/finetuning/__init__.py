"""Fine-tuning, framework-neutral: read a task's JSON-lines file, prepare model inputs and targets,
batch them in a seeded order, draw a new head from the seed and score the model's outputs.

Each framework's trainer (`xlmr_torch.finetuning`, `xlmr_tf.finetuning`, `xlmr_flax.finetuning`)
feeds these batches to its model, so the three see the same data in the same order.
"""

from .batching import batches
from .data import HEAD_CLASS, TASKS, ArgumentError, DataError, FinetuningError, read_examples
from .heads import head_shapes, initial_head
from .metrics import entities, entity_scores, metrics, normalize_answer, squad_scores
from .prepare import label_maps, prepare
from .task_data import TaskData

__all__ = [
    "HEAD_CLASS",
    "TASKS",
    "ArgumentError",
    "DataError",
    "FinetuningError",
    "TaskData",
    "batches",
    "entities",
    "entity_scores",
    "head_shapes",
    "initial_head",
    "label_maps",
    "metrics",
    "normalize_answer",
    "prepare",
    "read_examples",
    "squad_scores",
]
