"""RAVEL on the bundled SmolLM2 under both latent selections (η² and SAEBench's learned mask), for a
TopK SAE and its three random baselines, each score beside its two references.

Trains the demo's SAE (topk, m = 4·d, k = 32, batch 512, lr 1e-3) and its frozen-decoder,
soft-frozen-decoder and frozen-encoder baselines (same seed, same batches) at one middle layer, on a
cached activation set (`--cache`, a layer folder's parent written by `fill_cache`) or on a live stream
of the train split, then runs `run_editing` with `selection` = eta2 and mask on the bundled facts.
Every (SAE, selection) result goes to OUT/results.json as soon as it exists, so a killed run resumes.

    OMP_NUM_THREADS=1 python benchmarks/ravel_methods.py --out /tmp/D-ravel [--cache DIR] [--keep-error both]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nullsae.activations import CachedActivations, CachedStream, LiveStream
from nullsae.data import token_windows
from nullsae.editing import EditingConfig, prepare_facts, run_editing
from nullsae.io_utils import atomic_write_text
from nullsae.metrics.reconstruction import reconstruction_metrics
from nullsae.models import load_model
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import load_sae, save_sae
from nullsae.sae.train import TrainConfig, train_saes

BASELINES = ("none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--cache", type=Path, default=None, help="activation cache folder holding layer_<layer> of the trained model")
    ap.add_argument("--tokens", type=int, default=262_144, help="training tokens per SAE")
    ap.add_argument("--facts", default=None, help="facts JSON (default: the bundled countries and cities)")
    ap.add_argument("--grid", default="1,4,16,64,256,1024,4096", help="η² latent-set sizes (capped at m)")
    ap.add_argument("--max-pairs", type=int, default=24)
    ap.add_argument("--mask-epochs", type=int, default=6)
    ap.add_argument("--keep-error", choices=["true", "false", "both"], default="true")
    ap.add_argument("--table", action="store_true", help="only print the table of OUT/results.json")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads((args.out / "results.json").read_text())))
        return
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "results.json"
    results: dict = json.loads(res_path.read_text()) if res_path.is_file() else {}
    loaded = load_model("smollm2")
    d, batch = loaded.d_model, 512

    if not all((args.out / "saes" / b).is_dir() for b in BASELINES):
        t = time.perf_counter()
        saes = {b: SAE(SAEConfig(arch="topk", d_in=d, n_latents=4 * d, k=32, baseline=b, seed=0)) for b in BASELINES}
        if args.cache is not None:
            stream = CachedStream(CachedActivations(args.cache, args.layer), batch, seed=0, epochs=1)
        else:
            windows = token_windows(loaded.tokenizer, loaded.bos_id, 64, -(-args.tokens * 102 // 100 // 62), split="train")
            stream = LiveStream(loaded, windows, args.layer, batch_size=batch, seed=0)
        train = train_saes(
            saes,
            stream,
            TrainConfig(steps=args.tokens // batch, lr=1e-3, warmup_steps=20, checkpoint_every=64),
            checkpoint_dir=args.out / "train",
            progress=False,
        )
        for name, sae in saes.items():
            save_sae(sae, args.out / "saes" / name)
        results["train"] = {k: {"fvu": v.fvu, "tokens": v.tokens, "dead_fraction": v.dead_fraction} for k, v in train.items()}
        results["train_seconds"] = time.perf_counter() - t
        atomic_write_text(res_path, json.dumps(results, indent=1))
    saes = {b: load_sae(args.out / "saes" / b) for b in BASELINES}
    if args.cache is not None and "fvu_cached_rows" not in results:
        results["fvu_cached_rows"] = cached_fvu(saes, CachedActivations(args.cache, args.layer))
        atomic_write_text(res_path, json.dumps(results, indent=1))

    base_cfg = EditingConfig(
        facts=args.facts, n_latents_grid=[int(n) for n in args.grid.split(",")], max_pairs=args.max_pairs, mask_epochs=args.mask_epochs
    )
    prep = prepare_facts(loaded, args.layer, base_cfg)
    results["counts"] = prep.counts.model_dump()
    errors = {"true": [True], "false": [False], "both": [True, False]}[args.keep_error]
    for keep_error in errors:
        for selection in ("eta2", "mask"):
            for name, sae in saes.items():
                key = f"{name}|{selection}|keep_error={keep_error}"
                if key in results:
                    continue
                t = time.perf_counter()
                cfg = base_cfg.model_copy(update={"selection": selection, "keep_error": keep_error})
                res = run_editing(sae, loaded, args.layer, cfg, prepared=prep)
                results[key] = {**res.model_dump(exclude={"counts"}), "seconds": time.perf_counter() - t}
                atomic_write_text(res_path, json.dumps(results, indent=1))
                print(
                    f"{key}: cause {res.cause} isolation {res.isolation} score {res.score} "
                    f"(none {res.none_score}, full swap {res.full_cause}/{res.full_isolation}) {time.perf_counter() - t:.0f}s",
                    flush=True,
                )
    table = markdown_table(results)
    atomic_write_text(args.out / "table.md", table)
    print(table)


def cached_fvu(saes: dict[str, SAE], cache: CachedActivations, n: int = 8192) -> dict[str, float]:
    """FVU (docs/spec.md#reconstruction) of each SAE on n random non-BOS rows of the activation cache it was trained on."""
    idx = torch.randperm(cache.n_rows, generator=torch.Generator().manual_seed(5))[:n]
    x = cache.rows(idx[cache.token_ids[idx] != cache.bos_id])
    out = {}
    for name, sae in saes.items():
        with torch.no_grad():
            z = sae.encode(x)
            out[name] = reconstruction_metrics(x, sae.decode(z), z).fvu
    return out


def markdown_table(results: dict) -> str:
    """One row per (edit form, selection, SAE): its FVU on cached training rows, cause / isolation / score, mean latents per attribute,
    and the two references on the same items (no intervention; whole-residual swap)."""
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        "| edit | selection | SAE | FVU | cause | isolation | score | latents / attribute | no intervention: cause / iso / score | whole-residual swap: cause / iso / score |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        if key.count("|") != 2:
            continue
        name, selection, keep = key.split("|")
        n_lat = sum(a["n_latents"] for a in r["attributes"]) / max(1, len(r["attributes"]))
        none = [sum(a[f"none_{k}"] for a in r["attributes"]) / max(1, len(r["attributes"])) for k in ("cause", "isolation")]
        lines.append(
            f"| {'x + Δ' if keep.endswith('True') else 'x̂ + Δ'} | {selection} | {'topk' if name == 'none' else name} | {results['fvu_cached_rows'][name]:.3f} | "
            f"{fmt(r['cause'])} | {fmt(r['isolation'])} | {fmt(r['score'])} | {n_lat:.0f} | "
            f"{fmt(none[0])} / {fmt(none[1])} / {fmt(r['none_score'])} | {fmt(r['full_cause'])} / {fmt(r['full_isolation'])} / {fmt(r['full_score'])} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
