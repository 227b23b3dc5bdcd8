"""Why does EV order the SmolLM2 variants unlike Heap et al.'s Fig. 3?

For each variant of the bundled SmolLM2 this measures, on held-out windows, what the residual stream
looks like (share of Σ‖x − x̄‖² at the BOS rows, mean norms, participation ratio, top-PC and
top-dimension variance shares, kurtosis) at a few layers, and trains the demo's SAE (topk, m = 4·d
unless --expansion, k = 32, batch 512, lr 1e-3) at one or more layers on three views of the same cached
activations (a budget past the cached tokens repeats them, each epoch in a new order):
  raw        the residual as the demo trains on it (BOS rows left out);
  saelens    scaled by one constant so that mean ‖x‖ = √d (SAELens' `expected_average_only_in`);
  standard   each dimension centred and divided by its std (every direction of the basis weighs the same).
EV (docs/spec.md#reconstruction, package metric) is read at each budget in the SAE's own space and mapped back to raw
space, with and without the BOS rows; the raw SAE also gets the CE loss score (docs/spec.md#downstream) and,
with --auroc-latents N, the auto-interp AUROC (docs/spec.md#autointerp) of N sampled latents: the no-LLM
`tokens` explainer scored by the `embedding` scorer (the bundled all-MiniLM-L6-v2) and the `tokens` scorer,
on windows of the interpretation split, as the demo scores them.

Every (variant, layer, view, budget) result is written to OUT/results.json as soon as it exists, and
SAE training checkpoints, so a killed run resumes. Run:
    OMP_NUM_THREADS=1 python benchmarks/ev_ordering.py --out /tmp/D-ev
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from itertools import combinations
from pathlib import Path

import torch

from nullsae.activations import CachedActivations, CachedStream, DataSlice, cache_dir, fill_cache
from nullsae.autointerp.config import AutointerpConfig
from nullsae.autointerp.examples import ActivationSource, SparseActs, sae_encoder
from nullsae.autointerp.run import run_autointerp
from nullsae.data import token_windows
from nullsae.errors import UserError
from nullsae.io_utils import atomic_write_text
from nullsae.metrics.downstream import downstream_metrics
from nullsae.metrics.reconstruction import reconstruction_metrics
from nullsae.models.hooks import capture_residuals
from nullsae.models.load import load_model
from nullsae.models.variants import make_variant
from nullsae.sae.architectures import SAE
from nullsae.sae.config import SAEConfig
from nullsae.sae.train import TrainConfig, train_saes

BATCH = 512
CONTEXT = 64
MAX_WINDOWS = 13_000  # the bundled train split holds ~841K tokens
INTERP_WINDOW = 32  # tokens per auto-interp example window, as the demo


def residual_stats(x: torch.Tensor, is_bos: torch.Tensor) -> dict[str, float | list[int]]:
    """Shape of one layer's residuals (rows × d): how much of the variance BOS rows and a few directions carry."""
    x = x.double()
    dev = (x - x.mean(0)).pow(2).sum(1)
    norms = x.norm(dim=1)
    rest = x[~is_bos]
    xc = rest - rest.mean(0)
    var_dim = xc.pow(2).mean(0)
    eig = torch.linalg.eigvalsh(xc.T @ xc / len(xc)).flip(0).clamp_min(0)
    std = xc / var_dim.sqrt().clamp_min(1e-12)
    eig_std = torch.linalg.eigvalsh(std.T @ std / len(std)).flip(0).clamp_min(0)
    kurt = (xc.pow(4).mean(0) / var_dim.pow(2).clamp_min(1e-24)) - 3
    top_dims = torch.argsort(var_dim, descending=True)[:5]
    return {
        "bos_row_share": float(is_bos.double().mean()),
        "bos_var_share": float(dev[is_bos].sum() / dev.sum()),
        "norm_bos": float(norms[is_bos].mean()),
        "norm_other": float(norms[~is_bos].mean()),
        "pr": float(eig.sum() ** 2 / eig.pow(2).sum()),
        "top1_pc": float(eig[0] / eig.sum()),
        "top10_pc": float(eig[:10].sum() / eig.sum()),
        "top32_pc": float(eig[:32].sum() / eig.sum()),
        "pr_standardised": float(eig_std.sum() ** 2 / eig_std.pow(2).sum()),
        "top5_dims_var_share": float(var_dim[top_dims].sum() / var_dim.sum()),
        "top5_dims": top_dims.tolist(),
        "kurtosis_median": float(kurt.median()),
        "kurtosis_max": float(kurt.max()),
    }


def token_lookup_ev(cache: CachedActivations, x_eval: torch.Tensor, eval_ids: torch.Tensor, bos_id: int) -> float:
    """EV (docs/spec.md#reconstruction) on the eval rows of x̂ = the mean training activation of the row's token id (the global
    mean for ids unseen in training): how far the residual is a function of the current token alone."""
    keep = cache.token_ids != bos_id
    ids = cache.token_ids[keep]
    vocab = int(max(int(ids.max()), int(eval_ids.max()))) + 1
    sums = torch.zeros(vocab, cache.d_in, dtype=torch.float64)
    counts = torch.zeros(vocab, dtype=torch.float64)
    rows = torch.nonzero(keep).squeeze(1)
    for b in range(0, len(rows), 65536):
        idx = rows[b : b + 65536]
        sums.index_add_(0, cache.token_ids[idx], cache.rows(idx).double())
        counts.index_add_(0, cache.token_ids[idx], torch.ones(len(idx), dtype=torch.float64))
    means = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], sums.sum(0) / counts.sum())
    rec = means[eval_ids].float()
    return reconstruction_metrics(x_eval, rec, torch.ones(len(x_eval), 1)).ev


class Mapped:
    """A batch stream seen through a fixed map (the SAE trains on f(x))."""

    def __init__(self, base: CachedStream, f) -> None:
        self.base, self.f, self.d_in = base, f, base.d_in

    def batches(self, start_step: int = 0):
        return (self.f(x) for x in self.base.batches(start_step))


def views(sample: torch.Tensor) -> dict[str, tuple]:
    """(forward, inverse) map of each view, fitted on a sample of training rows."""
    d = sample.shape[1]
    scale = math.sqrt(d) / float(sample.norm(dim=1).mean())
    mu, sd = sample.mean(0), sample.std(0).clamp_min(1e-6)
    return {
        "raw": (lambda x: x, lambda x: x),
        "saelens": (lambda x: x * scale, lambda x: x / scale),
        "standard": (lambda x: (x - mu) / sd, lambda x: x * sd + mu),
    }


def autointerp_auroc(
    sae: SAE, x: torch.Tensor, tokens: torch.Tensor, bos_id: int, tokenizer, n_latents: int, out: Path
) -> dict[str, float]:
    """Pooled auto-interp AUROC with its latent-bootstrap interval per scorer, for `n_latents` latents sampled
    among those firing in at least 20 of the windows; `x` (N, T, d) are the residuals of `tokens` (N, T),
    cut into windows of INTERP_WINDOW tokens, BOS activations left out (the demo's skip_bos)."""
    tokens = tokens.reshape(-1, INTERP_WINDOW)
    x = x.reshape(tokens.shape[0], INTERP_WINDOW, -1)
    codes = sae_encoder(sae, lambda ids: x[ids])

    def encode(ids: torch.Tensor) -> SparseActs:
        a = codes(ids)
        keep = tokens[a.window, a.pos] != bos_id
        return SparseActs(a.window[keep], a.pos[keep], a.latent[keep], a.value[keep])

    examples = dict(n_latents_sampled=n_latents, min_examples=20, top_k=200, n_explain=20, per_bin=2, n_negative=20, reservoir=200)
    cfg = AutointerpConfig.model_validate({"explainer": "tokens", "scorers": ["embedding", "tokens"], "examples": examples, "n_boot": 1000})
    shutil.rmtree(out, ignore_errors=True)  # a rerun scores the SAE afresh
    source = ActivationSource(tokens, encode, sae.cfg.n_latents, batch_windows=256, progress=False)
    res = run_autointerp(source, tokenizer, cfg, out, out.name, progress=False)
    row: dict[str, float] = {"auroc_latents": len(res.selection.latents)}
    for s in res.summaries:
        row[f"auroc_{s.scorer}"] = s.auroc_pooled.estimate
        row[f"auroc_{s.scorer}_low"] = s.auroc_pooled.low
        row[f"auroc_{s.scorer}_high"] = s.auroc_pooled.high
    return row


VARIANTS = ("trained", "rerandomized", "rerandomized-excl-emb", "step0", "control", "control-embsigma")


def draw(results: dict, folder: Path, layer: int) -> None:
    """ev_ordering_budget.png: EV by variant and budget per view; ev_ordering_shape.png: participation
    ratio and top-PC share by variant and layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    for ax, (view, field, title) in zip(
        axes,
        [
            ("raw", "ev_raw", "raw residual (the demo's EV)"),
            ("standard", "ev_own", "per-dimension standardised"),
            ("standard", "ev_raw", "standardised SAE, EV in raw space"),
        ],
    ):
        for v in VARIANTS:
            pts = sorted(
                (int(k.split("|")[3]), r[field]) for k, r in results.items() if k.startswith(f"{v}|L{layer}|{view}|") and k.count("|") == 3
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=v)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("SAE training tokens")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"EV at layer {layer} (BOS rows left out)")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "SmolLM2-135M, topk m = 4·576, k = 32. Heap et al. Fig. 3 (Pythia): trained ≈ re-randomised ≈ step-0, control far lower",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(folder / "ev_ordering_budget.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for v in VARIANTS:
        pts = sorted((int(k.split("|")[1][1:]), r) for k, r in results.items() if k.startswith(f"{v}|L") and k.endswith("|stats"))
        if pts:
            axes[0].plot([p[0] for p in pts], [p[1]["pr"] for p in pts], marker="o", label=v)
            axes[1].plot([p[0] for p in pts], [p[1]["top1_pc"] for p in pts], marker="o", label=v)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("participation ratio (BOS rows left out)")
    axes[1].set_ylabel("variance share of the top principal component")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "ev_ordering_shape.png", dpi=110)
    plt.close(fig)


def _ending(results: dict, variant: str, suffix: str) -> list[tuple[str, dict]]:
    """(key, row) of the variant's per-layer results whose key ends with `suffix`, by layer, then budget where the key has one."""
    keys = [k for k in results if k.startswith(f"{variant}|L") and k.endswith(suffix)]
    return [
        (k, results[k]) for k in sorted(keys, key=lambda k: [int(p.lstrip("L")) for p in k.split("|")[1:-1] if p.lstrip("L").isdigit()])
    ]


def tables(results: dict, layer: int) -> str:
    """Markdown tables of the residual statistics and of EV by variant, view and budget."""
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    out = [
        "| variant | layer | BOS rows' share of Σ‖x − x̄‖² | mean ‖x‖ BOS / other | participation ratio | top-1 / top-10 / top-32 PC share | top-5 dims' share | PR standardised | kurtosis median / max | token-lookup EV |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for k, r in _ending(results, v, "|stats"):
            lay = int(k.split("|")[1][1:])
            lookup = results.get(f"{v}|L{lay}|lookup", {}).get("token_lookup_ev")
            out.append(
                f"| {v} | {lay} | {r['bos_var_share']:.3f} | {r['norm_bos']:.0f} / {r['norm_other']:.0f} | {r['pr']:.1f} | {r['top1_pc']:.2f} / {r['top10_pc']:.2f} / {r['top32_pc']:.2f} | "
                f"{r['top5_dims_var_share']:.2f} | {r['pr_standardised']:.0f} | {r['kurtosis_median']:.1f} / {r['kurtosis_max']:.0f} | {f(lookup)} |"
            )
    out += [
        "",
        "| variant | view | tokens | EV (BOS out) | rank-32 PCA's EV on the same rows | EV with BOS rows | EV in the view's own space | CE loss score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for k, r in sorted(
            ((k, r) for k, r in results.items() if k.startswith(f"{v}|L{layer}|") and k.count("|") == 3),
            key=lambda kr: (kr[0].split("|")[2], int(kr[0].split("|")[3])),
        ):
            pca = results.get(f"{v}|L{layer}|stats", {}).get("top32_pc")
            out.append(
                f"| {v} | {k.split('|')[2]} | {int(k.split('|')[3]):,} | {r['ev_raw']:.3f} | {f(pca)} | {r['ev_raw_with_bos']:.3f} | {r['ev_own']:.3f} | {f(r.get('ce_loss_score'))} |"
            )
    return "\n".join(out)


MEASURES = [
    ("ev_raw", "EV"),
    ("ev_standardized", "EV standardised"),
    ("auroc_embedding", "AUROC embedding"),
    ("auroc_tokens", "AUROC tokens"),
]


def _budget_rows(results: dict, layers: list[int]):
    """(variant, layer, tokens, row) of every raw-view SAE result at `layers` with the default dictionary size."""
    for v in VARIANTS:
        for lay in layers:
            pts = [(int(k.split("|")[3]), r) for k, r in results.items() if k.startswith(f"{v}|L{lay}|raw|") and k.count("|") == 3]
            for b, r in sorted(pts, key=lambda p: p[0]):
                yield v, lay, b, r


def draw_auroc(results: dict, folder: Path, layers: list[int]) -> None:
    """ev_ordering_auroc.png: per layer, raw EV, standardised EV and both scorers' AUROC by variant and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(layers), len(MEASURES), figsize=(18, 3.6 * len(layers)), squeeze=False)
    rows = list(_budget_rows(results, layers))
    for i, lay in enumerate(layers):
        for j, (field, title) in enumerate(MEASURES):
            ax = axes[i][j]
            for v in VARIANTS:
                pts = [
                    (b, r[field], r.get(f"{field}_low"), r.get(f"{field}_high"))
                    for vv, ll, b, r in rows
                    if vv == v and ll == lay and field in r
                ]
                if not pts:
                    continue
                color = f"C{VARIANTS.index(v)}"  # one colour per variant in every panel, whichever variants a panel has
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=v, color=color)
                if pts[0][2] is not None:
                    ax.fill_between([p[0] for p in pts], [p[2] for p in pts], [p[3] for p in pts], color=color, alpha=0.12)
            if field.startswith("auroc"):
                ax.axhline(0.5, color="grey", ls=":", lw=1)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("SAE training tokens")
            ax.set_title(f"layer {lay}: {title}", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(
        "SmolLM2-135M, topk m = 4·576, k = 32; AUROC: tokens explainer, embedding (all-MiniLM-L6-v2) and token-list scorers, "
        "95 % latent-bootstrap band. Heap et al. Fig. 3 (Pythia): trained ≈ re-randomised ≈ step-0 > control",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(folder / "ev_ordering_auroc.png", dpi=110)
    plt.close(fig)


def _overlap(a: dict, b: dict, field: str) -> bool:
    """Whether two results' 95 % intervals of `field` overlap."""
    return a[f"{field}_low"] <= b[f"{field}_high"] and b[f"{field}_low"] <= a[f"{field}_high"]


def ordering_table(results: dict, layers: list[int]) -> str:
    """Markdown table with one row per layer, budget and measure, a column per variant and the variants in
    descending order; an AUROC pair reads '≈' where the two 95 % intervals overlap, '>' where they do not.
    For AUROC it also lists every pair of variants whose intervals do not overlap, and the variants whose interval excludes 0.5."""
    rows = list(_budget_rows(results, layers))
    variants = [v for v in VARIANTS if any(vv == v for vv, _, _, _ in rows)]
    out = [
        f"| layer | tokens | measure | {' | '.join(variants)} | order | intervals apart | interval excludes 0.5 |",
        "|---|---|---|" + "---|" * (len(variants) + 3),
    ]
    for lay in layers:
        for b in sorted({bb for _, ll, bb, _ in rows if ll == lay}):
            got = {v: r for v, ll, bb, r in rows if ll == lay and bb == b}
            for field, title in MEASURES:
                have = sorted(((v, r) for v, r in got.items() if r.get(field) is not None), key=lambda vr: -vr[1][field])
                order = have[0][0] if have else ""
                for (_, hi), (v, lo) in zip(have, have[1:]):
                    order += f" {'≈' if field.startswith('auroc') and _overlap(lo, hi, field) else '>'} {v}"
                apart = chance = "–"
                if field.startswith("auroc"):
                    apart = ", ".join(f"{a}/{c}" for (a, ra), (c, rc) in combinations(have, 2) if not _overlap(ra, rc, field)) or "none"
                    chance = ", ".join(v for v, r in have if not r[f"{field}_low"] <= 0.5 <= r[f"{field}_high"]) or "none"
                cells = " | ".join("–" if got.get(v, {}).get(field) is None else f"{got[v][field]:.3f}" for v in variants)
                out.append(f"| {lay} | {b:,} | {title} | {cells} | {order} | {apart} | {chance} |")
    return "\n".join(out)


def fit_check(base, name: str, folder: Path, layers: list[int], eval_w: torch.Tensor, n_windows: int) -> dict[str, dict]:
    """EV of the latest raw SAE checkpoint of `name` in `folder` on rows it trained on (the first `n_windows`
    cached windows), on as many windows of the train split past the cached ones, and on the eval windows:
    a budget that repeats its cached tokens can fit (memorise) them and not the distribution."""
    caches = list((folder / "cache").glob(f"activations/*/{name}/*/meta.json"))
    if len(caches) != 1:
        raise UserError(f"{folder} holds {len(caches)} activation caches of {name}; expected one")
    bos = base.bos_id
    loaded, _ = make_variant(base, name)
    n_cached = CachedActivations(caches[0].parent, layers[0]).n_rows // CONTEXT
    unseen_w = token_windows(base.tokenizer, bos, CONTEXT, n_cached + n_windows, split="train")[n_cached:]
    with torch.no_grad():
        acts = {
            part: [capture_residuals(loaded.model, w[b : b + 16], layers) for b in range(0, len(w), 16)]
            for part, w in [("unseen", unseen_w), ("eval", eval_w[:n_windows])]
        }
    out = {}
    for lay in layers:
        ckpt = torch.load(folder / "ckpt" / f"{name}-L{lay}-raw-x4" / "trainer.pt", weights_only=True, map_location="cpu")
        sae = SAE(SAEConfig(arch="topk", d_in=base.d_model, n_latents=4 * base.d_model, k=32, seed=0))
        sae.load_state_dict(ckpt["saes"]["raw"]["model"])
        sae.eval()
        cache = CachedActivations(caches[0].parent, lay)
        seen = torch.arange(n_windows * CONTEXT)
        parts = {"seen": (cache.rows(seen), cache.token_ids[seen])}
        parts["unseen"] = (torch.cat([a[lay].reshape(-1, base.d_model).float() for a in acts["unseen"]]), unseen_w.reshape(-1))
        parts["eval"] = (torch.cat([a[lay].reshape(-1, base.d_model).float() for a in acts["eval"]]), eval_w[:n_windows].reshape(-1))
        row: dict[str, float] = {}
        with torch.no_grad():
            for part, (x, ids) in parts.items():
                x = x[ids != bos]
                z = sae.encode(x)
                row[f"ev_{part}"] = reconstruction_metrics(x, sae.decode(z), z).ev
        out[f"{name}|L{lay}|raw|{int(ckpt['step']) * BATCH}|fit"] = row
    return out


def fit_table(results: dict) -> str:
    """Markdown table of the fit checks: EV on seen training rows, unseen train-split rows and eval rows."""
    out = [
        "| variant | layer | tokens | EV seen training rows | EV unseen train-split rows | EV eval rows |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        for k, r in _ending(results, v, "|fit"):
            _, lay, _, b, _ = k.split("|")
            out.append(f"| {v} | {lay[1:]} | {int(b):,} | {r['ev_seen']:.3f} | {r['ev_unseen']:.3f} | {r['ev_eval']:.3f} |")
    return "\n".join(out)


def auroc_table(results: dict, layers: list[int]) -> str:
    """Markdown table of EV, standardised EV, CE loss score and AUROC by variant, layer and budget."""
    f = lambda r, k: "–" if r.get(k) is None else f"{r[k]:.3f}"  # noqa: E731
    ci = lambda r, k: "–" if r.get(k) is None else f"{r[k]:.3f} [{r[k + '_low']:.3f}, {r[k + '_high']:.3f}]"  # noqa: E731
    out = [
        "| variant | layer | tokens | EV | EV standardised | CE loss score | AUROC embedding [95 % CI] | AUROC tokens [95 % CI] | latents |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v, lay, b, r in _budget_rows(results, layers):
        out.append(
            f"| {v} | {lay} | {b:,} | {f(r, 'ev_raw')} | {f(r, 'ev_standardized')} | {f(r, 'ce_loss_score')} | "
            f"{ci(r, 'auroc_embedding')} | {ci(r, 'auroc_tokens')} | {r.get('auroc_latents', '–')} |"
        )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, nargs="+", default=[6], help="layers the SAEs are trained at (one cache pass for all)")
    ap.add_argument("--stats-layers", type=int, nargs="+", default=[2, 6, 10])
    ap.add_argument(
        "--plan",
        nargs="+",
        default=[
            "trained:262144:1048576",
            "rerandomized:262144:1048576",
            "control:131072:262144",
            "rerandomized-excl-emb:131072:262144",
            "step0:131072:262144",
            "control-embsigma:131072:262144",
        ],
        help="variant:cached_tokens:max_budget (a budget past the cached tokens repeats them in new epochs); "
        "control-embsigma is the control with σ = the trained embedding's std",
    )
    ap.add_argument("--budgets", type=int, nargs="+", default=[65536, 262144, 1048576])
    ap.add_argument("--expansion", type=int, default=4, help="m = expansion · d (results of another expansion than 4 are keyed '|x<R>')")
    ap.add_argument("--eval-windows", type=int, default=256)
    ap.add_argument("--ce-windows", type=int, default=32, help="eval windows of the CE loss score (0: none)")
    ap.add_argument("--auroc-latents", type=int, default=0, help="latents of the raw SAE's auto-interp AUROC at each budget (0: none)")
    ap.add_argument("--interp-windows", type=int, default=512, help="windows of the interpretation split the AUROC reads")
    ap.add_argument("--figures", type=Path, default=None, help="only draw the figures of OUT/results.json into this folder")
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="with --figures: more result folders to read")
    ap.add_argument(
        "--draw",
        choices=["ev", "auroc"],
        default="ev",
        help="with --figures: ev = the budget and shape figures and tables at the first layer; auroc = EV, CE and AUROC at every layer",
    )
    ap.add_argument("--stats-only", action="store_true", help="only the residual statistics (no cache, no SAE)")
    ap.add_argument(
        "--fit-check",
        nargs="+",
        default=[],
        metavar="VARIANT:FOLDER",
        help="only the EV of each FOLDER's latest raw SAEs of VARIANT (at --layers) on 256 seen training windows, "
        "256 unseen train-split windows and 256 eval windows; results to OUT",
    )
    ap.add_argument("--views", nargs="+", default=["raw:1048576", "standard:262144", "saelens:262144"], help="view:max_budget")
    args = ap.parse_args()
    if args.figures is not None:
        results = {}
        for out in [args.out, *args.merge]:
            results.update(json.loads((out / "results.json").read_text()))
        if args.draw == "auroc":
            draw_auroc(results, args.figures, args.layers)
            print(auroc_table(results, args.layers), ordering_table(results, args.layers), fit_table(results), sep="\n\n")
        else:
            draw(results, args.figures, args.layers[0])
            print(tables(results, args.layers[0]))
        return
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "results.json"
    tag = "" if args.expansion == 4 else f"|x{args.expansion}"
    results: dict = json.loads(res_path.read_text()) if res_path.is_file() else {}

    def save(key: str, value: dict) -> None:
        results[key] = value
        atomic_write_text(res_path, json.dumps(results, indent=1))
        print(key, json.dumps(value)[:300], flush=True)

    base = load_model("smollm2")
    bos_id = base.bos_id
    if bos_id is None:
        raise UserError(f"{base.name} has no BOS token; the BOS rows measured here need one")
    emb = base.model.get_input_embeddings().weight
    save(
        "embedding",
        {
            "std": float(emb.std()),
            "mean_row_norm": float(emb.norm(dim=1).mean()),
            "tied": bool(base.model.config.tie_word_embeddings),
            "control_sigma1_row_norm": math.sqrt(base.d_model),
        },
    )
    eval_w = token_windows(base.tokenizer, bos_id, CONTEXT, args.eval_windows, split="eval")
    for spec in args.fit_check:
        name, folder = spec.split(":", 1)
        for key, row in fit_check(base, name, Path(folder), args.layers, eval_w, 256).items():
            save(key, row)
    if args.fit_check:
        return
    eval_bos = (eval_w == bos_id).reshape(-1)
    interp_w = token_windows(base.tokenizer, bos_id, CONTEXT, args.interp_windows, split="interp") if args.auroc_latents else None
    view_max = {v.split(":")[0]: int(v.split(":")[1]) for v in args.views}
    plan = [(p.split(":")[0], int(p.split(":")[1]), int(p.split(":")[2])) for p in args.plan]
    n_train = min(math.ceil(max(c for _, c, _ in plan) * 1.02 / (CONTEXT - 2)), MAX_WINDOWS)
    train_w = None if args.stats_only else token_windows(base.tokenizer, bos_id, CONTEXT, n_train, split="train")
    for name, cached, tokens in plan:
        budgets = {v: [b for b in args.budgets if b <= min(tokens, view_max[v])] for v in view_max}
        wanted = [f"{name}|L{lay}|{v}|{b}{tag}" for lay in args.layers for v in view_max for b in budgets[v]]
        wanted += [f"{name}|L{lay}|lookup" for lay in args.layers]
        if (args.stats_only or all(k in results for k in wanted)) and all(f"{name}|L{lay}|stats" in results for lay in args.stats_layers):
            continue
        variant = name.replace("-embsigma", "")
        loaded, _ = make_variant(base, variant, sigma=float(emb.std()) if name.endswith("-embsigma") else 1.0)
        model = loaded.model
        t0 = time.time()
        read = sorted(set(args.stats_layers) | set(args.layers))
        with torch.no_grad():
            acts = [capture_residuals(model, eval_w[b : b + 16], read) for b in range(0, len(eval_w), 16)]
        xs = {lay: torch.cat([a[lay].reshape(-1, base.d_model).float() for a in acts]) for lay in read}
        for lay in args.stats_layers:
            if f"{name}|L{lay}|stats" not in results:
                save(f"{name}|L{lay}|stats", residual_stats(xs[lay], eval_bos))
        if args.stats_only:
            continue
        x_interp = {}
        if interp_w is not None:
            with torch.no_grad():
                acts = [capture_residuals(model, interp_w[b : b + 16], args.layers) for b in range(0, len(interp_w), 16)]
            x_interp = {lay: torch.cat([a[lay].float() for a in acts]) for lay in args.layers}
        # the training windows of this budget, cached at the SAE layers (float16 halves the disk); past the
        # split's size the stream starts a new epoch in a new order
        n_w = min(math.ceil(cached * 1.02 / (CONTEXT - 2)), MAX_WINDOWS)
        data = DataSlice(window=CONTEXT, n_windows=n_w)
        directory = cache_dir(base.name, name, data, root=args.out / "cache")
        assert train_w is not None  # only --stats-only leaves it out, and it stops above
        fill_cache(loaded, train_w[:n_w], args.layers, directory, batch_size=16, dtype="float16", progress=False)
        print(f"{name}: eval + cache {time.time() - t0:.0f}s", flush=True)
        for layer in args.layers:
            cache = CachedActivations(directory, layer)
            x_eval = xs[layer]
            if f"{name}|L{layer}|lookup" not in results:
                save(
                    f"{name}|L{layer}|lookup",
                    {
                        "token_lookup_ev": token_lookup_ev(cache, x_eval[~eval_bos], eval_w.reshape(-1)[~eval_bos], bos_id),
                        "n_train_rows": cache.n_rows,
                    },
                )
            pick = torch.randperm(cache.n_rows, generator=torch.Generator().manual_seed(1))[:16384]
            sample = cache.rows(pick)[cache.token_ids[pick] != bos_id]
            maps = views(sample)
            for view in view_max:
                fwd, inv = maps[view]
                if all(f"{name}|L{layer}|{view}|{b}{tag}" in results for b in budgets[view]):
                    continue
                sae = SAE(SAEConfig(arch="topk", d_in=base.d_model, n_latents=args.expansion * base.d_model, k=32, seed=0))
                stream = Mapped(CachedStream(cache, BATCH, seed=0, epochs=None), fwd)
                steps = max(budgets[view]) // BATCH

                def evaluate(step: int, layer=layer, view=view, fwd=fwd, inv=inv, sae=sae, x_eval=x_eval) -> None:
                    b = step * BATCH
                    key = f"{name}|L{layer}|{view}|{b}{tag}"
                    if b not in budgets[view] or key in results:
                        return
                    sae.eval()
                    with torch.no_grad():
                        xin = fwd(x_eval)
                        z = sae.encode(xin)
                        rec = sae.decode(z)
                        keep = ~eval_bos
                        own = reconstruction_metrics(xin[keep], rec[keep], z[keep])
                        in_raw = reconstruction_metrics(x_eval[keep], inv(rec[keep]), z[keep])
                        row = {
                            "ev_own": own.ev,
                            "ev_raw": in_raw.ev,
                            "ev_standardized": in_raw.ev_standardized,
                            "ev_raw_with_bos": reconstruction_metrics(x_eval, inv(rec), z).ev,
                            "l0": own.l0,
                            "dead_eval": own.dead_fraction_eval,
                        }
                        if view == "raw" and args.ce_windows > 0:
                            ds = downstream_metrics(
                                model, eval_w[: args.ce_windows], layer, lambda h: sae.decode(sae.encode(h)), skip_bos=True
                            ).summary()
                            row.update(ce_loss_score=ds.ce_loss_score, kl_score=ds.kl_score, delta_ce=ds.delta_ce)
                        if view == "raw" and interp_w is not None:
                            folder = args.out / "autointerp" / f"{name}-L{layer}-{b}{tag.replace('|', '-')}"
                            row.update(autointerp_auroc(sae, x_interp[layer], interp_w, bos_id, base.tokenizer, args.auroc_latents, folder))
                    sae.train()
                    save(key, row)

                train_saes(
                    {view: sae},
                    stream,
                    TrainConfig(steps=steps, lr=1e-3, warmup_steps=20, checkpoint_every=128),
                    checkpoint_dir=args.out / "ckpt" / f"{name}-L{layer}-{view}-x{args.expansion}",
                    progress=False,
                    callback=evaluate,
                    callback_every=128,
                )
                print(f"{name} L{layer} {view}: done {time.time() - t0:.0f}s", flush=True)
        del loaded


if __name__ == "__main__":
    main()
