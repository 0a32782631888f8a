"""One section of the ledger benchmark's RESULTS.md: a heading, what was measured, a table."""

from __future__ import annotations


def section(*, title: str, text: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    """Markdown lines; every column right-aligned (they hold figures).

    >>> section(title="T", text="How.", columns=["a", "b"], rows=[["1", "2"]])
    ['## T', '', 'How.', '', '| a | b |', '| ---: | ---: |', '| 1 | 2 |', '']
    """
    return [
        f"## {title}",
        "",
        text,
        "",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---:" for _ in columns) + " |",
        *["| " + " | ".join(row) + " |" for row in rows],
        "",
    ]
