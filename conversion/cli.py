"""The `xlmr-convert` command line: convert, from-fairseq, verify, inspect, export."""

from __future__ import annotations

import argparse
import sys

from xlmr_core.checkpoint import FLOAT_DTYPES, FORMATS

from .errors import (
    EXIT_CODES_HELP,
    EXIT_OK,
    CommandParser,
    run_command,
)

PROG = "xlmr-convert"

DESCRIPTION = """\
Move XLM-RoBERTa checkpoints between formats, import fairseq releases, check that every
installed framework gives the same numbers on a checkpoint, and export one for serving.

A checkpoint is a directory: config.json, model.safetensors (or an index and shards), and
the tokenizer files. Progress goes to stderr; results to stdout."""

CONVERT_HELP = """\
Read the checkpoint directory SRC (model.safetensors, sharded safetensors, pytorch_model.bin,
tf_model.h5 or flax_model.msgpack, in that order of preference) and write DST in the shared
format, optionally also in the reference project's per-framework files (--format).
config.json and the tokenizer files are carried along. Tensors are streamed one at a time.

examples:
  xlmr-convert convert ./xlmr-tf ./xlmr                      # tf_model.h5 -> model.safetensors
  xlmr-convert convert ./xlmr ./xlmr-fp16 --dtype float16 --max-shard-size 500MB
  xlmr-convert convert ./xlmr ./xlmr-all --format torch,tf,flax"""

FAIRSEQ_HELP = """\
Import an original fairseq XLM-R release directory (model.pt, dict.txt,
sentencepiece.bpe.model) into the shared format, MLM head and tokenizer files included.
model.pt is read by a restricted unpickler that rebuilds tensors and plain containers only:
no pickled code runs, and a file that needs anything else is refused.

examples:
  xlmr-convert from-fairseq ./xlmr.base ./xlm-roberta-base
  xlmr-convert from-fairseq ./xlmr.large ./xlm-roberta-large --dtype float16"""

VERIFY_HELP = """\
Load DIR in every installed framework (torch, tf, flax), run the same tokenised
multilingual batch through each head the checkpoint has, and print max |diff| for every
framework pair and against a float64 PyTorch run. PASS/FAIL at the documented tolerance
(1e-5 in float32 on CPU, 1e-4 with --device gpu, times max(1, max |output|)); exit status
1 on FAIL. Without
tokenizer files in DIR, deterministic random token ids are used (and the output says so).
Without DIR, the checkpoint bundled with xlmr (a tiny pretrained XLM-RoBERTa) is verified.

examples:
  xlmr-convert verify
  xlmr-convert verify ./xlm-roberta-base
  xlmr-convert verify ./xlm-roberta-base --device gpu --frameworks torch flax"""

INSPECT_HELP = """\
Summarise a checkpoint directory without loading any framework: config, parameter count,
dtypes, weight files and shards, heads present, missing or unexpected keys, and every tensor
that holds NaN or infinite values (such weights load; they are named here).

examples:
  xlmr-convert inspect ./xlm-roberta-base
  xlmr-convert inspect ./xlm-roberta-base --json"""


EXPORT_HELP = """\
Export the checkpoint directory DIR as a deployable artifact in the new directory OUT, with
dynamic batch and sequence axes (inputs input_ids and attention_mask, outputs the head's
fields), config.json and the tokenizer files beside it. Each artifact is reloaded with the
tool that serves it and compared with the eager model at three shapes; one line per artifact
gives its path, size and max |diff| (bound 1e-5 x max(1, max |output|)). OUT appears
complete or not at all.

formats:
  onnx          model.onnx (torch.onnx dynamo exporter; onnxruntime checks it), needs xlmr[torch,onnx];
                --quantize int8 adds model_quantized.onnx (onnxruntime dynamic quantization)
  torch_export  model.pt2, a torch.export program for torch.export.load
  torchscript   model.pt, traced, for torch.jit.load
  saved_model   a TensorFlow SavedModel, needs xlmr[tf]
  tflite        model.tflite, needs xlmr[tf]

examples:
  xlmr-convert export ./xlm-roberta-base ./onnx --format onnx
  xlmr-convert export ./classifier ./onnx-int8 --format onnx --quantize int8
  xlmr-convert export ./xlm-roberta-base ./pt2 --format torch_export --head ForMaskedLM"""


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _format_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown format {text!r}; choose from {', '.join(FORMATS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG, description=DESCRIPTION, epilog=EXIT_CODES_HELP, formatter_class=_formatter
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing but results and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    commands.required = True

    def command(name, help_text, summary):
        sub = commands.add_parser(
            name, help=summary, description=help_text, epilog=EXIT_CODES_HELP, formatter_class=_formatter
        )
        sub.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print nothing but results and errors",
        )
        return sub

    def writing_options(sub):
        sub.add_argument("--dtype", choices=list(FLOAT_DTYPES), help="cast floating tensors (default: keep)")
        sub.add_argument(
            "--max-shard-size",
            metavar="SIZE",
            help="split the weights into shards of at most SIZE (e.g. 2GB, 500MB)",
        )
        sub.add_argument(
            "--format",
            dest="formats",
            action="append",
            type=_format_list,
            default=[],
            metavar="FMT[,FMT]",
            help=f"also write the reference's per-framework files: {', '.join(FORMATS[1:])} "
            "(repeat the option or separate with commas)",
        )
        sub.add_argument("--overwrite", action="store_true", help="replace DST if it exists")

    convert = command("convert", CONVERT_HELP, "convert a checkpoint directory to the shared format")
    convert.add_argument("src", metavar="SRC", help="checkpoint directory to read")
    convert.add_argument("dst", metavar="DST", help="directory to create")
    writing_options(convert)

    fairseq = command("from-fairseq", FAIRSEQ_HELP, "import an original fairseq XLM-R release")
    fairseq.add_argument("src", metavar="SRC", help="fairseq directory with model.pt and dict.txt")
    fairseq.add_argument("dst", metavar="DST", help="directory to create")
    writing_options(fairseq)

    verify = command("verify", VERIFY_HELP, "compare every installed framework on a checkpoint")
    verify.add_argument(
        "directory", metavar="DIR", nargs="?", help="checkpoint directory (default: the bundled xlmr-tiny)"
    )
    verify.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where to run (default: cpu)")
    verify.add_argument(
        "--frameworks",
        nargs="+",
        choices=["torch", "tf", "flax"],
        metavar="FW",
        help="only these (torch, tf, flax)",
    )
    verify.add_argument("--tolerance", type=float, help="override the documented tolerance")
    verify.add_argument(
        "--padded",
        action="store_true",
        help="run the frameworks on the padded batch (default: unpadded=True, real tokens only)",
    )

    from .export import FORMATS as EXPORT_FORMATS
    from .export import QUANTIZATIONS

    export = command("export", EXPORT_HELP, "export a checkpoint for serving (ONNX, torch.export, ...)")
    export.add_argument("directory", metavar="DIR", help="checkpoint directory")
    export.add_argument("out", metavar="OUT", help="directory to create")
    export.add_argument("--format", dest="export_format", required=True, choices=list(EXPORT_FORMATS))
    export.add_argument(
        "--head", help="which model to export, e.g. ForMaskedLM (default: the head the checkpoint has)"
    )
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("--quantize", choices=list(QUANTIZATIONS), help="also write an int8 model")
    export.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    inspect = command("inspect", INSPECT_HELP, "summarise a checkpoint directory")
    inspect.add_argument("directory", metavar="DIR", help="checkpoint directory")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "convert":
        from .convert import convert

        convert(
            args.src,
            args.dst,
            dtype=args.dtype,
            max_shard_size=args.max_shard_size,
            extra_formats=[name for names in args.formats for name in names],
            overwrite=args.overwrite,
            quiet=args.quiet,
        )
        return EXIT_OK
    if args.command == "from-fairseq":
        from .fairseq import import_fairseq

        import_fairseq(
            args.src,
            args.dst,
            dtype=args.dtype,
            max_shard_size=args.max_shard_size,
            extra_formats=[name for names in args.formats for name in names],
            overwrite=args.overwrite,
            quiet=args.quiet,
        )
        return EXIT_OK
    if args.command == "verify":
        from xlmr_core.pretrained import bundled_checkpoint

        from .verify import verify

        return verify(
            args.directory if args.directory is not None else bundled_checkpoint(),
            device=args.device,
            frameworks=args.frameworks,
            tolerance=args.tolerance,
            unpadded=not args.padded,
            quiet=args.quiet,
        )
    if args.command == "export":
        from .export import export

        export(
            args.directory,
            args.out,
            fmt=args.export_format,
            head=args.head,
            quantize=args.quantize,
            opset=args.opset,
            overwrite=args.overwrite,
            quiet=args.quiet,
        )
        return EXIT_OK
    from .inspection import inspect

    return inspect(args.directory, as_json=args.json)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (see `xlmr-convert --help`)."""
    return run_command(PROG, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
