"""The `xlmr-convert` command line (convert, from-fairseq, verify, inspect).

Not implemented yet (tracked by the conversion issue); the checkpoint reading and
writing it will drive already lives in `xlmr_core.checkpoint`.
"""
