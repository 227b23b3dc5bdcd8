"""The grid: cells keyed by what determines them, checks before compute, finished parts never recomputed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from nullsae.config import build_config
from nullsae.errors import UserError
from nullsae.experiment.grid import ModelShape, plan
from nullsae.experiment.store import RunStore
from nullsae.io_utils import atomic_write, write_json

SHAPE = ModelShape(n_layers=30, d_model=576)


def _plan(**over):
    base = {"models": ["m"], "layers": [2, 8], "baselines": {"layers": [8]}}
    base.update(over)
    return plan(build_config(None, {}, base=base), lambda name: SHAPE)


def test_cells_of_the_grid():
    p = _plan()
    assert len(p.tasks) == 5  # one per variant
    labels = [c.label for c in p.cells]
    assert len(labels) == len(set(labels)) == 5 * 2 + 3
    baselines = [c for c in p.cells if c.baseline != "none"]
    assert {c.layer for c in baselines} == {8} and {c.variant for c in baselines} == {"trained"}
    ref = next(c for c in p.cells if c.variant == "trained" and c.layer == 8 and c.baseline == "none")
    for b in baselines:  # same seed, same shape: same initialisation as the SAE they mirror
        assert b.sae_config.seed == ref.sae_config.seed and b.sae_config.n_latents == ref.sae_config.n_latents == 64 * 576
    assert len({c.key for c in p.cells}) == len(p.cells)


def test_keys_change_only_with_what_determines_the_cell():
    a = {c.label: c for c in _plan().cells}
    same = {c.label: c for c in _plan(report={"n_bootstrap": 200}, name="other").cells}
    assert all(a[k].key == same[k].key and a[k].part_keys == same[k].part_keys for k in a)
    # autointerp settings change only the autointerp part, not the SAE or the other parts
    ai = {c.label: c for c in _plan(autointerp={"scorers": ["tokens"]}).cells}
    for k in a:
        assert ai[k].key == a[k].key
        assert ai[k].part_keys["reconstruction"] == a[k].part_keys["reconstruction"]
        assert ai[k].part_keys["autointerp"] != a[k].part_keys["autointerp"]
    # an SAE hyper-parameter changes the SAE key; one irrelevant to topk (relu's L1 coefficient) does not
    k16 = {c.label: c for c in _plan(sae={"k": 16}).cells}
    l1 = {c.label: c for c in _plan(sae={"l1_coef": 1.0}).cells}
    assert all(k16[k].key != a[k].key and l1[k].key == a[k].key for k in a)
    # the control noise matters for the control variant only
    noise = {c.label: c for c in _plan(variant={"control_noise": "per-token"}).cells}
    assert all((noise[k].key != a[k].key) == (a[k].variant == "control") for k in a)


def test_checks_against_the_model_come_before_compute():
    with pytest.raises(UserError, match=r"layer 30 is out of range for m, which has layers 0..29"):
        _plan(layers=[2, 30], baselines={"layers": [2]})
    with pytest.raises(UserError, match="k = 32 must be smaller"):
        plan(build_config(None, {}, base={"models": ["m"], "layers": [1], "sae": {"expansion": 1}}), lambda n: ModelShape(4, 16))


def test_store_parts_are_atomic_and_mark_completion(tmp_path):
    store = RunStore(tmp_path / "run")
    assert not store.part_path("abc", "reconstruction", "h1").exists()
    store.write_part("abc", "reconstruction", "h1", pd.DataFrame([{"ev": 0.5}]))
    assert store.part_path("abc", "reconstruction", "h1").exists() and not store.part_path("abc", "reconstruction", "h2").exists()
    assert store.read_part("abc", "reconstruction", "h1").ev.item() == 0.5

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(store.root / "x.json", boom)
    assert not (store.root / "x.json").exists() and not list(store.root.glob(".x.json*"))
    store.write_manifest({"a": 1}, seeds={"sae": 0})
    man = store.manifest()
    assert man["config"] == {"a": 1} and man["seeds"] == {"sae": 0} and "torch" in man["packages"] and man["git_commit"]
    write_json(store.root / "y.json", {"b": 2})
    assert json.loads((store.root / "y.json").read_text()) == {"b": 2}


def test_seeds_multiply_the_cells_and_keep_the_one_seed_keys():
    one = {c.label: c for c in _plan(sae={"expansion": 8}).cells}
    two = _plan(sae={"expansion": 8}, train={"seeds": [0, 1]}).cells
    assert len(two) == 2 * len(one)
    seed0 = {c.label: c for c in two if c.seed == 0}
    assert all(seed0[k].key == one[k].key and seed0[k].part_keys == one[k].part_keys for k in one)  # adding seeds reuses seed 0's cells
    seed1 = [c for c in two if c.seed == 1]
    assert all(c.sae_config.seed == 1 for c in seed1) and not {c.key for c in seed1} & {c.key for c in one.values()}


def test_result_schema_of_a_run_directory():
    from nullsae.experiment import RESULT_SCHEMA, schema_notes

    assert schema_notes({"result_schema": RESULT_SCHEMA}) == []
    assert "older nullsae" in schema_notes({})[0]
    with pytest.raises(UserError, match="newer nullsae"):
        schema_notes({"result_schema": RESULT_SCHEMA + 1})


def test_same_weights_flags_a_null_equal_to_the_trained_sae(tmp_path):
    from nullsae.experiment import same_weights
    from nullsae.sae import SAE, SAEConfig
    from nullsae.sae.io import save_sae

    store = RunStore(tmp_path / "run")
    cfg = SAEConfig(arch="topk", d_in=8, n_latents=32, k=4, seed=1)
    save_sae(SAE(cfg), store.sae_dir("a"))
    save_sae(SAE(cfg), store.sae_dir("b"))  # same seed, no training: the same weights
    save_sae(SAE(cfg.model_copy(update={"seed": 2})), store.sae_dir("c"))
    assert same_weights(store, "a", "b") and not same_weights(store, "a", "c")


def test_a_family_result_is_stored_versioned_and_read_back(tmp_path):
    """The typed result contract: every config metric is one registered family; its result is stored with
    its version (another version reads as not done) and read back as the same typed value and columns."""
    from nullsae.config import METRICS
    from nullsae.families import FAMILIES, FamilyOutput
    from nullsae.families.probing import ProbingScores

    assert list(FAMILIES) == list(METRICS)
    store = RunStore(tmp_path / "run")
    units = pd.DataFrame({"k": [1], "task": ["t"], "item": [0], "correct": [True]})
    out = FamilyOutput(ProbingScores(accuracy={1: 0.75, 4: 0.9}, raw=0.95, random={1: 0.5, 4: 0.55}, tasks=3), tables={"units": units})
    version = FAMILIES["probing"].result.version
    assert not store.has_result("abc", "probing", "h", version)
    store.write_output("abc", "probing", "h", out)
    assert store.has_result("abc", "probing", "h", version) and not store.has_result("abc", "probing", "h", version + 1)
    back = FAMILIES["probing"].result.model_validate(store.read_result("abc", "probing", "h"))
    assert back == out.result
    assert back.columns() == {
        "probe_acc_k1": 0.75,
        "probe_acc_k4": 0.9,
        "probe_raw": 0.95,
        "probe_random_k1": 0.5,
        "probe_random_k4": 0.55,
        "probe_tasks": 3,
    }
    assert store.read_part("abc", "probing-units", "h").correct.item()
