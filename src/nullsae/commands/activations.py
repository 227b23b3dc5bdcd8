"""`nullsae activations`: fill the on-disk activation cache for a model variant at some layers."""

from __future__ import annotations

import argparse

NAMES = {"null.seed": "seed", "null.control_noise": "noise", "null.control_sigma": "sigma"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from nullsae.config import ActivationsConfig, add_flags

    p = subparsers.add_parser(
        "activations",
        help="compute and cache residual activations of a model variant",
        description="Compute residual-stream activations of a model (or one of its null variants) at the given layers over a split of a text source, and cache them on disk (safetensors shards). Reruns reuse the cache.",
    )
    flags = add_flags(p, ActivationsConfig, names=NAMES)
    p.set_defaults(func=run, flags=flags)


def run(args: argparse.Namespace) -> int:
    from nullsae.config import ActivationsConfig, config_from_args
    from nullsae.model_shape import check_layer_in_config

    cfg = config_from_args(ActivationsConfig, args, args.flags)
    check_layer_in_config(cfg.model, cfg.layers, cfg.revision)  # from the model's config, before its weights load

    from nullsae.activations import cache_activations

    directory, report = cache_activations(cfg)
    for layer in report.cached:
        print(f"cached   layer {layer}: {report.n_tokens} tokens x {report.d_model} already in {directory / f'layer_{layer}'}")
    for layer in report.written:
        print(f"wrote    layer {layer}: {report.n_tokens} tokens x {report.d_model} to {directory / f'layer_{layer}'}")
    return 0
