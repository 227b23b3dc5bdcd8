"""`nullsae audit --sae PATH`: does an existing SAE beat the random SAE baselines of Korznikov et al.?

Reads the SAE (nullsae, SAELens or sparsify format), trains the three random baselines with its
architecture and hyper-parameters on the same data (the `demo` preset's sizes unless overridden),
computes every metric for all four SAEs and reports the verdicts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from nullsae.commands.run import add_common_options, add_lazy_parser, execute_and_print

DESCRIPTION = """Audit an existing SAE: train the frozen-decoder, soft-frozen-decoder and frozen-encoder
baselines with its architecture and hyper-parameters on the same activations, compute every metric
for the SAE and the baselines, and report whether the SAE beats each (docs/spec.md#verdicts). The SAE folder may be
in nullsae, SAELens or sparsify format. Sizes default to the `demo` preset; override any config key
with a flag, e.g. --models EleutherAI/pythia-70m --tokens.train 2000000."""


def add_parser(subparsers: Any) -> None:
    p = add_lazy_parser(subparsers, "audit", help="check an existing SAE against the three random SAE baselines", description=DESCRIPTION)
    p.add_argument("--sae", required=True, metavar="PATH", help="SAE folder (nullsae, SAELens or sparsify format)")
    p.add_argument("--layer", type=int, help="layer the SAE reads (output of block ℓ, 0-based); default: from a SAELens hook_name")
    add_common_options(p, "run directory (default runs/audit-<SAE hash>)")
    p.set_defaults(func=run)


def layer_from_hook(cfg: dict[str, Any]) -> int | None:
    """SAELens `hook_name`: blocks.L.hook_resid_post is the output of block L; hook_resid_pre is block L−1's."""
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", str(cfg.get("hook_name", "")))
    if not m:
        return None
    layer = int(m.group(1)) - (m.group(2) == "pre")
    return layer if layer >= 0 else None


def sae_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in (".json", ".safetensors"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def install_reference(store: Any, key: str, sae: Any, source: Path, sha: str) -> None:
    """Put the audited SAE in the run as the trained cell (replacing a different audited SAE)."""
    from nullsae.errors import UserError
    from nullsae.experiment.runner import TRAIN_INFO
    from nullsae.experiment.store import atomic_dir, write_json
    from nullsae.sae.io import save_sae

    info = store.sae_dir(key) / TRAIN_INFO
    if info.exists():
        old = json.loads(info.read_text(encoding="utf-8"))
        if old.get("source_sha") == sha:
            return
        if "source_sha" not in old:
            raise UserError(f"{store.root} holds a trained SAE for this setting; give the audit its own --out folder")
        shutil.rmtree(store.cell_dir(key))

    def fill(tmp: Path) -> None:
        save_sae(sae, tmp)
        nan = float("nan")
        write_json(tmp / TRAIN_INFO, {"name": str(source), "steps": 0, "tokens": 0, "skipped_batches": 0, "fvu": nan, "l0": nan,
                                      "dead_fraction": nan, "decoder_drift": nan, "source": str(source), "source_sha": sha})

    atomic_dir(store.sae_dir(key), fill)


def run(args: argparse.Namespace) -> int:
    from nullsae.config import RANDOM_BASELINES, SAESettings, apply_overrides, load_yaml, overrides_from_args, parse_config
    from nullsae.errors import UserError
    from nullsae.experiment import plan_run
    from nullsae.experiment.store import RunStore
    from nullsae.sae.io import detect_format, load_sae

    folder = Path(args.sae)
    fmt = detect_format(folder)
    sae = load_sae(folder)
    sc = sae.cfg
    raw = json.loads((folder / "cfg.json").read_text(encoding="utf-8"))
    layer = args.layer if args.layer is not None else layer_from_hook(raw)
    if layer is None:
        raise UserError(f"{folder} does not say which layer it reads; give --layer")
    shared = {k: v for k, v in sc.model_dump(mode="json").items() if k in SAESettings.model_fields and k not in ("archs", "expansion", "n_latents")}
    sha = sae_digest(folder)
    base = load_yaml("demo")
    base.update(name=f"audit-{sha[:12]}", variants=["trained"], layers=[layer],
                baselines={"kinds": list(RANDOM_BASELINES), "layers": [layer], "variants": ["trained"], "tau": sc.tau},
                sae={**shared, "archs": [sc.arch], "n_latents": sc.n_latents})
    cfg = parse_config(apply_overrides(base, overrides_from_args(args)))
    if cfg.variants != ["trained"] or cfg.layers != [layer] or cfg.sae.archs != [sc.arch]:
        raise UserError("audit compares the SAE with its random baselines on the trained model; drop --variants, --layers and --sae.archs")
    plan = plan_run(cfg)
    d_model = plan.shapes[cfg.models[0]].d_model
    if d_model != sc.d_in:
        raise UserError(f"the SAE reads d_in = {sc.d_in} but {cfg.models[0]} has width {d_model}; give the model it was trained on with --models")
    ref = next(c for c in plan.cells if c.baseline == "none")
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if not args.dry_run:
        install_reference(RunStore(out), ref.key, sae, folder.resolve(), sha)
        if not (args.quiet or args.json):
            print(f"auditing {folder} ({fmt}, {sc.arch}, m = {sc.n_latents}, layer {layer} of {cfg.models[0]})")
    return execute_and_print(cfg, args, out)
