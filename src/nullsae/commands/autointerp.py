"""`nullsae autointerp`: explain and score latents of one SAE (docs/spec.md#autointerp); prints the summary, writes Parquet."""

from __future__ import annotations

import argparse

from pydantic import Field

from nullsae.autointerp.config import AutointerpConfig
from nullsae.commands import SAEModelInput


class AutointerpCommand(SAEModelInput):
    """`nullsae autointerp`'s settings: the SAE, where its activations come from, and the auto-interp setup."""

    activations: str | None = Field(
        default=None, description="activation cache folder of `nullsae activations` (default: a live pass of --model)"
    )
    tokens: int = Field(default=200_000, gt=0, description="tokens of the live pass, interp split of the bundled corpus")
    window: int = Field(default=32, ge=2, description="tokens per example window")
    autointerp: AutointerpConfig = Field(default_factory=AutointerpConfig)


NAMES = {"autointerp.openai.timeout_s": "timeout"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from nullsae.config import add_flags

    p = subparsers.add_parser(
        "autointerp",
        help="explain and score SAE latents (detection, fuzzing, embedding, token list)",
        description="Auto-interpretability of one SAE: sample latents that fire in at least --min-examples windows, explain each from its top "
        "windows, score the explanations on held-out activating and random windows, and report AUROC per latent and pooled with bootstrap "
        "intervals. Activations come from a cache folder written by `nullsae activations` (--activations) or from a live pass of --model. "
        "Per-latent rows go to OUT/latents.parquet as they are scored; rerunning with the same OUT resumes. The detection and fuzzing "
        "scorers need an LLM: an hf:/openai: --explainer or --scorer-llm.",
    )
    flags = add_flags(p, AutointerpCommand, names=NAMES)
    p.add_argument(
        "--out",
        default=None,
        help="result folder (default: runs/autointerp-<explainer>-<hash of the SAE path>; the SAE's folder is never written)",
    )
    p.set_defaults(func=run, flags=flags)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.commands import sae_and_model
    from nullsae.commands.ls import results_path
    from nullsae.config import config_from_args
    from nullsae.io_utils import check_writable_dir

    cfg = config_from_args(AutointerpCommand, args, args.flags)  # a setup that cannot work is refused here
    ac = cfg.autointerp
    opened, model, layer = sae_and_model(cfg)
    default = results_path(opened.folder, f"autointerp-{ac.explainer.replace(':', '-').replace('/', '-')}")
    out = check_writable_dir(Path(args.out) if args.out else default)
    if ac.llm_cache is None:
        ac = ac.model_copy(update={"llm_cache": str(out / "llm-cache")})
    return _explain_and_print(cfg, ac, opened, model, layer, out)


def _explain_and_print(cfg: AutointerpCommand, ac: AutointerpConfig, opened, model: str, layer: int, out) -> int:
    """Encode the activations with the SAE, run auto-interp into `out`, print the summary."""
    from nullsae.autointerp.run import run_autointerp
    from nullsae.autointerp.source import cached_source, live_source
    from nullsae.locks import folder_lock
    from nullsae.models import load_model

    sae = opened.sae.eval()
    loaded = load_model(model)  # its tokenizer decodes the windows either way
    if cfg.activations:
        source = cached_source(sae, cfg.activations, layer, cfg.window)
    else:
        source = live_source(sae, loaded, cfg.variant, layer, cfg.window, cfg.tokens, ac.seed)
    with folder_lock(out, "auto-interp output folder"):
        result = run_autointerp(source, loaded.tokenizer, ac, out, sae_name=opened.folder.name)
    sel = result.selection
    min_examples = ac.examples.min_examples
    print(
        f"SAE {opened.folder.name}: {sel.n_total} latents, {sel.n_removed} removed by min_examples={min_examples} ({sel.n_dead} dead), {len(sel.latents)} sampled"
    )
    if not sel.latents:
        print(f"no latent fires in at least {min_examples} windows; lower --min-examples or give more tokens")
    if result.n_explain_failed:
        print(f"explanations failed for {result.n_explain_failed} latents (their items count as failed)")
    for s in result.summaries:
        head = f"{s.explainer:>12} / {s.scorer:<9}"
        if not s.n_latents_scored:
            print(
                f"{head}  AUROC n/a: no latent had both activating and non-activating windows scored (a latent firing in every window has no negatives)"
            )
            continue
        ba = f"  balanced acc {s.balanced_accuracy.estimate:.3f}" if s.balanced_accuracy else ""
        print(
            f"{head}  AUROC mean {s.auroc_mean.estimate:.3f} [{s.auroc_mean.low:.3f}, {s.auroc_mean.high:.3f}]"
            f"  pooled {s.auroc_pooled.estimate:.3f} [{s.auroc_pooled.low:.3f}, {s.auroc_pooled.high:.3f}]{ba}"
            f"  latents {s.n_latents_scored}/{s.n_latents}  failed items {s.n_failed_items}/{s.n_items}"
        )
    print(f"per-latent results: {result.latents_path}")
    return 0
