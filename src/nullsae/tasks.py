"""Labelled text tasks for sparse probing: built-in offline tasks and any (text, label) dataset.

Built-in tasks come from the bundled Wikipedia corpus: `topic:<slug>` (one topic against the other
ten; the catch-all "Uncategorized" articles, which share no topic, are left out of every topic task) and
`continent:<slug>` (country articles, continent read from descriptions such as "Country in West Africa"). A file (.csv/.jsonl/.parquet) or an HF dataset (`hf:NAME[:SPLIT[:CONFIG]]`)
with text and label columns becomes one binary task if it has two classes, else one task per class
against the rest (as SAEBench does). Every task gets a seeded, class-balanced train / test split with
no text in both halves.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from nullsae.errors import UserError
from nullsae.extras import require

FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")

# Region words of the corpus descriptions -> continent; a description naming two continents is dropped.
_CONTINENT_WORDS = {
    "Africa": ("africa",),
    "Asia": ("asia",),
    "Europe": ("europe",),
    "North America": ("north america", "central america", "caribbean", "west indies", "antilles"),
    "South America": ("south america",),
    "Oceania": ("oceania", "pacific", "melanesia", "polynesia", "micronesia"),
}
# Labels that name no class of their own (catch-alls): their texts are left out of the built-in tasks.
CATCH_ALL_LABELS = frozenset({"uncategorized", "uncategorised", "other", "others", "misc", "miscellaneous", "general", "unknown", "none"})
_COUNTRY_DESCRIPTION = re.compile(r"^(?:[\w-]+ )*?country (?:in|of islands in) (?P<region>.+)$", re.IGNORECASE)


class TaskConfig(BaseModel):
    """How many examples per class, the split seed, and how labelled files are read."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = Field(default=100, gt=0, description="training texts per class")
    n_test: int = Field(default=50, gt=0, description="test texts per class")
    min_per_class: int = Field(default=10, ge=2, description="a class with fewer usable texts is skipped")
    seed: int = 0
    text_field: str = Field(default="text", description="text column of a labelled file or dataset")
    label_field: str = Field(default="label", description="label column of a labelled file or dataset")
    max_rows: int = Field(default=200_000, gt=0, description="rows read from an HF dataset at most")


class Task(BaseModel):
    """One binary task: label 1 = `positive`, 0 = the rest; train and test share no text."""

    name: str
    positive: str
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]


class TaskSet(BaseModel):
    """The tasks built from a request, and the classes left out (name -> reason)."""

    tasks: list[Task]
    skipped: dict[str, str] = Field(default_factory=dict)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def continent_of(description: str) -> str | None:
    """The continent of a country description ("Country in West Africa" -> "Africa"); None if not one."""
    m = _COUNTRY_DESCRIPTION.match(description.strip())
    if not m:
        return None
    region = m.group("region").lower()
    found = {c for c, words in _CONTINENT_WORDS.items() if any(w in region for w in words)}
    return found.pop() if len(found) == 1 else None


def is_catch_all(label: str) -> bool:
    """True for an empty label or a catch-all one ("Uncategorized", "Other", …): no class to probe for."""
    return _slug(label) in CATCH_ALL_LABELS or not label.strip()


def _builtin_labelled() -> dict[str, tuple[list[str], list[str]]]:
    """Family -> (texts, labels) of the bundled corpus: topic of every article with a real topic, continent of countries."""
    from nullsae.data import bundled_documents

    docs = bundled_documents()
    topics = [(d.text, d.topic) for d in docs if not is_catch_all(d.topic)]
    countries = [(d.text, c) for d in docs if (c := continent_of(d.description))]
    return {
        "topic": ([t for t, _ in topics], [y for _, y in topics]),
        "continent": ([t for t, _ in countries], [c for _, c in countries]),
    }


def builtin_task_names() -> list[str]:
    """Names of the built-in tasks: topic:<slug> for the 11 topics (no catch-all), continent:<slug> for the continents."""
    out = []
    for family, (_, labels) in _builtin_labelled().items():
        out += [f"{family}:{_slug(c)}" for c in sorted(set(labels))]
    return out


def load_tasks(specs: list[str] | None = None, cfg: TaskConfig | None = None) -> TaskSet:
    """Tasks for `specs`: built-in names (or a family "topic" / "continent", or "builtin" for all),
    labelled files, or hf:NAME[:SPLIT[:CONFIG]]; default all built-in tasks."""
    cfg = cfg or TaskConfig()
    specs = specs or ["builtin"]
    tasks: list[Task] = []
    skipped: dict[str, str] = {}
    builtin: dict[str, tuple[list[str], list[str]]] | None = None
    for spec in specs:
        if spec.startswith("hf:"):
            texts, labels = _hf_labelled(spec[3:], cfg)
            got = tasks_from_labels(_slug(spec[3:].split(":")[0].split("/")[-1]), texts, labels, cfg)
        elif Path(spec).suffix.lower() in FILE_SUFFIXES or Path(spec).expanduser().exists():
            texts, labels = read_labelled_file(Path(spec).expanduser(), cfg)
            got = tasks_from_labels(_slug(Path(spec).stem), texts, labels, cfg)
        else:
            if builtin is None:
                builtin = _builtin_labelled()
            got = _builtin_tasks(spec, builtin, cfg)
        tasks += got.tasks
        skipped.update(got.skipped)
    if not tasks:
        raise UserError(
            f"no task could be built from {', '.join(specs)} ({'; '.join(f'{k}: {v}' for k, v in skipped.items())}); give more labelled texts"
        )
    return TaskSet(tasks=tasks, skipped=skipped)


def _builtin_tasks(spec: str, builtin: dict[str, tuple[list[str], list[str]]], cfg: TaskConfig) -> TaskSet:
    families = list(builtin) if spec == "builtin" else [spec.split(":")[0]]
    if families[0] not in builtin:
        raise UserError(
            f"unknown task '{spec}'; give a built-in task ({', '.join(builtin_task_names())}), a family (topic, continent, builtin), a .csv/.jsonl/.parquet file or hf:DATASET"
        )
    out = TaskSet(tasks=[])
    for family in families:
        texts, labels = builtin[family]
        classes = {_slug(c): c for c in set(labels)}
        if ":" in spec:
            wanted = spec.split(":", 1)[1]
            if wanted in CATCH_ALL_LABELS:
                raise UserError(
                    f"'{spec}' is a catch-all label whose texts share no {family}, so it is not a probing task; "
                    f"the {family} tasks are {', '.join(f'{family}:{s}' for s in sorted(classes))}"
                )
            if wanted not in classes:
                raise UserError(f"unknown task '{spec}'; the {family} tasks are {', '.join(f'{family}:{s}' for s in sorted(classes))}")
            positives = [classes[wanted]]
        else:
            positives = sorted(set(labels))
        got = tasks_from_labels(family, texts, labels, cfg, positives=positives, always_one_vs_rest=True)
        out.tasks += got.tasks
        out.skipped.update(got.skipped)
    return out


def tasks_from_labels(
    family: str, texts: list[str], labels: list[str], cfg: TaskConfig, positives: list[str] | None = None, always_one_vs_rest: bool = False
) -> TaskSet:
    """Binary tasks from (text, label) rows: one task if there are two classes, else one per class vs rest.

    Texts that occur under two labels, and texts with an empty label, are dropped; repeated texts count
    once, so no text can land in both the train and the test half.
    """
    by_text: dict[str, set[str]] = {}
    for t, y in zip(texts, labels):
        if t and t.strip() and str(y).strip():
            by_text.setdefault(t, set()).add(str(y))
    rows = [(t, ys.pop()) for t, ys in by_text.items() if len(ys) == 1]
    classes = sorted({y for _, y in rows})
    if len(classes) < 2:
        raise UserError(
            f"'{family}' has {len(classes)} class{'es' if len(classes) != 1 else ''} ({', '.join(classes) or 'none'}); a probing task needs texts of at least two labels"
        )
    if positives is None:
        positives = classes[1:] if len(classes) == 2 and not always_one_vs_rest else classes
    out = TaskSet(tasks=[])
    for pos in positives:
        name = f"{family}:{_slug(pos)}"
        task = balanced_split(name, [t for t, _ in rows], [int(y == pos) for _, y in rows], pos, cfg)
        if task is None:
            n_pos = sum(y == pos for _, y in rows)
            out.skipped[name] = (
                f"{min(n_pos, len(rows) - n_pos)} texts in the smaller class, fewer than min_per_class = {cfg.min_per_class}"
            )
        else:
            out.tasks.append(task)
    return out


def balanced_split(name: str, texts: list[str], labels: list[int], positive: str, cfg: TaskConfig) -> Task | None:
    """Seeded, class-balanced, disjoint split: the same number of texts of each class in each half
    (n_train / n_test per class, scaled down together when a class is smaller); None if too small."""
    y = np.asarray(labels)
    idx = [np.flatnonzero(y == c) for c in (1, 0)]
    n_class = min(len(idx[0]), len(idx[1]), cfg.n_train + cfg.n_test)
    if n_class < cfg.min_per_class:
        return None
    n_test = max(1, round(n_class * cfg.n_test / (cfg.n_train + cfg.n_test)))
    n_train = n_class - n_test
    seed = int.from_bytes(hashlib.blake2b(f"{cfg.seed}\x00{name}".encode(), digest_size=8).digest(), "big")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for members in idx:
        pick = rng.permutation(members)[:n_class]
        train += pick[:n_train].tolist()
        test += pick[n_train:].tolist()
    train = rng.permutation(train).tolist()
    test = rng.permutation(test).tolist()
    return Task(
        name=name,
        positive=positive,
        train_texts=[texts[i] for i in train],
        train_labels=[int(y[i]) for i in train],
        test_texts=[texts[i] for i in test],
        test_labels=[int(y[i]) for i in test],
    )


def read_labelled_file(path: Path, cfg: TaskConfig) -> tuple[list[str], list[str]]:
    """(texts, labels) of a .csv, .jsonl or .parquet file with columns cfg.text_field and cfg.label_field."""
    import pandas as pd

    if not path.is_file():
        raise UserError(
            f"labelled file {path} does not exist; give a .csv/.jsonl/.parquet file with '{cfg.text_field}' and '{cfg.label_field}' columns"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path)
        elif suffix == ".jsonl":
            df = pd.read_json(path, lines=True)
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            raise UserError(f"unsupported labelled file {path.name}; use one of {', '.join(FILE_SUFFIXES)}")
    except UserError:
        raise
    except Exception as exc:  # pandas raises many types for a malformed file
        raise UserError(
            f"could not read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the file format"
        ) from None
    return _columns(df.to_dict("list") if len(df.columns) else {}, str(path), cfg)


def _columns(table: Mapping[Hashable, list], where: str, cfg: TaskConfig) -> tuple[list[str], list[str]]:
    for field, flag in ((cfg.text_field, "--text-field"), (cfg.label_field, "--label-field")):
        if field not in table:
            raise UserError(f"{where} has no column '{field}' (columns: {', '.join(map(str, table)) or 'none'}); name it with {flag}")
    texts, labels = [], []
    for t, y in zip(table[cfg.text_field], table[cfg.label_field]):
        if t is None or y is None or (isinstance(y, float) and np.isnan(y)) or not isinstance(t, str):
            continue
        texts.append(t)
        labels.append(str(y))
    return texts, labels


def _hf_labelled(spec: str, cfg: TaskConfig) -> tuple[list[str], list[str]]:
    """(texts, labels) of an HF dataset "NAME[:SPLIT[:CONFIG]]" (a hub id or a local dataset folder),
    at most cfg.max_rows rows; ClassLabel ids become their names."""
    datasets = require("datasets", "hf")

    name, split, config = (spec.split(":") + ["", ""])[:3]
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:
        raise UserError(
            f"could not open dataset '{name}' ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the id, the split and the network"
        ) from None
    ds = ds.select(range(min(len(ds), cfg.max_rows)))
    if cfg.text_field not in ds.column_names or cfg.label_field not in ds.column_names:
        return _columns({c: [] for c in ds.column_names}, f"dataset '{name}'", cfg)
    feature = ds.features[cfg.label_field]
    table: dict[Hashable, list] = {cfg.text_field: ds[cfg.text_field], cfg.label_field: ds[cfg.label_field]}
    if isinstance(feature, datasets.ClassLabel):
        table[cfg.label_field] = [feature.int2str(int(y)) for y in table[cfg.label_field]]
    return _columns(table, f"dataset '{name}'", cfg)
