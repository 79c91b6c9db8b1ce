"""Secrets out of storage URLs and drivers' messages, before anything is shown, logged or written to a report.

A URL is parsed the way SQLAlchemy (and so the driver) reads it, its query included;
free text (a driver's message) loses the same in every URL it quotes and in key=value
pairs. Too much hidden beats one character shown.
"""

from __future__ import annotations

import re

# A key whose value is a secret, in a URL's query, a libpq conninfo or a driver's message.
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|credential|sslkey", re.I)
_SCHEME = re.compile(r"[A-Za-z][\w+.-]*://")
# key=value or key: value in free text; a quoted value may hold blanks (libpq: 'a b', backslash escapes)
_TEXT_PAIR = re.compile(
    r"""(?P<key>["']?\b[\w.-]+["']?)(?P<sep>\s*=\s*|(?<=["'])\s*:\s*)"""
    r"""(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|"(?:[^"\\]|\\.)*(?:"|$)|[^\s&,;'"})\]]*)"""
)


def redact(text: str, url: str | None = None) -> str:
    """`text` (a storage URL, or a driver's message) with every secret replaced by ***, safe for logs and reports.

    A URL is read as SQLAlchemy (and so the driver) reads it: the password runs to the '@'
    before the host (a raw '/', '?', '#' or blank included; with a raw '@' in it everything
    up to the last '@' goes: too much hidden beats one character shown), and every query key
    like password, sslpassword, pwd, *secret*, *token* loses its value (up to '&'). Free text
    loses the same in each URL it holds and in key=value pairs, quoted values with blanks
    included. Given `url`, its own secrets are also hidden wherever `text` quotes them.

    >>> redact("postgresql://u:my pw@db/nas?sslmode=require&sslpassword=k")
    'postgresql://u:***@db/nas?sslmode=require&sslpassword=***'
    >>> redact("connection failed: password='a b' host=db")
    'connection failed: password=*** host=db'
    """
    out = _redact_url(text) if _SCHEME.match(text.strip()) else _redact_text(text)
    for secret in sorted(_secrets(url), key=len, reverse=True) if url else ():
        out = out.replace(secret, "***")
    return out


def _redact_userinfo(rest: str) -> str:
    """What follows a scheme's '//', its password hidden (none where no authority: sqlite:///path)."""
    at = rest.rfind("@")
    if rest.startswith("/") or at < 0 or ":" not in rest[:at]:
        return rest
    return rest[: rest.index(":")] + ":***" + rest[at:]


def _redact_url(url: str) -> str:
    from urllib.parse import unquote_plus

    lead, rest = url[: url.index("://") + 3], url[url.index("://") + 3 :]
    rest = _redact_userinfo(rest)
    at = max(rest.rfind("@"), 0)

    def pair(m: re.Match) -> str:
        return f"{m[1]}{m[2]}=***" if _SECRET_KEY.search(unquote_plus(m[2])) else m[0]

    # Query pairs run to '&' (a raw blank or '#' is part of the value, as SQLAlchemy reads it).
    host = re.sub(r"([?&])([^=&]*)=([^&]*)", pair, rest[at:])
    redacted = lead + rest[:at] + host
    return redacted if _parsed_clean(redacted) else lead + "***"


def _redact_text(text: str) -> str:
    parts = _SCHEME.split(text)
    schemes = _SCHEME.findall(text)
    text = parts[0] + "".join(s + _redact_userinfo(p) for s, p in zip(schemes, parts[1:], strict=True))

    def pair(m: re.Match) -> str:
        return f"{m['key']}{m['sep']}***" if _SECRET_KEY.search(m["key"]) and m["value"] else m[0]

    return _TEXT_PAIR.sub(pair, text)


def _parsed_clean(redacted: str) -> bool:
    """Read back as SQLAlchemy reads it, the redacted URL holds no secret (unparseable: nothing reads it)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(redacted)
    except Exception:
        return True
    query = [(k, v) for k, vs in parsed.query.items() for v in ((vs,) if isinstance(vs, str) else vs)]
    return parsed.password in (None, "***") and all(v == "***" for k, v in query if _SECRET_KEY.search(k))


def _secrets(url: str) -> set[str]:
    """The secrets `url` holds, as typed and as decoded (3 characters or more: shorter would hide words)."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url.strip())
    except Exception:
        return set()
    values = [parsed.password] if parsed.password else []
    values += [v for k, vs in parsed.query.items() for v in ((vs,) if isinstance(vs, str) else vs)
               if _SECRET_KEY.search(k)]  # fmt: skip
    return {s for v in values for s in (v, quote(v, safe="")) if len(s) >= 3}


__all__ = ["redact"]
