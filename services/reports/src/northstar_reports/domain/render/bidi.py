"""Right-to-left text in data, kept from reordering what surrounds it.

A name in Hebrew or Arabic, or one carrying a bidi control (U+202E RIGHT-TO-LEFT
OVERRIDE, say), would otherwise reorder the numbers and words after it on the same line
(https://www.unicode.org/reports/tr9/). Each rendering wraps such a string in FIRST STRONG
ISOLATE … POP DIRECTIONAL ISOLATE, which also closes any embedding or override left open
inside it; left-to-right text is left as it is.
"""

from __future__ import annotations

import unicodedata

FSI = "\u2068"
PDI = "\u2069"
_NEEDS = frozenset({"R", "AL", "RLE", "RLO", "LRE", "LRO", "RLI", "LRI", "FSI", "PDF", "PDI"})


def isolate(s: str) -> str:
    """`s` as a directional isolate when it has right-to-left text or bidi controls."""
    if any(unicodedata.bidirectional(c) in _NEEDS for c in s):
        return f"{FSI}{s}{PDI}"
    return s
