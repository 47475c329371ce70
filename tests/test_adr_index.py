"""The decision records keep the rules ADR 0000 sets for them.

Every `ADR/NNNN-title.md` has front matter with a status and a date, the MADR sections, a Confirmation that
names at least one test file that exists (and every test the record names, anywhere, exists), no pointer
to a design note outside the repository, and a row in `ADR/README.md` with the same status; the index
links nothing that is missing and names `docs/design.md` as the design of record.
"""

from __future__ import annotations

import ast
import datetime
import re
from functools import cache
from pathlib import Path
from typing import Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
ADR_DIR: Final = ROOT / "ADR"
INDEX: Final = ADR_DIR / "README.md"
DESIGN: Final = ROOT / "docs" / "design.md"

EXEMPT_UNTIL_REVISED: Final = frozenset[str]()
"""Records whose revision is in progress (none now): their checks below are marked as expected failures
(strict: once the record is fixed they pass, and the unexpected pass fails the run)."""

SECTIONS: Final = (
    "Context and Problem Statement",
    "Decision Drivers",
    "Considered Options",
    "Decision Outcome",
    "Consequences",
)
"""The MADR sections every record has, at any heading level (the Confirmation is checked on its own)."""
ADR_NAME: Final = re.compile(r"(\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md")
STATUS: Final = re.compile(r"proposed|accepted|rejected|deprecated|superseded by \d{4}")
HEADING: Final = re.compile(r"^(#+)\s+(.*?)\s*$", re.MULTILINE)
TEST_REFERENCE: Final = re.compile(
    r"(?P<path>tests/[\w/]+\.py)(?:::(?P<qualified>\w+))?"
    r"|::(?P<chained>\w+)"
    r"|(?P<bare>\btest_\w+)(?P<prefix>\*)?(?!\.py)(?!\w)"
)
"""`tests/x.py`, `tests/x.py::test_a`, a following `::test_b` (same file), a bare `test_c` (the file named
last, else any test file), and `test_d_*` (a prefix: the file named last)."""
OUTSIDE_DESIGN: Final = re.compile(r"\.\./shared|\bDESIGN(?:\.md)?\b")
"""The design note that used to live outside the repository, by path or by its "DESIGN §N" references."""


def adr_files() -> list[Path]:
    return sorted(path for path in ADR_DIR.glob("*.md") if path.name != INDEX.name)


def adr_params() -> list[object]:
    return [pytest.param(path, id=path.name[:4]) for path in adr_files()]


def pending_params() -> list[object]:
    """The records, with the ones under revision expected to fail (strictly)."""
    return [
        pytest.param(
            path,
            id=path.name[:4],
            marks=pytest.mark.xfail(reason="revision in progress (EXEMPT_UNTIL_REVISED)", strict=True)
            if path.name[:4] in EXEMPT_UNTIL_REVISED
            else (),
        )
        for path in adr_files()
    ]


def front_matter(text: str) -> dict[str, str]:
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "no front matter (--- ... ---) at the top"
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, separator, value = line.partition(":")
        assert separator, f"front matter line without a colon: {line!r}"
        fields[key.strip()] = value.strip()
    return fields


def section(text: str, title: str) -> str | None:
    """The text under the first heading called `title`, up to the next heading of the same or a higher
    level."""
    headings = list(HEADING.finditer(text))
    for index, heading in enumerate(headings):
        if heading.group(2) != title:
            continue
        level = len(heading.group(1))
        end = next(
            (later.start() for later in headings[index + 1 :] if len(later.group(1)) <= level), len(text)
        )
        return text[heading.end() : end]
    return None


@cache
def functions_in(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )


@cache
def all_functions_in_tests() -> frozenset[str]:
    return frozenset().union(*(functions_in(path) for path in (ROOT / "tests").rglob("*.py")))


def unresolved_test_references(text: str) -> list[str]:
    """Every test file and test function the text names that does not exist."""
    missing: list[str] = []
    current: Path | None = None
    for match in TEST_REFERENCE.finditer(text):
        if match.group("path"):
            current = ROOT / match.group("path")
            if not current.is_file():
                missing.append(match.group("path"))
                current = None
            elif match.group("qualified") and match.group("qualified") not in functions_in(current):
                missing.append(f"{match.group('path')}::{match.group('qualified')}")
        elif match.group("chained"):
            name = match.group("chained")
            if current is None or name not in functions_in(current):
                missing.append(f"::{name}")
        elif match.group("prefix"):
            prefix = match.group("bare")
            if current is None or not any(name.startswith(prefix) for name in functions_in(current)):
                missing.append(f"{prefix}*")
        else:
            name = match.group("bare")
            in_current = current is not None and name in functions_in(current)
            if not in_current and name not in all_functions_in_tests():
                missing.append(name)
    return missing


def test_records_are_numbered_in_sequence() -> None:
    names = [path.name for path in adr_files()]
    assert names, "no decision records found"
    numbers = []
    for name in names:
        match = ADR_NAME.fullmatch(name)
        assert match, f"{name} is not named NNNN-title-with-dashes.md"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(len(numbers))), f"numbers must run 0000, 0001, ... without gaps: {numbers}"


@pytest.mark.parametrize("adr", adr_params())
def test_each_record_has_front_matter_with_status_and_date(adr: Path) -> None:
    fields = front_matter(adr.read_text(encoding="utf-8"))
    assert STATUS.fullmatch(fields.get("status", "")), f"status: {fields.get('status')!r}"
    datetime.date.fromisoformat(fields.get("date", ""))  # YYYY-MM-DD, a real date


@pytest.mark.parametrize("adr", adr_params())
def test_each_record_has_a_title_and_the_madr_sections(adr: Path) -> None:
    text = adr.read_text(encoding="utf-8")
    titles = {heading.group(2) for heading in HEADING.finditer(text)}
    assert re.search(r"^# \S", text, re.MULTILINE), "no title heading (# ...)"
    assert [name for name in SECTIONS if name not in titles] == []


@pytest.mark.parametrize("adr", pending_params())
def test_each_record_has_a_confirmation_naming_an_existing_test(adr: Path) -> None:
    confirmation = section(adr.read_text(encoding="utf-8"), "Confirmation")
    assert confirmation is not None, "no Confirmation section"
    named = {match.group("path") for match in TEST_REFERENCE.finditer(confirmation) if match.group("path")}
    test_files = {path for path in named if Path(path).name.startswith("test_") and (ROOT / path).is_file()}
    assert test_files, "the Confirmation names no test file that exists (tests/.../test_*.py)"


@pytest.mark.parametrize("adr", adr_params())
def test_every_test_a_record_names_exists(adr: Path) -> None:
    assert unresolved_test_references(adr.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("adr", pending_params())
def test_no_record_points_at_a_design_note_outside_the_repository(adr: Path) -> None:
    text = adr.read_text(encoding="utf-8")
    assert [match.group(0) for match in OUTSIDE_DESIGN.finditer(text)] == []


def test_the_index_lists_every_record_with_its_status_and_links_nothing_missing() -> None:
    index = INDEX.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)\)", index)
    assert [link for link in links if not (ADR_DIR / link).resolve().exists()] == []
    rows = {
        match.group(1): match.group(2).strip()
        for match in re.finditer(r"^\| \[\d{4}\]\(([^)]+)\) \|[^|]*\|([^|]*)\|\s*$", index, re.MULTILINE)
    }
    for adr in adr_files():
        assert adr.name in rows, f"{adr.name} has no row in ADR/README.md"
        status = front_matter(adr.read_text(encoding="utf-8"))["status"]
        assert rows[adr.name] == status, f"{adr.name}: index says {rows[adr.name]!r}, the record {status!r}"


def test_the_index_names_the_design_of_record_inside_the_repository() -> None:
    index = INDEX.read_text(encoding="utf-8")
    assert "](../docs/design.md)" in index
    assert DESIGN.is_file()
    assert OUTSIDE_DESIGN.search(index) is None


def test_the_docs_point_at_no_design_note_outside_the_repository() -> None:
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert DESIGN in docs
    assert {doc.name: OUTSIDE_DESIGN.findall(doc.read_text(encoding="utf-8")) for doc in docs} == {
        doc.name: [] for doc in docs
    }
