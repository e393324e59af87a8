"""MkDocs hook: the rooms docstrings are written with Sphinx roles (``:class:`~rooms.Limits```);
mkdocstrings renders Markdown, where a role would show as text. Each role becomes a
cross-reference that mkdocs-autorefs resolves when the API reference renders its target,
and plain code when it does not. A docstring paragraph ending in ``::`` (reST's "a code
block follows") ends in ``:``, as prose does.
"""

from __future__ import annotations

import html
import re
from typing import Any

ROLE = re.compile(
    r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(?P<tilde>~?)(?P<name>[^<]+)</code>"
)
LITERAL_INTRO = re.compile(r"::</p>")


def cross_reference(match: re.Match[str]) -> str:
    name = html.unescape(match["name"]).removesuffix("()")
    shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
    # A bare name in a rooms docstring means one of the public names of `rooms`.
    identifier = name if "." in name else f"rooms.{name}"
    return (
        f'<autoref optional identifier="{html.escape(identifier)}">'
        f"<code>{html.escape(shown)}</code></autoref>"
    )


def on_page_content(html_text: str, **kwargs: Any) -> str:
    return LITERAL_INTRO.sub(":</p>", ROLE.sub(cross_reference, html_text))
