"""Where each key of a TOML text is defined: the line a study-file error points at.

>>> key_lines('["study"]\\nname = "x"\\n[accuracy.fidelity]\\nepochs = 2\\n')[("accuracy", "fidelity", "epochs")]
4
"""

from __future__ import annotations

import re
import tomllib

# TOML, as far as finding lines goes: strings (which may hold '[' or '=' or span lines), comments, punctuation.
_TOKEN = re.compile(
    r'''(?P<ml>"""(?:[^"\\]|\\.|"{1,2}(?!"))*"{3,5}|\'\'\'(?:[^']|'{1,2}(?!'))*'{3,5})'''
    r"""|(?P<str>"(?:[^"\\\n]|\\.)*"|'[^'\n]*')|(?P<comment>\#[^\n]*)|(?P<nl>\n)|(?P<ws>[ \t\r]+)"""
    r"""|(?P<punct>[\[\]{}=.,])|(?P<bare>[^\s\[\]{}=.,"'\#]+)""",
    re.S,
)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Each key path (("accuracy", "fidelity", "epochs")) -> the line that first defines it.

    Reads what tomllib has already accepted, so it can be lenient: quoted and dotted keys
    ("study"."name", 'trials', accuracy.fidelity.epochs), table headers, inline tables and
    arrays or strings spanning lines (whose '[' would otherwise look like a header).
    """
    tokens, line = [], 1
    for m in _TOKEN.finditer(text):
        if m.lastgroup not in ("ws", "comment"):
            tokens.append((m.lastgroup, m.group(), line))
        line += m.group().count("\n")
    lines: dict[tuple[str, ...], int] = {}
    at = 0

    def record(path: tuple[str, ...], line: int) -> None:
        for n in range(1, len(path) + 1):
            lines.setdefault(path[:n], line)

    def peek(skip_nl: bool = False) -> tuple[str, str, int]:
        nonlocal at
        while skip_nl and at < len(tokens) and tokens[at][0] == "nl":
            at += 1
        return tokens[at] if at < len(tokens) else ("end", "", 0)

    def key(stop: str) -> tuple[str, ...]:
        nonlocal at
        parts = []
        while peek()[1] != stop and peek()[0] != "end":
            kind, word, _ = tokens[at]
            at += 1
            if kind == "str":
                parts.append(tomllib.loads(f"k = {word}")["k"] if word.startswith('"') else word[1:-1])
            elif kind == "bare":
                parts.append(word)
        at += 1
        return tuple(parts)

    def value(base: tuple[str, ...] | None) -> None:
        nonlocal at
        word = peek()[1]
        if word in ("[", "{"):
            at += 1
            closing = "]" if word == "[" else "}"
            while peek(skip_nl=True)[1] != closing and peek()[0] != "end":
                if peek()[1] == ",":
                    at += 1
                    continue
                if closing == "}":
                    inner_line = peek()[2]
                    path = key("=")
                    if base is not None:
                        record((*base, *path), inner_line)
                    value((*base, *path) if base is not None else None)
                else:
                    value(None)
            at += 1
            return
        while peek()[0] not in ("nl", "end") and peek()[1] not in (",", "]", "}"):
            at += 1

    table: tuple[str, ...] = ()
    while peek(skip_nl=True)[0] != "end":
        _, word, line = peek()
        if word == "[":
            at += 1
            if peek()[1] == "[":  # [[array of tables]]
                at += 1
            table = key("]")
            if peek()[1] == "]":
                at += 1
            record(table, line)
        else:
            path = (*table, *key("="))
            record(path, line)
            value(path)
    return lines


__all__ = ["key_lines"]
