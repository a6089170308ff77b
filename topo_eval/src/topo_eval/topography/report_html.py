"""One ``index.html`` per report: notes, the table and every figure, readable offline.

Figures are linked by paths relative to the page (``figures/…png``), so the folder opens from a
disk, a copied archive or an MLflow artifact view with nothing fetched.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from topo_models.atomic import atomic_write_bytes

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.9em; }
"""


def report_html(
    title: str,
    table: pd.DataFrame,
    figures: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """The page: ``title``, ``notes`` (plain text), ``links`` (relative path, label), the table,
    then each ``(relative path, caption)`` figure."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    if links:
        items = "".join(
            f'<li><a href="{html.escape(path)}">{html.escape(label)}</a></li>'
            for path, label in links
        )
        parts.append(f"<ul>{items}</ul>")
    parts.append("<h2>Table</h2>")
    parts.append(table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    parts.append("<h2>Figures</h2>")
    for path, caption in figures:
        parts.append(
            f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    path: Path,
    title: str,
    table: pd.DataFrame,
    figures: Sequence[tuple[str, str]],
    notes: Sequence[str] = (),
    links: Sequence[tuple[str, str]] = (),
) -> Path:
    """:func:`report_html` written atomically to ``path``."""
    atomic_write_bytes(report_html(title, table, figures, notes, links).encode(), path)
    return path
