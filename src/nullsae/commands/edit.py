"""`nullsae edit`: RAVEL-style causal editing with one SAE (cause, isolation, score per attribute); writes JSON."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "edit",
        help="RAVEL-style causal editing: do the SAE's latents for an attribute change it, and only it?",
        description="Interchange interventions on SAE latents at the entity's last token: for each attribute (country capital, continent, "
        "language; city country, continent, language in the bundled facts) the latents that best separate its values are selected on half "
        "of the entities, then scored on the other half: cause = the attribute takes the source entity's value, isolation = the other "
        "attributes keep theirs, score = their mean. Only facts the model answers right are used; their count is printed.",
    )
    p.add_argument("--sae", required=True, help="SAE folder (nullsae, SAELens or sparsify format)")
    p.add_argument("--layer", type=int, required=True, help="layer the SAE reads (output of block ℓ)")
    p.add_argument("--model", default="smollm2", help="model the SAE belongs to (default: smollm2)")
    p.add_argument("--variant", default="trained", help="model variant (default: trained)")
    p.add_argument("--facts", default=None, help="facts JSON shaped like nullsae/assets/ravel_facts.json (default: the bundled facts)")
    p.add_argument(
        "--grid",
        default="1,4,16,64,256,1024,4096",
        help="latent-set sizes tried on the training entities, capped at m (default: 1,4,16,64,256,1024,4096)",
    )
    p.add_argument(
        "--min-facts", type=int, default=5, help="correct entities an attribute needs per split, else it is skipped (default: 5)"
    )
    p.add_argument("--max-pairs", type=int, default=48, help="base/source pairs per attribute and split (default: 48)")
    p.add_argument("--seed", type=int, default=0, help="seed of the entity split and the pairs (default: 0)")
    p.add_argument(
        "--out",
        default=None,
        help="result JSON (default: runs/editing-layer<L>-<hash of the SAE path>.json; the SAE's folder is never written)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.commands import int_list
    from nullsae.commands.ls import results_path
    from nullsae.editing import EditingConfig, load_facts, prepare_facts, run_editing
    from nullsae.errors import UserError
    from nullsae.io_utils import atomic_write_text
    from nullsae.models import load_model, make_variant
    from nullsae.sae.io import load_sae

    grid = int_list(args.grid, "--grid")
    if not grid or min(grid) < 1 or args.min_facts < 2 or args.max_pairs < 1:
        raise UserError("--grid must list positive integers, --min-facts be at least 2 and --max-pairs positive")
    cfg = EditingConfig(facts=args.facts, n_latents_grid=grid, min_facts=args.min_facts, max_pairs=args.max_pairs, seed=args.seed)
    facts = load_facts(cfg.facts)  # a bad facts file fails before the model loads
    sae = load_sae(args.sae)
    loaded, _ = make_variant(load_model(args.model), args.variant)
    prep = prepare_facts(loaded, args.layer, cfg, facts)
    c = prep.counts
    print(
        f"facts the model answers right before any intervention: {c.n_facts_correct}/{c.n_facts} facts, {c.n_prompts_correct}/{c.n_prompts} prompts ({c.n_prompts_dropped} prompts dropped)"
    )
    for name, a in c.per_attribute.items():
        print(f"  {name:<20} {a.n_facts_correct:>3}/{a.n_facts:<3} facts  {a.n_prompts_correct:>3}/{a.n_prompts:<3} prompts")
    result = run_editing(sae, loaded, args.layer, cfg, prepared=prep)
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"{'attribute':<20} {'latents':>7} {'cause':>6} {'iso':>6} {'score':>6}  (eval pairs)")
    for a in result.attributes:
        print(
            f"{a.attribute:<20} {a.n_latents:>7} {a.cause:>6.3f} {a.isolation:>6.3f} {a.score:>6.3f}  ({a.n_cause} cause, {a.n_isolation} isolation)"
        )
    if result.score is not None:
        print(f"{'mean':<20} {'':>7} {result.cause:>6.3f} {result.isolation:>6.3f} {result.score:>6.3f}")
    else:
        print("no attribute could be scored")
    out = Path(args.out) if args.out else results_path(args.sae, f"editing-layer{args.layer}", ".json")
    atomic_write_text(out, result.model_dump_json(indent=1))
    print(f"results: {out}")
    return 0
