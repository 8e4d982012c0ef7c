"""Fine-tune any task in any framework from JSON-lines data: one script, the same result.

    python examples/finetune.py --task text-classification --framework torch \\
        --model xlmr_core/data/xlmr-tiny --train train.jsonl --validation dev.jsonl \\
        --output-dir runs/langid --max-steps 200 --batch-size 16 --learning-rate 1e-4

Tasks and data formats (one JSON object per line, blank lines skipped): see the README section
"Fine-tuning". The task logic (reading, tokenising, aligning labels, windows, masking, metrics)
is `xlmr_core.finetuning`; each framework trains in its own idiom (`xlmr_torch.finetuning`,
`xlmr_tf.finetuning`, `xlmr_flax.finetuning`). A new head is drawn with numpy from --seed, so with
--dropout 0 the three frameworks follow the same loss curve.

OUT gets a `save_pretrained` directory (config with id2label / label2id, tokenizer files) that
every framework's pipeline loads, and `metrics.json` = {"train_loss": [...], "eval": {...}}; it
appears complete or not at all. Under `torchrun` (--framework torch) training is data parallel
(DDP, or FSDP2 with --fsdp): each process takes its slice of every global batch of --batch-size
rows and the loss is the global batch's mean, so the loss curve and the model are those of one
process (tests/torch/test_distributed.py). Resuming, accumulation and bf16 are shown on synthetic
tasks by `torch_finetune.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from conversion.errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    EXIT_OTHER,
    CommandParser,
    ConversionError,
    CorruptFileError,
    DestinationExistsError,
    MissingDependencyError,
    MissingFileError,
    positive_int,
    run_command,
)
from xlmr_core import XLMRobertaTokenizerFast
from xlmr_core.errors import short

PROG = "finetune.py"
FRAMEWORKS = {"torch": "XLMRoberta", "tf": "TFXLMRoberta", "flax": "FlaxXLMRoberta"}


def _non_negative(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if not value >= 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a non-negative number, got {text!r}")
        return value

    return parse


def _probability(text: str) -> float:
    value = _non_negative(float)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from xlmr_core.finetuning import TASKS

    # allow_abbrev=False: a misspelled or shortened option is refused, never guessed.
    parser = CommandParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=EXIT_CODES_HELP,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--framework", required=True, choices=tuple(FRAMEWORKS))
    parser.add_argument("--model", required=True, metavar="DIR", help="checkpoint directory to start from")
    parser.add_argument("--train", required=True, metavar="FILE.jsonl")
    parser.add_argument("--validation", metavar="FILE.jsonl", help="evaluated after training")
    parser.add_argument("--output-dir", required=True, metavar="OUT")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=positive_int, help="optimizer steps (default: 1 epoch)")
    length.add_argument("--epochs", type=positive_int, help="passes over the training data")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="default: 16")
    parser.add_argument("--learning-rate", type=_non_negative(float), default=5e-5, help="default: 5e-5")
    parser.add_argument("--weight-decay", type=_non_negative(float), default=0.0, help="default: 0")
    parser.add_argument("--warmup-steps", type=_non_negative(int), default=0, help="default: 0")
    parser.add_argument("--seed", type=_non_negative(int), default=0, help="default: 0")
    parser.add_argument("--dropout", type=_probability, help="dropout of every layer (default: the config's)")
    parser.add_argument(
        "--max-length", type=positive_int, help="tokens per row (default: 128, or the model's position limit)"
    )
    parser.add_argument(
        "--doc-stride", type=positive_int, default=64, help="question answering (default: 64)"
    )
    parser.add_argument(
        "--fsdp", action="store_true", help="torch under torchrun: FSDP2 fully_shard instead of DDP"
    )
    parser.add_argument("--logging-steps", type=positive_int, default=10, help="default: 10")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return parser


def _framework(name: str):
    """(the framework package, its `finetuning` module)."""
    import importlib

    package = f"xlmr_{name}"
    try:
        return importlib.import_module(package), importlib.import_module(f"{package}.finetuning")
    except ImportError as error:
        raise MissingDependencyError(
            f"--framework {name} needs {name} installed (pip install 'xlmr[{name}]'): {error}"
        ) from None


def _overrides(args, id2label, problem_type) -> dict:
    """The config changes the task needs, given to `from_pretrained`."""
    values: dict = {}
    if id2label is not None:
        values.update(id2label=id2label, label2id={label: i for i, label in id2label.items()})
    if problem_type is not None:
        values["problem_type"] = problem_type
        if problem_type == "regression":
            values["num_labels"] = 1
    if args.task == "question-answering":
        values["num_labels"] = 2
    if args.task == "causal-lm":
        values["is_decoder"] = True
    if args.dropout is not None:
        values.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    return values


def load_model(framework: str, task: str, directory, seed: int, **overrides):
    """The task's model in `framework` from `directory`; parameters the checkpoint lacks (a new
    head) are drawn by `xlmr_core.finetuning.initial_head` from `seed`, the same in every framework."""
    from xlmr_core import XLMRobertaConfig
    from xlmr_core.finetuning import HEAD_CLASS, head_shapes, initial_head

    package, _ = _framework(framework)
    cls = getattr(package, FRAMEWORKS[framework] + HEAD_CLASS[task])
    logger = logging.getLogger(cls.logger_name)
    # from_pretrained would report the head as "newly initialised" by the framework; it is
    # replaced below, so that warning is held back and the head's real origin logged instead.
    quiet = _HeadWarningFilter(
        set(head_shapes(task, XLMRobertaConfig.from_pretrained(directory, **overrides)))
    )
    logger.addFilter(quiet)
    try:
        model, info = cls.from_pretrained(directory, output_loading_info=True, **overrides)
    finally:
        logger.removeFilter(quiet)
    missing = set(info["missing_keys"])
    if missing:
        head = initial_head(task, model.config, seed)
        unknown = sorted(missing - set(head))
        if unknown:
            raise ConversionError(
                f"--model {short(str(directory), 80)} lacks {len(unknown)} weights that are not the "
                f"{task} head (first: {unknown[0]}); start from a complete checkpoint"
            )
        # The whole state goes back in: a Flax model re-initialises what a partial state lacks.
        model.load_canonical_state({**model.canonical_state(), **{k: head[k] for k in missing}})
        logger.warning("%s: new %s head drawn from --seed %d: %s", cls.__name__, task, seed, sorted(missing))
    return model


class _HeadWarningFilter(logging.Filter):
    """Drops `from_pretrained`'s "newly initialised" warning when it lists only head weights."""

    def __init__(self, head: set[str]):
        super().__init__()
        self.head = head

    def filter(self, record: logging.LogRecord) -> bool:
        if "newly initialised" not in record.msg or not isinstance(record.args, tuple):
            return True
        names = record.args[-1]
        return not (isinstance(names, list) and set(names) <= self.head)


class StepLog:
    """A progress bar on a terminal, one line per `every` steps otherwise (stderr)."""

    def __init__(self, total: int, every: int, quiet: bool, stream=None):
        self.total, self.every, self.quiet = total, every, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.live = not quiet and self.stream.isatty()
        self.started = time.perf_counter()

    def __call__(self, step: int, loss: float) -> None:
        if self.quiet:
            return
        rate = (time.perf_counter() - self.started) / step
        if self.live:
            filled = int(30 * step / self.total)
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r[{bar}] {step}/{self.total} loss {loss:.4f} {rate:.2f} s/step")
            if step == self.total:
                self.stream.write("\n")
        elif step % self.every == 0 or step == self.total:
            self.stream.write(f"step {step}/{self.total} loss {loss:.4f} ({rate:.2f} s/step)\n")
        self.stream.flush()


def _read(task: str, path: str, option: str):
    from xlmr_core.finetuning import read_examples

    if not Path(path).is_file():
        raise MissingFileError(f"{option} {short(path, 120)}: no such file")
    examples = read_examples(task, path)
    if not examples:
        raise CorruptFileError(f"{option} {short(path, 120)}: no records")
    return examples


def _prepare(task, examples, tokenizer, args, label2id=None):
    from xlmr_core.finetuning import prepare

    return prepare(
        task, examples, tokenizer, max_length=args.max_length, doc_stride=args.doc_stride, label2id=label2id
    )


def run(args: argparse.Namespace) -> int:
    """The command: the core's errors become the command line's, each with its exit status."""
    from xlmr_core.finetuning import ArgumentError, DataError, FinetuningError
    from xlmr_core.finetuning.loop import TrainingError

    try:
        return _run(args)
    except ArgumentError as error:  # an option's value the data cannot take: named as typed
        raise ConversionError(f"--{error.argument.replace('_', '-')} {error.problem}") from None
    except DataError as error:  # a bad record: the file's fault
        raise CorruptFileError(str(error)) from None
    except TrainingError as error:
        raise ConversionError(str(error), EXIT_OTHER) from None
    except FinetuningError as error:  # an argument the task cannot take
        raise ConversionError(str(error)) from None


def _max_length(directory, requested: int | None) -> int:
    """--max-length, checked against the model's position table (default: 128 or that limit)."""
    from xlmr_core import XLMRobertaConfig

    config = XLMRobertaConfig.from_pretrained(directory)
    # Positions start after the padding id (the reference's position ids), so fewer fit.
    limit = config.max_position_embeddings - config.pad_token_id - 1
    if requested is None:
        return min(128, limit)
    if requested > limit:
        raise ConversionError(
            f"--max-length {requested} exceeds the {limit} positions of the model "
            f"(max_position_embeddings={config.max_position_embeddings})"
        )
    return requested


def _run(args: argparse.Namespace) -> int:
    from xlmr_core.finetuning import label_maps

    if args.fsdp and args.framework != "torch":
        raise ConversionError(f"--fsdp is for --framework torch (under torchrun), not {args.framework}")
    output = Path(args.output_dir)
    if output.exists() and not args.overwrite:
        raise DestinationExistsError(
            f"--output-dir {short(str(output), 120)} exists (pass --overwrite to replace it)"
        )
    if not output.parent.is_dir():
        raise MissingFileError(f"--output-dir {short(str(output), 120)}: its folder does not exist")
    if not Path(args.model).is_dir():
        raise MissingFileError(f"--model {short(args.model, 120)}: no such checkpoint directory")
    args.max_length = _max_length(args.model, args.max_length)
    tokenizer = XLMRobertaTokenizerFast.from_pretrained(args.model)
    train_examples = _read(args.task, args.train, "--train")
    id2label, problem_type = label_maps(args.task, train_examples)
    label2id = None if id2label is None else {label: i for i, label in id2label.items()}
    train = _prepare(args.task, train_examples, tokenizer, args, label2id)
    validation = None
    if args.validation is not None:
        validation = _prepare(
            args.task, _read(args.task, args.validation, "--validation"), tokenizer, args, label2id
        )
    rows = len(train.features["input_ids"])
    if args.batch_size > rows:
        raise ConversionError(f"--batch-size {args.batch_size} is larger than the {rows} training rows")
    max_steps = args.max_steps or (args.epochs or 1) * (rows // args.batch_size)
    if args.warmup_steps > max_steps:
        raise ConversionError(f"--warmup-steps {args.warmup_steps} exceeds the {max_steps} training steps")

    processes = int(os.environ.get("WORLD_SIZE", "1")) if args.framework == "torch" else 1
    if args.batch_size % processes:
        raise ConversionError(
            f"--batch-size {args.batch_size} must be a multiple of the {processes} torchrun processes"
        )
    _, trainer = _framework(args.framework)
    options = {"strategy": "fsdp" if args.fsdp else "ddp"} if args.framework == "torch" else {}
    model = load_model(
        args.framework, args.task, args.model, args.seed, **_overrides(args, id2label, problem_type)
    )
    if args.task == "masked-lm" and tokenizer.mask_token_id != model.config.vocab_size - 1:
        raise ConversionError(
            "masked-lm needs <mask> as the last id of the vocabulary (the tokenizer contract)"
        )
    result = trainer.finetune(
        model,
        train,
        max_steps=max_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        validation=validation,
        log=StepLog(max_steps, args.logging_steps, args.quiet or not _main_process(args)),
        **options,
    )
    _write(output, model, tokenizer, result, args)
    if not args.quiet and _main_process(args):
        sys.stderr.write(f"{PROG}: wrote {output}; eval {json.dumps(result['eval'])}\n")
    return EXIT_OK


def _write(output: Path, model, tokenizer, result: dict, args) -> None:
    """OUT complete or not at all: written beside it, then renamed into place."""
    distributed = args.framework == "torch" and _torch_world() > 1
    if distributed:
        from xlmr_torch.training import barrier, save_pretrained_full

    temporary = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        if distributed:
            save_pretrained_full(model, type(model), temporary)  # every rank gathers; rank 0 writes
            if _torch_rank() != 0:
                barrier()
                return
        else:
            model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        (temporary / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output)
        os.replace(temporary, output)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    if distributed:
        barrier()


def _main_process(args) -> bool:
    """Whether this process reports (rank 0 under torchrun, else the only one)."""
    return args.framework != "torch" or _torch_rank() == 0


def _torch_world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else 1


def _torch_rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


def main(argv=None) -> int:
    return run_command(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
