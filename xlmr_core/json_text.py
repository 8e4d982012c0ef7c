"""Parsing JSON that came from a file: bounded nesting, UTF-8, and errors of the caller's type."""

from __future__ import annotations

import json

import numpy as np

from .errors import clip

# JSON headers, indexes and configs nest a few levels; deeper nesting is refused before `json`
# (whose parser recurses) sees it.
MAX_JSON_DEPTH = 64
# Bytes scanned at a time by `json_nesting_depth`: its memory is a small multiple of this.
_SCAN_BLOCK = 1 << 18


def json_nesting_depth(raw: bytes | str) -> int:
    """Deepest bracket nesting of a JSON text, counted outside strings.

    One pass over fixed-size blocks, in time linear in the text and memory bounded by the block
    (a 100 MB header holding one long string costs a few MB): within a block only the positions
    of quotes, backslashes and brackets are kept. A quote ends or starts a string unless an odd
    run of backslashes precedes it, which is exact for any valid JSON (text that is not JSON is
    refused by the parser that comes next)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if b"[" not in raw and b"{" not in raw:
        return 0
    depth = deepest = 0
    in_string = False  # whether the text before the block ends inside a string
    slashes = 0  # backslashes that end the text before the block
    for start in range(0, len(raw), _SCAN_BLOCK):
        block = np.frombuffer(raw, dtype=np.uint8, count=min(_SCAN_BLOCK, len(raw) - start), offset=start)
        quotes = np.flatnonzero(block == 0x22)
        plain = np.flatnonzero(block != 0x5C)  # every position but a backslash
        if quotes.size:
            # The last position before each quote that is no backslash; the run between is escapes.
            before = np.searchsorted(plain, quotes) - 1
            previous = np.where(before >= 0, plain[np.maximum(before, 0)], -1 - slashes)
            quotes = quotes[(quotes - previous - 1) % 2 == 0]
        slashes = len(block) - 1 - int(plain[-1]) if plain.size else slashes + len(block)
        opening = np.flatnonzero((block == 0x5B) | (block == 0x7B))
        closing = np.flatnonzero((block == 0x5D) | (block == 0x7D))
        brackets = np.concatenate([opening, closing])
        if brackets.size:
            steps = np.concatenate([np.ones(opening.size, np.int64), -np.ones(closing.size, np.int64)])
            order = np.argsort(brackets, kind="stable")
            brackets, steps = brackets[order], steps[order]
            # A bracket is inside a string when an odd number of quotes (plus the carried state) precede it.
            inside = (np.searchsorted(quotes, brackets) + in_string) % 2 == 1
            levels = np.cumsum(steps[~inside]) + depth
            if levels.size:
                deepest, depth = max(deepest, int(levels.max())), int(levels[-1])
        in_string = bool((quotes.size + in_string) % 2)
    return deepest


def parse_json(raw: bytes, where: str, error: type[Exception], max_depth: int = MAX_JSON_DEPTH):
    """`json.loads` of untrusted bytes: UTF-8, nested at most `max_depth` deep, else `error(where: ...)`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{where}: not UTF-8 text (byte {err.start} is invalid)") from None
    if json_nesting_depth(raw) > max_depth:
        raise error(f"{where}: JSON nested more than {max_depth} levels deep") from None
    try:
        return json.loads(text)
    except RecursionError:  # only reachable through a very deep stack on entry
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as err:
        raise error(f"{where}: not valid JSON ({clip(err, 80)})") from None
