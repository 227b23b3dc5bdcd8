"""Write docs/config.md, the run-config reference, from RunConfig's own field descriptions.

`python -m nullsae.config_reference` rewrites the file; `--check` exits 1 when it is stale
(tests/test_docs.py runs the check).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nullsae.config import RunConfig

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "config.md"

HEADER = """# Config reference

Every key of a run config (`nullsae run CONFIG.yaml`, `nullsae demo`, `nullsae audit`). In YAML a key
`section.key` is `key:` under `section:`; on the command line it is the flag `--section.key VALUE`
(lists comma-separated, `none` clears an optional value). The presets in `src/nullsae/presets/`
show complete files.

The other commands (`probe`, `edit`, `autointerp`, `synth`, `toy`, `activations`) read the same kind of
typed config: each field is a flag named by the field alone (`--min-examples`, `--n-latents-sampled`,
`--selection`), a list takes several values or commas, and `nullsae COMMAND --help` shows every default.

This page is generated from the config's field descriptions by `python -m nullsae.config_reference`;
a test fails when it is out of date.
"""


def type_name(ann: Any) -> str:
    """A short readable name for a field annotation: int, float | None, list[str], fresh | per-token."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", str(ann))


def default_text(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(empty)"
    return "none" if value is None else str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_rows(model: type[BaseModel], prefix: str) -> tuple[list[str], list[tuple[str, type[BaseModel]]]]:
    """Table rows of a section's scalar and list fields, and its nested sections."""
    rows, nested = [], []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if field.exclude:  # derived from another key, not a key of its own
            continue
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            nested.append((f"{prefix}{name}", ann))
            continue
        rows.append(f"| `{prefix}{name}` | {cell(type_name(ann))} | {cell(default_text(field))} | {cell(field.description or '')} |")
    return rows, nested


def render() -> str:
    """The whole reference page as Markdown."""
    out = [HEADER]
    pending: list[tuple[str, type[BaseModel]]] = [("", RunConfig)]
    while pending:
        path, model = pending.pop(0)
        rows, nested = section_rows(model, f"{path}." if path else "")
        doc = inspect.getdoc(model) or ""
        doc = "" if doc == inspect.getdoc(BaseModel) else doc.split("\n\n")[0].replace("\n", " ")
        out.append(f"## `{path}`\n" if path else "## Top level\n")
        if doc:
            out.append(f"{doc}\n")
        if rows:
            out.append("| key | type | default | description |\n|---|---|---|---|")
            out.extend(rows)
            out.append("")
        pending[:0] = nested
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nullsae.config_reference", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help="file to write (default: docs/config.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file differs from the generated text")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python -m nullsae.config_reference", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
