"""Text that may reach a terminal or a log line, with its control characters made visible.

File names, job names and values from files other people write end up in log lines, in
`winopt status` and in error lines. Raw, `\\x1b]0;...\\a` retitles a terminal, `\\x1b[2J`
clears it, and a newline starts what looks like a log line of its own. `safe_text` shows
every character that is not printable as its escape (`\\x1b`, `\\n`, `\\u2028`), so what a
person sees is what the name holds; a backslash is left as it is (it does nothing to a
terminal, and paths and messages stay readable).
"""

from __future__ import annotations

from typing import Any

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(value: Any) -> str:
    """`str(value)` with every non-printable character (controls, DEL, C1 controls, line
    and paragraph separators, bidi overrides...) shown as its escape; a space stays."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def safe_lines(text: str) -> str:
    """Multi-line text (a traceback) kept on its lines, each line made safe."""
    return "\n".join(safe_text(line) for line in text.split("\n"))
