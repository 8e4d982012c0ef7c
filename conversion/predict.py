"""The `xlmr-predict` command line: a pipeline over a JSON-lines file, streamed, written atomically."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from xlmr_core._atomic import atomic_output
from xlmr_core.errors import clip, short
from xlmr_core.pipelines import TASKS, PipelineError
from xlmr_core.pipelines.batch import RecordError, plain, predict

from .errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    CommandParser,
    ConversionError,
    CorruptFileError,
    DestinationExistsError,
    MissingDependencyError,
    MissingFileError,
    positive_int,
    run_command,
)
from .progress import Progress

PROG = "xlmr-predict"
FRAMEWORKS = ("torch", "tf", "flax")

DESCRIPTION = f"""\
Run the pipeline of TASK over the checkpoint directory DIR on every record of a JSON-lines file.
Each line of IN is a JSON object; its field --field (default "text") is the task's input: a
string, a {{"text", "text_pair"}} or {{"question", "context"}} object, or for text-ranking a
{{"query", "passages"}} object. OUT gets each record with its answer added as --output-field
(embeddings as lists of numbers). Blank lines are skipped. The file is read --batch-size records
at a time (memory stays bounded whatever its size); OUT appears complete or not at all. A
progress bar is drawn on a terminal (stderr).

tasks: {", ".join(sorted(TASKS))}

examples:
  xlmr-predict text-classification ./classifier --input reviews.jsonl --output labelled.jsonl
  xlmr-predict sentence-embedding ./xlm-roberta-base --input docs.jsonl --output vectors.jsonl \\
      --framework flax --batch-size 64 --field body
  xlmr-predict zero-shot-classification ./nli --input in.jsonl --output out.jsonl \\
      --option 'candidate_labels=["sport", "politics"]' --option multi_label=true"""


def _option(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--option takes NAME=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, true/false/null, lists and objects as JSON
    except json.JSONDecodeError:
        value = raw  # anything else is a string
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EXIT_CODES_HELP,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32),
    )
    parser.add_argument("task", metavar="TASK", help="the pipeline task (see the list above)")
    parser.add_argument("directory", metavar="DIR", help="checkpoint directory")
    parser.add_argument("--input", required=True, metavar="IN.jsonl", help="JSON-lines file to read")
    parser.add_argument("--output", required=True, metavar="OUT.jsonl", help="JSON-lines file to write")
    parser.add_argument("--framework", choices=FRAMEWORKS, default="torch", help="default: torch")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="records per batch (default: 32)")
    parser.add_argument("--field", default="text", help="the input field of each record (default: text)")
    parser.add_argument(
        "--output-field", default="answer", help="the field the answer is written to (default: answer)"
    )
    parser.add_argument(
        "--option",
        dest="options",
        action="append",
        type=_option,
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline option (VALUE read as JSON, else as a string); repeatable",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def _pipeline_function(framework: str):
    try:
        if framework == "torch":
            from xlmr_torch import pipeline
        elif framework == "tf":
            from xlmr_tf import pipeline
        else:
            from xlmr_flax import pipeline
    except ImportError as error:
        raise MissingDependencyError(
            f"--framework {framework} needs {framework} installed (pip install 'xlmr[{framework}]'): {error}"
        ) from None
    return pipeline


def _records(path: Path, args, progress: Progress):
    """(line number, record, value) for every non-blank line of `path`, read as it goes."""
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            progress.advance(len(raw))
            where = f"{short(str(path), 100)} line {number}"
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CorruptFileError(f"{where}: not UTF-8 text") from None
            except json.JSONDecodeError as error:
                raise CorruptFileError(
                    f"{where}: not valid JSON ({error.msg} at column {error.colno})"
                ) from None
            if not isinstance(record, dict):
                raise CorruptFileError(
                    f"{where}: a record must be a JSON object, got {type(record).__name__}"
                )
            if args.field not in record:
                raise CorruptFileError(
                    f"{where}: no field {args.field!r} (fields: {clip(', '.join(record), 80)}); pass --field"
                )
            if args.output_field in record:
                raise CorruptFileError(
                    f"{where}: the record already has a field {args.output_field!r}; pass --output-field"
                )
            yield number, record, record[args.field]


def _chunks(records, size: int):
    chunk = []
    for item in records:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if not source.is_file():
        raise MissingFileError(f"--input {short(str(source), 120)}: no such file")
    if target.exists() and not args.overwrite:
        raise DestinationExistsError(
            f"--output {short(str(target), 120)} exists (pass --overwrite to replace it)"
        )
    if target.exists() and os.path.samefile(source, target):
        raise ConversionError("--output must not be the --input file")
    if not target.parent.is_dir():
        raise MissingFileError(f"--output {short(str(target), 120)}: its folder does not exist")
    if not Path(args.directory).is_dir():
        raise MissingFileError(f"DIR {short(str(args.directory), 120)}: no such checkpoint directory")
    pipeline = _pipeline_function(args.framework)
    options = dict(args.options)
    if "batch_size" in options:
        raise ConversionError("pass the batch size as --batch-size, not --option batch_size=")
    pipe = pipeline(args.task, args.directory, batch_size=args.batch_size, **options)
    pipe.resolve({})  # the options' values are checked before the first record is read

    progress = Progress(f"{PROG} {source.name}", source.stat().st_size, quiet=args.quiet)
    count = 0
    with atomic_output(target) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for chunk in _chunks(_records(source, args, progress), args.batch_size):
            lines: list[str] = []
            try:
                answers = predict(pipe, [value for _, _, value in chunk])
                for _, record, _ in chunk:
                    answer = plain(answers[len(lines)], arrays=False)
                    lines.append(json.dumps({**record, args.output_field: answer}, ensure_ascii=False))
            except RecordError as error:
                number = chunk[error.index][0]
                raise CorruptFileError(
                    f"{short(str(source), 100)} line {number}, field {args.field!r}: {error.reason}"
                ) from None
            except PipelineError as error:  # a NaN answer: name the line it was computed for
                number = chunk[len(lines)][0]
                raise CorruptFileError(f"{short(str(source), 100)} line {number}: {error}") from None
            out.write("\n".join(lines) + "\n")
            count += len(chunk)
    progress.close()
    if not args.quiet:
        sys.stderr.write(f"{PROG}: {count} records answered into {target}\n")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (see `xlmr-predict --help`)."""
    # A PipelineError here is an unknown task or option, or a model that does not fit the task.
    return run_command(PROG, build_parser(), run, argv, usage_errors=(PipelineError,))


if __name__ == "__main__":
    sys.exit(main())
