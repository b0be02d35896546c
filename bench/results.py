"""``bench/RESULTS.md``: written whole by a full run, a section at a time otherwise.

Each benchmark part renders one or more ``## `` sections. A run of only some parts (or
``python -m bench attack``) replaces the sections it measured, or appends them, and
leaves the other sections, measured on other days, as they were.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADING = "## "


def sections(lines: list[str]) -> list[list[str]]:
    """``lines`` cut before each ``## `` heading; what comes before the first is dropped."""
    found: list[list[str]] = []
    for line in lines:
        if line.startswith(HEADING):
            found.append([line])
        elif found:
            found[-1].append(line)
    return found


def replace_sections(text: str, new: list[list[str]]) -> str:
    """``text`` with each section of ``new`` in place of the one of the same heading, or
    appended when it has none."""
    for section in new:
        heading, body = section[0], "\n".join(section).rstrip("\n") + "\n"
        start = text.find(f"\n{heading}\n")
        if start == -1:
            text = text.rstrip("\n") + "\n\n" + body
            continue
        end = text.find(f"\n{HEADING}", start + len(heading) + 2)
        rest = "" if end == -1 else text[end:]
        text = text[: start + 1] + body + rest
    return text


def write_sections(lines: list[str], path: Path = RESULTS) -> None:
    """Put the sections of ``lines`` into ``path`` (made when missing), the rest kept."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(replace_sections(text, sections(lines)))
