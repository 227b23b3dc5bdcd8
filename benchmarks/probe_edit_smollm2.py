"""Sparse probing and RAVEL-style editing of a TopK SAE and its three random baselines on the bundled SmolLM2.

Trains, on one live activation stream of the train split at one middle layer, a TopK SAE and its
frozen-decoder, soft-frozen-decoder and frozen-encoder baselines (same seed, same data order; docs/spec.md#baselines),
then runs `run_probing_many` on the built-in tasks (12 topics one-vs-rest, countries' continents) and
`run_editing` on the bundled facts, and prints the README table (markdown) with the fact counts.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/probe_edit_smollm2.py [--layer 15] [--tokens 150000] [--out runs/probe_edit_smollm2]

Writes <out>/results.json (every per-task and per-attribute number) and <out>/table.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nullsae.activations import LiveStream
from nullsae.data import token_windows
from nullsae.editing import EditingConfig, prepare_facts, run_editing
from nullsae.io_utils import atomic_write_text
from nullsae.models import load_model
from nullsae.probing import ProbingConfig, ProbingResult, run_probing_many
from nullsae.sae import SAE, SAEConfig
from nullsae.sae.io import load_sae, save_sae
from nullsae.sae.train import TrainConfig, TrainResult, train_saes
from nullsae.tasks import TaskConfig, load_tasks

BASELINES = ("none", "frozen-decoder", "soft-frozen-decoder", "frozen-encoder")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--tokens", type=int, default=150_000, help="training activations per SAE")
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=40, help="probing train texts per class")
    ap.add_argument("--n-test", type=int, default=20, help="probing test texts per class")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per probing text")
    ap.add_argument("--grid", default="1,4,16,64,256,1024,4096", help="editing latent-set sizes (capped at m)")
    ap.add_argument("--max-pairs", type=int, default=24)
    ap.add_argument("--out", default="runs/probe_edit_smollm2")
    ap.add_argument("--reuse", action="store_true", help="rerun editing only, with the SAEs and probing results of the last run in --out")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    loaded = load_model("smollm2")
    previous = out / "results.json"
    if args.reuse and previous.is_file():  # editing only: SAEs, training and probing results of the last run
        old = json.loads(previous.read_text())
        saes = {b: load_sae(out / "saes" / b) for b in BASELINES}
        train = {k: TrainResult.model_validate(v) for k, v in old["train"].items()}
        probing = {k: ProbingResult.model_validate(v) for k, v in old["probing"].items()}
        tasks = load_tasks(["builtin"], TaskConfig(n_train=old["args"]["n_train"], n_test=old["args"]["n_test"]))
        times = {k: old["times_s"][k] for k in ("train", "probing")}
        for key in ("tokens", "expansion", "k", "batch", "lr", "n_train", "n_test", "max_tokens"):
            setattr(args, key, old["args"][key])
    else:
        train, probing, tasks = _train_and_probe(args, loaded, out, times, t0)
        saes = {b: load_sae(out / "saes" / b) for b in BASELINES}

    t = time.perf_counter()
    ecfg = EditingConfig(n_latents_grid=[int(n) for n in args.grid.split(",")], max_pairs=args.max_pairs)
    prep = prepare_facts(loaded, args.layer, ecfg)
    print(f"facts answered right before any intervention: {prep.counts.n_facts_correct}/{prep.counts.n_facts}; per attribute: "
          + ", ".join(f"{k} {a.n_facts_correct}/{a.n_facts}" for k, a in prep.counts.per_attribute.items()), flush=True)
    editing = {name: run_editing(sae, loaded, args.layer, ecfg, prepared=prep) for name, sae in saes.items()}
    times["editing"] = time.perf_counter() - t
    times["total"] = sum(times[k] for k in ("train", "probing", "editing"))
    _report(args, out, loaded.d_model, train, probing, tasks, prep, editing, times)


def _train_and_probe(args, loaded, out: Path, times: dict[str, float], t0: float):
    window = 128
    windows = token_windows(loaded.tokenizer, loaded.bos_id, window, -(-args.tokens // (window - 1)), split="train")
    d = loaded.d_model
    saes = {b: SAE(SAEConfig(arch="topk", d_in=d, n_latents=d * args.expansion, k=args.k, baseline=b, seed=0)) for b in BASELINES}
    stream = LiveStream(loaded, windows, args.layer, batch_size=args.batch, seed=0)
    steps = stream.steps_per_epoch
    # the trainer checkpoints under <out>/train, so an interrupted benchmark resumes where it stopped
    train = train_saes(saes, stream, TrainConfig(steps=steps, lr=args.lr, warmup_steps=max(1, steps // 10), log_every=max(1, steps // 5), checkpoint_every=25), checkpoint_dir=out / "train")
    for name, sae in saes.items():
        save_sae(sae, out / "saes" / name)
    times["train"] = time.perf_counter() - t0

    t = time.perf_counter()
    tasks = load_tasks(["builtin"], TaskConfig(n_train=args.n_train, n_test=args.n_test))
    probing = run_probing_many(saes, loaded, args.layer, tasks.tasks, ProbingConfig(max_tokens=args.max_tokens))
    atomic_write_text(out / "probing.json", json.dumps({k: v.model_dump() for k, v in probing.items()}, indent=1))
    times["probing"] = time.perf_counter() - t

    return train, probing, tasks


def _report(args, out: Path, d: int, train, probing, tasks, prep, editing, times: dict[str, float]) -> None:
    ks = probing["none"].ks
    c = prep.counts
    lines = [
        f"SmolLM2-135M, layer {args.layer}; TopK SAEs (k = {args.k}, m = {d * args.expansion}) trained on {train['none'].tokens:,} tokens; "
        f"probing: {len(tasks.tasks)} built-in tasks ({args.n_train}/{args.n_test} texts per class, mean pooling, {args.max_tokens} tokens); "
        f"editing: {c.n_facts_correct}/{c.n_facts} facts ({c.n_prompts_correct}/{c.n_prompts} prompts) answered right before any intervention.",
        "",
        "| SAE | train FVU | " + " | ".join(f"probe k={k}" for k in ks) + " | raw (ceiling) | random proj. k=1 / k=20 | RAVEL cause | isolation | score | whole-residual swap: cause / isolation |",
        "|---|---|" + "---|" * len(ks) + "---|---|---|---|---|---|",
    ]
    for name in BASELINES:
        p, e = probing[name], editing[name]
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(
            f"| {'topk' if name == 'none' else name} | {train[name].fvu:.3f} | " + " | ".join(f"{p.mean_sae[k]:.3f}" for k in ks)
            + f" | {p.mean_raw:.3f} | {p.mean_random[ks[0]]:.3f} / {p.mean_random[ks[-1]]:.3f} | {fmt(e.cause)} | {fmt(e.isolation)} | {fmt(e.score)} | {fmt(e.full_cause)} / {fmt(e.full_isolation)} |"
        )
    scored = [f"{a.attribute} (n = {a.n_latents})" for a in editing["none"].attributes]
    lines += ["", f"Scored attributes (latents chosen for topk): {', '.join(scored) or 'none'}; skipped: " + ("; ".join(f"{k} ({v})" for k, v in editing["none"].skipped.items()) or "none"),
              f"Runtime: train {times['train']:.0f} s, probing {times['probing']:.0f} s, editing {times['editing']:.0f} s, total {times['total']:.0f} s."]
    table = "\n".join(lines)
    print(table)
    atomic_write_text(out / "table.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps({
        "args": vars(args),
        "times_s": times,
        "train": {k: v.model_dump() for k, v in train.items()},
        "probing": {k: v.model_dump() for k, v in probing.items()},
        "editing": {k: v.model_dump() for k, v in editing.items()},
        "skipped_tasks": tasks.skipped,
    }, indent=1, default=str))


if __name__ == "__main__":
    main()
