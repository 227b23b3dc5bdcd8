"""docs/faults.md lists the fault suite's categories with their case counts; this keeps it true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = {  # file → category name in the table
    "test_faults_files.py": "bad files",
    "test_faults_degenerate.py": "degenerate data",
    "test_faults_fs.py": "file-system faults",
    "test_faults_concurrent.py": "concurrent runs",
    "test_faults_kill.py": "kills at random moments",
    "test_faults_resources.py": "resource limits",
    "test_faults_validation.py": "validation before work",
}


def _cases(path: Path) -> int:
    """Test cases of a file: each test function once, times the length of each literal parametrize list."""
    total = 0
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            n = 1
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize":
                    values = dec.args[1]
                    assert isinstance(values, (ast.List, ast.Tuple)), f"{node.name}: parametrize values must be a literal list"
                    n *= len(values.elts)
            total += n
    return total


def test_every_fault_file_has_a_category():
    assert sorted(p.name for p in (ROOT / "tests").glob("test_faults_*.py") if p.name != Path(__file__).name) == sorted(CATEGORIES)


def test_the_docs_table_gives_each_categorys_case_count():
    text = (ROOT / "docs" / "faults.md").read_text(encoding="utf-8")
    rows = {
        m.group(1).strip(): (m.group(2).strip(), int(m.group(3)))
        for m in re.finditer(r"^\|([^|]+)\|\s*`tests/([^`]+)`\s*\|\s*(\d+)\s*\|", text, re.M)
    }
    expected = {cat: (name, _cases(ROOT / "tests" / name)) for name, cat in CATEGORIES.items()}
    assert rows == expected, "update docs/faults.md: " + "; ".join(f"{c}: {n} cases" for c, (_, n) in expected.items())
    stated = re.search(r"\*\*(\d+) cases\*\*", text)
    assert stated, "docs/faults.md states no total '**N cases**'"
    total = int(stated.group(1))
    assert total == sum(n for _, n in expected.values())
