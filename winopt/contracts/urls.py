"""Storage URLs as people may see them: a shared study's URL holds the database password
(`postgresql://USER:PASSWORD@HOST/DB`, or `?password=` in its query), and every log line,
status file, error and repr shows it through `safe_url`, one rule for all."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode


def safe_url(url: str) -> str:
    """`url` without its password: none in the user part (which ends at the last '@'
    before the query, so a password holding a raw '@' is hidden whole), and no `password`
    query argument."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    head, sep, query = rest.partition("?")
    if "@" in head:
        creds, _, host = head.rpartition("@")
        user = creds.split(":", 1)[0]
        head = f"{user}@{host}" if user else host
    if query:
        query = urlencode([(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                           if k.lower() != "password"])
        sep = "?" if query else ""
    return f"{scheme}://{head}{sep}{query}"
