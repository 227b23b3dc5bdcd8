"""`nullsae audit --sae NAME`: does an existing SAE beat its nulls?

Reads the SAE (a folder in nullsae, SAELens, sparsify or dictionary_learning format, an
`hf:ORG/REPO[/SUBFOLDER][@REV]` repo, or a SAELens `--release` with `--sae-id`), trains the three
random baselines of Korznikov et al. with its architecture and hyper-parameters on the same data (the
`demo` preset's sizes unless overridden), computes every metric for all four SAEs and reports the
verdicts; beside them the free nulls of docs/spec.md#free-nulls (no training) on the same evaluation tokens.
Writes SAEBench core-schema JSON per SAE and each trained baseline in SAELens format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from nullsae.commands.run import add_common_options, quiet_libraries

DESCRIPTION = """Audit an existing SAE: train the frozen-decoder, soft-frozen-decoder and frozen-encoder
baselines with its architecture and hyper-parameters on the same activations, compute every metric
for the SAE and the baselines, and report whether the SAE beats each (docs/spec.md#verdicts); beside them the free
nulls (random, shuffled-decoder, pca, identity; no training). --sae takes a folder (nullsae, SAELens,
sparsify or dictionary_learning format) or hf:ORG/REPO[/SUBFOLDER][@REV]; or give --release and
--sae-id from the registry of the installed sae-lens. The model and layer come from the SAE's
metadata where it has them. Sizes default to the `demo` preset; override any config key with a
flag, e.g. --models EleutherAI/pythia-70m --tokens.train 2000000."""

PCA_FIT_TOKENS = 65_536


def add_parser(subparsers: Any) -> None:
    from nullsae.commands import SAEInput
    from nullsae.config import add_config_flags, add_flags, load_yaml

    p = subparsers.add_parser("audit", help="check an existing SAE against random SAE baselines and free nulls", description=DESCRIPTION)
    flags = add_flags(p, SAEInput)
    add_common_options(p, "run directory (default runs/audit-<SAE hash>)")
    add_config_flags(p, base=load_yaml("demo"))
    p.set_defaults(func=run, flags=flags)


def sae_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".pt"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def same_model(a: str, b: str) -> bool:
    """Whether two model names mean the same model (hub id, local folder or bare name: the last path part)."""
    return Path(a.rstrip("/")).name.lower() == Path(b.rstrip("/")).name.lower()


def install_reference(store: Any, key: str, sae: Any, source: Path, sha: str) -> None:
    """Put the audited SAE in the run as the trained cell (replacing a different audited SAE)."""
    from nullsae.errors import UserError
    from nullsae.experiment.runner import TRAIN_INFO, save_untrained_sae

    info = store.sae_dir(key) / TRAIN_INFO
    if info.exists():
        old = json.loads(info.read_text(encoding="utf-8"))
        if old.get("source_sha") == sha:
            return
        if "source_sha" not in old:
            raise UserError(f"{store.root} holds a trained SAE for this setting; give the audit its own --out folder")
        shutil.rmtree(store.cell_dir(key))

    save_untrained_sae(store, key, sae, {"name": str(source), "source": str(source), "source_sha": sha})


def _split_activations(cfg: Any, store: Any, task: Any, split: str, layer: int, run_cache: Any, limit: int | None = None) -> Any:
    """The run's cached activations of one split at `layer` (BOS rows dropped as the metrics drop them)."""
    import torch

    from nullsae.activations import CachedActivations
    from nullsae.experiment.runner import activations
    from nullsae.families.reconstruction import kept_rows

    cache = CachedActivations(activations(cfg, store, task, split, [layer], False, run_cache), layer)
    rows = kept_rows(cache, cfg.tokens.skip_bos)
    if limit is not None:
        rows = rows[:limit]
    return cache.rows(rows).to(torch.float32)


def _downstream(store: Any, cell: Any) -> Any:
    """SAEBench's downstream numbers from the cell's downstream result, if it was computed."""
    from nullsae.families.downstream import DownstreamScores
    from nullsae.report.saebench import DownstreamNumbers

    pk = cell.part_keys.get("downstream")
    if pk is None or not store.has_result(cell.key, "downstream", pk, DownstreamScores.version):
        return None
    r = DownstreamScores.model_validate(store.read_result(cell.key, "downstream", pk))
    return DownstreamNumbers(
        ce_loss_score=r.ce_score,
        ce_loss_with_ablation=r.ce_zero,
        ce_loss_with_sae=r.ce_sae,
        ce_loss_without_sae=r.ce_clean,
        kl_div_score=r.kl_score,
        kl_div_with_ablation=r.kl_zero,
        kl_div_with_sae=r.kl_sae,
    )


def audit_outputs(cfg: Any, plan: Any, store: Any, layer: int, hook: str, label: str, cache: Any) -> dict[str, Any]:
    """After the run: free nulls beside the trained baselines, SAEBench JSON per SAE, baselines in SAELens format."""
    from nullsae.io_utils import write_json
    from nullsae.report.saebench import core_eval_output
    from nullsae.sae.free_nulls import compare_with_free_nulls
    from nullsae.sae.io import load_sae, save_sae

    task = plan.tasks[0]
    x_eval = _split_activations(cfg, store, task, "eval", layer, cache)
    x_fit = _split_activations(cfg, store, task, "train", layer, cache, PCA_FIT_TOKENS)
    model = cfg.models[0]
    saebench, saelens = {}, {}
    free: list[Any] = []
    for cell in plan.cells:
        sae = load_sae(store.sae_dir(cell.key))
        name = "sae" if cell.baseline == "none" else cell.baseline
        out = core_eval_output(
            sae,
            x_eval,
            model_name=model,
            dataset=cfg.tokens.source,
            context_size=cfg.tokens.context,
            hook_name=hook,
            downstream=_downstream(store, cell),
            release="nullsae-audit",
            sae_id=f"{label}/{name}",
        )
        saebench[name] = str(write_json(store.root / "saebench" / f"{name}_eval_results.json", out))
        if cell.baseline == "none":
            free = compare_with_free_nulls(sae, x_eval, x_fit, seed=cell.seed, n_boot=cfg.report.n_bootstrap)
        else:
            saelens[name] = str(save_sae(sae, store.root / "saelens" / name, fmt="saelens", hook=hook, model=model))
    rows = [r.model_dump() for r in free]
    write_json(store.root / "free_nulls.json", rows)
    return {"free_nulls": rows, "saebench": saebench, "saelens": saelens}


def free_null_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["free nulls (docs/spec.md#free-nulls; EV on the evaluation tokens, 95% bootstrap interval of EV(SAE) − EV(null)):"]
    for r in rows:
        ci = r["ev_difference"]
        verdict = "SAE beats it" if r["sae_beats_null"] else "SAE does not beat it"
        lines.append(
            f"  {r['null']:<17} EV {r['ev_null']:.3f} at L0 {r['l0_null']:.1f} vs SAE {r['ev_sae']:.3f} at L0 {r['l0_sae']:.1f}: "
            f"difference {ci['estimate']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}], {verdict}"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from nullsae.commands import SAEInput, open_sae
    from nullsae.config import (
        RANDOM_BASELINES,
        SAESettings,
        apply_overrides,
        config_from_args,
        load_yaml,
        overrides_from_args,
        parse_config,
    )
    from nullsae.errors import UserError
    from nullsae.experiment import plan_run
    from nullsae.experiment.runner import RunCache
    from nullsae.experiment.store import RunStore
    from nullsae.pipeline import execute

    opened = open_sae(config_from_args(SAEInput, args, args.flags))
    sae, source, layer = opened.sae, opened.source, opened.layer
    sc = sae.cfg
    if layer is None:
        raise UserError(f"{opened.label} does not say which layer it reads; give --layer")
    overrides = overrides_from_args(args)
    given = overrides.get("models")
    if source.model and given is not None and not all(same_model(m, source.model) for m in given.split(",")):
        raise UserError(f"the SAE was trained on {source.model}, but --models is {given}; drop --models or give that model")
    shared = {
        k: v
        for k, v in sc.model_dump(mode="json").items()
        if k in SAESettings.model_fields and k not in ("archs", "expansion", "n_latents")
    }
    sha = sae_digest(opened.folder)
    base = load_yaml("demo")
    for section in base.values():  # every per-layer family reads the SAE's layer
        if isinstance(section, dict) and "layers" in section:
            section["layers"] = [layer]
    base.update(
        name=f"audit-{sha[:12]}",
        variants=["trained"],
        layers=[layer],
        baselines={"kinds": list(RANDOM_BASELINES), "layers": [layer], "variants": ["trained"], "tau": sc.tau},
        sae={**shared, "archs": [sc.arch], "n_latents": sc.n_latents},
    )
    if source.model and given is None:
        base["models"] = [source.model]
    cfg = parse_config(apply_overrides(base, overrides))
    if cfg.variants != ["trained"] or cfg.layers != [layer] or cfg.sae.archs != [sc.arch]:
        raise UserError("audit compares the SAE with its random baselines on the trained model; drop --variants, --layers and --sae.archs")
    hook = source.hook or f"blocks.{layer}.hook_resid_post"
    cache = RunCache()  # the model loads once for the plan, the run and the free nulls
    try:
        plan = plan_run(cfg, cache=cache)
    except UserError as exc:
        raise UserError(f"the SAE reads hook {hook}: {exc}") from None
    d_model = plan.shapes[cfg.models[0]].d_model
    if d_model != sc.d_in:
        raise UserError(
            f"the SAE reads d_in = {sc.d_in} but {cfg.models[0]} has width {d_model}; give the model it was trained on with --models"
        )
    refs = [c for c in plan.cells if c.baseline == "none"]
    if len(refs) != 1:
        raise UserError("audit evaluates the one given SAE; give a single --train.seeds value")
    ref_cell = refs[0]
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    progress = not (args.quiet or args.json)
    if not progress:
        quiet_libraries()
    if args.dry_run:
        print(
            json.dumps(
                {"run_dir": str(out), "sae": opened.label, "layer": layer, "model": cfg.models[0], "cells": [c.label for c in plan.cells]}
            )
            if args.json
            else f"would audit {opened.label} (layer {layer} of {cfg.models[0]}) against {len(plan.cells) - 1} baselines and the free nulls"
        )
        return 0
    store = RunStore(out)
    install_reference(store, ref_cell.key, sae, opened.folder.resolve(), sha)
    if progress:
        print(f"auditing {opened.label} ({source.fmt}, {sc.arch}, m = {sc.n_latents}, {hook}: layer {layer} of {cfg.models[0]})")
    result = execute(cfg, out, executor=args.executor, address=args.address, progress=progress, cache=cache)
    extra = audit_outputs(cfg, plan, store, layer, hook, opened.label, cache)
    if args.json:
        print(json.dumps({**result.summary(), **extra}, default=str))
    else:
        if progress:
            print("\n".join([*result.text_lines(), *free_null_lines(extra["free_nulls"])]))
        print(f"report: {result.report_path}")
    sys.stdout.flush()
    return 0
