"""The README and docs/ stay true: length, links and anchors, the generated config reference, the
API example, and no spec references that point outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nullsae import config_reference

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SRC_FILES = [f for d in ("src", "benchmarks", "tests") for f in sorted((ROOT / d).rglob("*.py")) if f != Path(__file__).resolve()]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = md.read_text(encoding="utf-8")
    ids = set(re.findall(r'<a id="([^"]+)"></a>', text))
    ids |= {github_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    return ids


def test_github_slug() -> None:
    assert github_slug("Sparse probing and causal editing on SmolLM2") == "sparse-probing-and-causal-editing-on-smollm2"
    assert github_slug("7b. Free nulls") == "7b-free-nulls"


def test_readme_is_short() -> None:
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 150, f"README.md has {n} lines; move detail into docs/"


def test_docs_anchor_references_in_code_exist() -> None:
    """Every `docs/FILE.md#anchor` written in code, tests, benchmarks or the docs names a file and an anchor that exist."""
    refs = []
    for f in SRC_FILES + DOC_FILES:
        for m in re.finditer(r"docs/([\w\-/]+\.md)(?:#([\w\-]+))?", f.read_text(encoding="utf-8")):
            refs.append((f.relative_to(ROOT), m.group(1), m.group(2)))
    assert refs, "no docs references found in src/: the pattern is broken"
    bad = []
    for where, doc, anchor in refs:
        target = ROOT / "docs" / doc
        if not target.exists():
            bad.append(f"{where}: docs/{doc} does not exist")
        elif anchor and anchor not in anchors(target):
            bad.append(f"{where}: docs/{doc}#{anchor} has no such anchor")
    assert not bad, "\n".join(bad)


def test_no_spec_section_references_left() -> None:
    """Spec references in code point to docs/spec.md anchors, not to section numbers of a file outside the repo."""
    bad = [
        f"{f.relative_to(ROOT)}:{i}"
        for f in SRC_FILES
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"SPEC\W{0,3}§", line)
    ]
    assert not bad, "rewrite 'SPEC §N' as docs/spec.md#anchor: " + ", ".join(bad)


def test_markdown_links_resolve() -> None:
    """Relative links in README.md and docs/ point to files (and anchors) that exist."""
    bad = []
    for md in DOC_FILES:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                bad.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{md.relative_to(ROOT)}: {target} (no such anchor)")
    assert not bad, "\n".join(bad)


def test_config_reference_is_current() -> None:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert text == config_reference.render(), "docs/config.md is stale: run python -m nullsae.config_reference"


def test_config_reference_lists_every_flag() -> None:
    from nullsae.config import RunConfig, _leaves

    text = config_reference.render()
    missing = [path for path, _, _ in _leaves(RunConfig) if f"| `{path}` |" not in text]
    assert not missing, missing


def test_config_reference_check_flags_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "config.md"
    assert config_reference.main(["--out", str(out), "--check"]) == 1
    assert config_reference.main(["--out", str(out)]) == 0
    assert config_reference.main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace("expansion factor", "expansion"), encoding="utf-8")
    assert config_reference.main(["--out", str(out), "--check"]) == 1


def readme_python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "README.md should hold exactly one Python example"
    return blocks[0]


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path: Path) -> None:
    """The README's Python example, verbatim, on the bundled model: it prints verdicts and a report path."""
    code = readme_python_block()
    assert len(code.splitlines()) <= 15
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].endswith("report.html") and (tmp_path / lines[-1]).exists()
    assert any(" trained vs control " in line for line in lines), proc.stdout
    assert any(" trained vs frozen-decoder " in line for line in lines), proc.stdout
