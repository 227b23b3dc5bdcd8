"""`nullsae autointerp`: explain and score latents of one SAE (docs/spec.md#autointerp); prints the summary, writes Parquet."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "autointerp",
        help="explain and score SAE latents (detection, fuzzing, embedding, token list)",
        description="Auto-interpretability of one SAE: sample latents that fire in at least --min-examples windows, explain each from its top "
        "windows, score the explanations on held-out activating and random windows, and report AUROC per latent and pooled with bootstrap "
        "intervals. Activations come from a cache folder written by `nullsae activations` (--activations) or from a live pass of --model. "
        "Per-latent rows go to OUT/latents.parquet as they are scored; rerunning with the same OUT resumes.",
    )
    p.add_argument("--sae", required=True, help="SAE folder (or a file in it) saved by nullsae, SAELens, sparsify or dictionary_learning")
    p.add_argument("--layer", type=int, default=None, help="layer the SAE reads (output of block ℓ; default: the layer its files record)")
    p.add_argument("--activations", default=None, help="activation cache folder of `nullsae activations` (default: a live pass of --model)")
    p.add_argument(
        "--model", default=None, help="model for a live pass and its tokenizer (default: the model the SAE's files record, else smollm2)"
    )
    p.add_argument("--variant", default="trained", help="model variant of a live pass (default: trained)")
    p.add_argument(
        "--tokens", type=int, default=200_000, help="tokens of the live pass, interp split of the bundled corpus (default: 200000)"
    )
    p.add_argument("--explainer", default="tokens", help="tokens | hf:<model> (e.g. hf:smollm2) | openai:<model> (default: tokens)")
    p.add_argument(
        "--scorers",
        default=None,
        help="comma list of detection, fuzzing, embedding, tokens (default: tokens,embedding for the tokens explainer, else detection,fuzzing,embedding)",
    )
    p.add_argument("--scorer-llm", default=None, help="chat model of detection/fuzzing (default: the explainer's)")
    p.add_argument("--latents", type=int, default=100, help="latents sampled (default: 100)")
    p.add_argument("--min-examples", type=int, default=200, help="latents firing in fewer windows are not sampled (default: 200)")
    p.add_argument("--window", type=int, default=32, help="tokens per example window (default: 32)")
    p.add_argument(
        "--out",
        default=None,
        help="result folder (default: runs/autointerp-<explainer>-<hash of the SAE path>; the SAE's folder is never written)",
    )
    p.add_argument("--llm-cache", default=None, help="prompt → response cache folder (default: <out>/llm-cache)")
    p.add_argument(
        "--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL); the key comes from $OPENAI_API_KEY"
    )
    p.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight (default: 8)")
    p.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request (default: 60)")
    p.add_argument("--max-retries", type=int, default=3, help="openai: retries after timeouts and 5xx (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of latent and example sampling (default: 0)")
    p.set_defaults(func=run)


def check_setup(explainer: str, scorers: list[str], scorer_llm: str | None) -> None:
    """Explainer, scorers and scorer LLM that cannot work, refused before any model loads."""
    from nullsae.autointerp.scorers import SCORERS
    from nullsae.errors import UserError

    llms = {"--explainer": explainer} if explainer != "tokens" else {}
    if scorer_llm is not None:
        llms["--scorer-llm"] = scorer_llm
    for flag, spec in llms.items():
        kind, _, model = spec.partition(":")
        if kind not in ("hf", "openai") or not model:
            raise UserError(f"{flag} '{spec}' names no LLM; write hf:<model> or openai:<model>")
    unknown = [s for s in scorers if s not in SCORERS]
    if unknown or not scorers:
        raise UserError(f"unknown scorer '{','.join(unknown)}' in --scorers; choose from {', '.join(SCORERS)}")
    llm_scorers = [s for s in scorers if s in ("detection", "fuzzing")]
    if llm_scorers and scorer_llm is None and explainer == "tokens":
        raise UserError(
            f"the {' and '.join(llm_scorers)} scorer needs an LLM and the tokens explainer is none; give --scorer-llm hf:<model> "
            "or openai:<model>, or --scorers tokens,embedding"
        )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nullsae.errors import UserError

    sae_path = Path(args.sae)
    if not sae_path.exists():
        raise UserError(f"SAE {args.sae} does not exist; give the folder or file of an SAE saved by nullsae")
    if sae_path.is_file():
        sae_path = sae_path.parent  # the weights file of an SAE folder: its cfg.json lies beside it
    if args.latents < 1 or args.min_examples < 1 or args.window < 2:
        raise UserError("--latents and --min-examples must be positive and --window at least 2")
    explainer = args.explainer
    scorers = [
        s.strip()
        for s in (args.scorers or ("tokens,embedding" if explainer == "tokens" else "detection,fuzzing,embedding")).split(",")
        if s.strip()
    ]
    check_setup(explainer, scorers, args.scorer_llm)
    from nullsae.commands.ls import results_path
    from nullsae.io_utils import check_writable_dir

    default = results_path(sae_path, f"autointerp-{explainer.replace(':', '-').replace('/', '-')}")
    out = check_writable_dir(Path(args.out) if args.out else default)

    import torch

    from nullsae.autointerp.examples import ActivationSource, ExampleConfig, sae_encoder
    from nullsae.autointerp.run import AutointerpConfig, run_autointerp
    from nullsae.locks import folder_lock
    from nullsae.models import capture_residuals, check_layers, load_model, make_variant
    from nullsae.sae.io import load_sae_source

    sae, source_info = load_sae_source(sae_path)
    sae.eval()
    if args.layer is not None and source_info.layer is not None and args.layer != source_info.layer:
        raise UserError(f"the SAE reads {source_info.hook} (layer {source_info.layer}), not --layer {args.layer}; drop --layer")
    layer = args.layer if args.layer is not None else source_info.layer
    if layer is None:
        raise UserError(f"{sae_path} does not say which layer it reads; give --layer")
    loaded = load_model(args.model or source_info.model or "smollm2")
    T = args.window
    if args.activations:
        from nullsae.activations import CachedActivations

        cache = CachedActivations(args.activations, layer)
        if cache.d_in != sae.W_dec.shape[1]:
            raise UserError(
                f"the cache holds d = {cache.d_in} activations but the SAE reads d = {sae.W_dec.shape[1]}; give the cache of its model and layer"
            )
        if cache.window % T:
            raise UserError(
                f"the cache's windows of {cache.window} tokens do not split into --window {T}; pick a divisor of {cache.window}"
            )
        tokens = cache.tokens.reshape(-1, T)

        def residuals(ids: torch.Tensor) -> torch.Tensor:
            rows = (ids[:, None] * T + torch.arange(T)).reshape(-1)
            return cache.rows(rows).view(len(ids), T, -1)
    else:
        from nullsae.data import token_windows

        check_layers([layer], loaded.n_layers)
        tokens = token_windows(loaded.tokenizer, loaded.bos_id, T, -(-args.tokens // T), split="interp", seed=args.seed)
        variant, _ = make_variant(loaded, args.variant)

        def residuals(ids: torch.Tensor) -> torch.Tensor:
            return capture_residuals(variant.model, tokens[ids], [layer])[layer].float()

    source = ActivationSource(tokens, sae_encoder(sae, residuals), n_latents=int(sae.W_dec.shape[0]))
    openai = {
        k: v
        for k, v in {
            "base_url": args.base_url,
            "concurrency": args.concurrency,
            "timeout_s": args.timeout,
            "max_retries": args.max_retries,
        }.items()
        if v is not None
    }
    cfg = AutointerpConfig(
        explainer=explainer,
        scorers=scorers,
        scorer_llm=args.scorer_llm,
        seed=args.seed,
        examples=ExampleConfig(n_latents=args.latents, min_examples=args.min_examples),
        llm_cache=args.llm_cache or str(out / "llm-cache"),
        openai=openai if any(s.startswith("openai:") for s in [explainer, args.scorer_llm or ""]) else {},
    )
    with folder_lock(out, "auto-interp output folder"):
        result = run_autointerp(source, loaded.tokenizer, cfg, out, sae_name=sae_path.name)
    sel = result.selection
    print(
        f"SAE {sae_path.name}: {sel.n_total} latents, {sel.n_removed} removed by min_examples={args.min_examples} ({sel.n_dead} dead), {len(sel.latents)} sampled"
    )
    if not sel.latents:
        print(f"no latent fires in at least {args.min_examples} windows; lower --min-examples or give more tokens")
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
