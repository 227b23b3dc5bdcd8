"""`nullsae edit`: RAVEL-style causal editing with one SAE (cause, isolation, score per attribute); writes JSON."""

from __future__ import annotations

import argparse

from pydantic import Field

from nullsae.commands import SAEModelInput
from nullsae.config import EditingConfig, add_flags


class EditCommand(SAEModelInput):
    """`nullsae edit`'s settings: the SAE and the editing evaluation."""

    editing: EditingConfig = Field(default_factory=EditingConfig)


NAMES = {"editing.n_latents_grid": "grid"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "edit",
        help="RAVEL-style causal editing: do the SAE's latents for an attribute change it, and only it?",
        description="Interchange interventions on SAE latents at the entity's last token: for each attribute (country capital, continent, "
        "language; city country, continent, language in the bundled facts) the latents that best separate its values are selected on half "
        "of the entities (by η², or by SAEBench's learned mask with --selection mask), then scored on the other half: cause = the attribute "
        "takes the source entity's value, isolation = the other attributes keep theirs, score = their mean. Only facts the model answers "
        "right are used; their count is printed.",
    )
    flags = add_flags(p, EditCommand, names=NAMES)
    p.add_argument(
        "--out",
        default=None,
        help="result JSON (default: runs/editing-layer<L>-<hash of the SAE path>.json; the SAE's folder is never written)",
    )
    p.set_defaults(func=run, flags=flags)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.commands import check_layer_early, loaded_variant, sae_and_model
    from nullsae.commands.ls import results_path
    from nullsae.config import config_from_args
    from nullsae.io_utils import atomic_write_text

    cfg = config_from_args(EditCommand, args, args.flags)
    ec = cfg.editing
    check_layer_early(cfg)

    from nullsae.editing import load_facts, prepare_facts, run_editing

    facts = load_facts(ec.facts)  # a bad facts file fails before the SAE and the model load
    opened, model, layer = sae_and_model(cfg)
    loaded = loaded_variant(model, cfg.variant)
    prep = prepare_facts(loaded, layer, ec, facts)
    c = prep.counts
    print(
        f"facts the model answers right before any intervention: {c.n_facts_correct}/{c.n_facts} facts, {c.n_prompts_correct}/{c.n_prompts} prompts ({c.n_prompts_dropped} prompts dropped)"
    )
    for name, a in c.per_attribute.items():
        print(f"  {name:<20} {a.n_facts_correct:>3}/{a.n_facts:<3} facts  {a.n_prompts_correct:>3}/{a.n_prompts:<3} prompts")
    result = run_editing(opened.sae, loaded, layer, ec, prepared=prep)
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    print(f"{'attribute':<20} {'latents':>7} {'cause':>6} {'iso':>6} {'score':>6}  (eval pairs; selection: {ec.selection})")
    for a in result.attributes:
        print(
            f"{a.attribute:<20} {a.n_latents:>7} {a.cause:>6.3f} {a.isolation:>6.3f} {a.score:>6.3f}  ({a.n_cause} cause, {a.n_isolation} isolation)"
        )
    if result.score is not None:
        print(f"{'mean':<20} {'':>7} {result.cause:>6.3f} {result.isolation:>6.3f} {result.score:>6.3f}")
    else:
        print("no attribute could be scored")
    out = Path(args.out) if args.out else results_path(opened.folder, f"editing-layer{layer}", ".json")
    atomic_write_text(out, result.model_dump_json(indent=1))
    print(f"results: {out}")
    return 0
