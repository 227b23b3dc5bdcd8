"""`nullsae activations`: fill the on-disk activation cache for a model variant at some layers."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "activations",
        help="compute and cache residual activations of a model variant",
        description="Compute residual-stream activations of a model (or one of its null variants) at the given layers over a split of a text source, and cache them on disk (safetensors shards). Reruns reuse the cache.",
    )
    p.add_argument("--model", default="smollm2", help="'smollm2' (bundled), a hub id, a local folder or a .gguf file (default: smollm2)")
    p.add_argument("--revision", default=None, help="hub revision of --model")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a hub model to run its own code")
    p.add_argument(
        "--variant", default="trained", help="trained | rerandomized | rerandomized-excl-emb | step0 | control (default: trained)"
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the variant (default: 42)")
    p.add_argument("--keep-norms", action="store_true", help="keep layer norms at trained values in re-randomised variants")
    p.add_argument("--noise", default="fresh", choices=["fresh", "per-token"], help="control-variant noise mode (default: fresh)")
    p.add_argument("--sigma", type=float, default=1.0, help="control-variant noise std (default: 1)")
    p.add_argument("--layers", required=True, help="comma-separated layers, e.g. 2,6 (layer ℓ = output of block ℓ)")
    p.add_argument("--tokens", type=int, required=True, help="number of tokens to cache (rounded up to whole windows)")
    p.add_argument("--window", type=int, default=128, help="tokens per window, BOS included (default: 128)")
    p.add_argument("--data", default="bundled", help="bundled | hf:DATASET[:SPLIT] | a .txt/.jsonl/.parquet file (default: bundled)")
    p.add_argument("--text-field", default="text", help="text field of a jsonl/parquet/HF source (default: text)")
    p.add_argument(
        "--split", default="train", choices=["train", "eval", "interp"], help="which disjoint split of the documents (default: train)"
    )
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/eval/interp split (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default: 16)")
    p.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="storage dtype of the activations (default: float32)"
    )
    p.add_argument("--cache-dir", default=None, help="cache root (default: $NULLSAE_CACHE or ~/.cache/nullsae)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nullsae.activations import DataSlice, cache_dir, fill_cache
    from nullsae.commands import int_list
    from nullsae.data import token_windows
    from nullsae.devices import resolve_device
    from nullsae.errors import UserError
    from nullsae.models import VARIANTS, check_layers, load_model, make_variant
    from nullsae.resources import check_disk

    layers = int_list(args.layers, "--layers")
    if args.variant not in VARIANTS:
        raise UserError(f"unknown variant '{args.variant}'; choose one of {', '.join(VARIANTS)}")
    if args.tokens < 1:
        raise UserError(f"--tokens must be positive, got {args.tokens}")
    if args.window < 2:
        raise UserError(f"--window must be at least 2, got {args.window}")
    loaded = load_model(args.model, revision=args.revision, trust_remote_code=args.trust_remote_code)
    layers = check_layers(layers, loaded.n_layers)
    device = resolve_device(args.device)
    data = DataSlice(
        source=args.data,
        split=args.split,
        seed=args.data_seed,
        window=args.window,
        n_windows=-(-args.tokens // args.window),
        text_field=args.text_field,
    )
    windows = token_windows(
        loaded.tokenizer,
        loaded.bos_id,
        data.window,
        data.n_windows,
        source=data.source,
        split=data.split,
        seed=data.seed,
        text_field=data.text_field,
    )
    variant, manifest = make_variant(loaded, args.variant, seed=args.seed, keep_norms=args.keep_norms, noise=args.noise, sigma=args.sigma)
    variant.model.to(device)
    directory = cache_dir(loaded.name, manifest.slug, data, root=args.cache_dir)
    itemsize = 4 if args.dtype == "float32" else 2
    check_disk(
        windows.numel() * loaded.d_model * itemsize * len(layers),
        directory,
        f"caching {len(layers)} layers of {windows.numel():,} tokens",
        "lower --tokens, cache fewer --layers at once, use --dtype bfloat16, or give another --cache-dir",
    )
    manifest.write(directory / "manifest.json")
    report = fill_cache(variant, windows, layers, directory, batch_size=args.batch_size, dtype=args.dtype)
    for layer in report.cached:
        print(f"cached   layer {layer}: {report.n_tokens} tokens x {report.d_model} already in {directory / f'layer_{layer}'}")
    for layer in report.written:
        print(f"wrote    layer {layer}: {report.n_tokens} tokens x {report.d_model} to {directory / f'layer_{layer}'}")
    return 0
