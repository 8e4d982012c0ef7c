"""A multilingual text set for tokenizer tests and benchmarks.

`SENTENCES` are ordinary sentences in many scripts; `EDGE_CASES` are the inputs tokenizers get wrong
(emoji sequences, combining marks, full-width forms, control characters, whitespace runs, special-token
strings inside text, empty and very long texts). `ALL_TEXTS` is both.
"""

from __future__ import annotations

import random

SENTENCES = [
    "Hello world! How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers split text into pieces, and models read the pieces.",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Ärger über die Straßenbahn: sie kam schon wieder zu spät.",
    "¿Dónde está la biblioteca? Está al lado del café.",
    "Não sei se vou conseguir chegar às três horas.",
    "Kuşların sesi sabahın erken saatlerinde duyuluyor.",
    "Właściwie to nie wiem, dlaczego tak się stało.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γεια σου κόσμε, τι κάνεις σήμερα;",
    "שלום עולם, מה שלומך היום?",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "سلام دنیا، امروز حالت چطور است؟",
    "नमस्ते दुनिया, आज आप कैसे हैं?",
    "আমি বাংলায় গান গাই।",
    "வணக்கம் உலகம், நீங்கள் எப்படி இருக்கிறீர்கள்?",
    "สวัสดีชาวโลก วันนี้เป็นอย่างไรบ้าง",
    "ສະບາຍດີ ໂລກ",
    "မင်္ဂလာပါ ကမ္ဘာလောက",
    "ជំរាបសួរ ពិភពលោក",
    "გამარჯობა მსოფლიო",
    "Բարեւ աշխարհ",
    "ሰላም ዓለም",
    "你好，世界！今天天气很好。",
    "東京は日本の首都です。カタカナとひらがなも使います。",
    "안녕하세요 세계, 오늘 날씨가 좋네요.",
    "Xin chào thế giới, hôm nay bạn thế nào?",
    "Habari dunia, leo ni siku nzuri.",
    "Sawubona mhlaba, unjani namuhla?",
    "Kamusta ka, mundo? Mabuti naman ako.",
    "Numbers: 3.14159, 1,000,000 and 42% of 2024-01-31 at 09:30.",
    "E-mail me at someone@example.com or visit https://example.org/path?q=1.",
    "C'est l'été ; il fait 35 °C à l'ombre.",
    "I'm sure they'll say we've done what's needed.",
]

EDGE_CASES = [
    "",
    " ",
    "   \t\n  ",
    "a",
    "  leading and trailing spaces  ",
    "many     spaces\t\ttabs\n\nnewlines\r\nand CRLF",
    "\u3000ideographic\u3000space\u00a0and no-break space\u2009thin",
    "👍🏽 👨\u200d👩\u200d👧 🇫🇷 ❤️ 🙂🙃",
    "e\u0301 a\u0300 o\u0302\u0323 combining marks, Vie\u0323\u0302t decomposed",
    "\u00a0\u0acc no-break space before a combining mark",
    "ｆｕｌｌ－ｗｉｄｔｈ　ＦＯＲＭＳ！ １２３",
    "ﬁ ﬂ ① ㍿ ™ ½ ligatures and compatibility forms",
    "control\x00chars\x01\x07\x1b and \x7f delete",
    "zero\u200bwidth\u200cjoiners\u200d\ufeffbom",
    "trailing line separators\u2028\u0085",
    "Hello<s>world</s>",
    "a <mask> b and<mask>c and  <mask>  d",
    "<unk><pad></s><s><mask>",
    "text with </s> inside and a < s > lookalike",
    "＜mask＞ full-width special lookalike",
    "ALL CAPS AND MiXeD CaSe",
    "punctuation!!! ??? ... --- *** ### @@@",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522 mathematical letters",
    "\ue000\U000f0000 private use",
    "𐌰𐌱𐌲 gothic and 𓀀 hieroglyph",
    " ".join(SENTENCES[:12]) * 8,
    "x" * 3000,
]

ALL_TEXTS = SENTENCES + EDGE_CASES


def benchmark_sentences(count: int = 10_000, seed: int = 0) -> list[str]:
    """`count` deterministic sentences: one to three sentences of `SENTENCES` joined, sometimes with an
    edge case mixed in."""
    rng = random.Random(seed)
    short_edges = [text for text in EDGE_CASES if len(text) < 200]
    out = []
    for _ in range(count):
        parts = rng.sample(SENTENCES, rng.randint(1, 3))
        if rng.random() < 0.1:
            parts.insert(rng.randint(0, len(parts)), rng.choice(short_edges))
        out.append(" ".join(parts))
    return out


def training_corpus() -> list[str]:
    """Lines to train a small SentencePiece model in the tests."""
    return SENTENCES * 3 + [text for text in EDGE_CASES if len(text) < 500]
