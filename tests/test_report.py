"""The report: verdicts with bootstrap intervals, paper-style figures, one self-contained HTML file
rendered in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from nullsae.autointerp.results import PooledAUROC, auroc
from nullsae.report import build_report
from nullsae.report.tables import ResultTables
from nullsae.report.verdicts import paper_findings, verdict_summary

VARIANTS = ["trained", "rerandomized", "rerandomized-excl-emb", "step0", "control"]
BASELINES = ["frozen-decoder", "soft-frozen-decoder", "frozen-encoder"]
EVIL = "<script>alert('x')</script> & <b>bold</b>"


def synthetic_tables(seed: int = 0, layers=(2, 8, 14), n_tok: int = 300, n_lat: int = 20, n_ex: int = 20) -> ResultTables:
    """Tables shaped like a run's, with the paper's pattern planted: control EV and AUROC far below
    trained, randomised variants equal to trained, entropy rising with depth for trained only,
    the frozen decoder worse on EV."""
    rng = np.random.default_rng(seed)
    cells = [(v, layer, "none") for v in VARIANTS for layer in layers] + [("trained", layers[1], b) for b in BASELINES]
    dev = rng.gamma(2.0, 1.0, n_tok)
    rows, toks, chunks, lats, scores, examples = [], [], [], [], [], {}
    for i, (v, layer, b) in enumerate(cells):
        key = f"k{i:03d}"
        ev = (0.3 if v == "control" else 0.8) - (0.2 if b == "frozen-decoder" else 0.0)
        err = dev * (1 - ev) * rng.uniform(0.9, 1.1, n_tok)
        cos = rng.normal(0.6 if v == "control" else 0.9, 0.05, n_tok)
        l1 = rng.gamma(5, 2, n_tok)
        clean = rng.gamma(3, 1, n_tok)
        zero = clean + 3 + rng.random(n_tok)
        sae = clean + (zero - clean) * (0.2 if v == "trained" else 0.95)
        toks.append(pd.DataFrame({"key": key, "token": np.arange(n_tok), "sq_err": err, "sq_dev": dev, "cos": cos, "l1": l1}))
        chunks.append(
            pd.DataFrame(
                {
                    "key": key,
                    "unit": np.arange(n_tok),
                    "ce_clean": clean,
                    "ce_sae": sae,
                    "ce_zero": zero,
                    "kl_sae": sae - clean,
                    "kl_zero": zero - clean,
                }
            )
        )
        ent_mean = 0.9 if v == "control" else 0.3 + (0.03 * layer if v == "trained" else 0.0)
        ent = np.clip(rng.normal(ent_mean, 0.05, n_lat), 0, 1)
        dens = 10 ** rng.normal(-3, 1, 100)
        dens[:3] = 0
        lats.append(
            pd.DataFrame({"key": key, "latent": np.arange(100), "density": dens, "entropy": np.r_[ent, np.full(100 - n_lat, np.nan)]})
        )
        sep = 0.3 if v == "control" else 1.5
        cell_scores = []
        for scorer in ("tokens", "embedding"):
            for lat in range(n_lat):
                lab = np.r_[np.ones(n_ex), np.zeros(n_ex)].astype(int)
                cell_scores.append(
                    pd.DataFrame({"key": key, "scorer": scorer, "latent": lat, "label": lab, "score": rng.normal(lab * sep, 1.0)})
                )
        sc = pd.concat(cell_scores)
        scores.append(sc)
        row = {
            "key": key,
            "model": "smollm2",
            "variant": v,
            "layer": layer,
            "arch": "topk",
            "baseline": b,
            "ev": 1 - err.sum() / dev.sum(),
            "cosine": cos.mean(),
            "l1": l1.mean(),
            "l0": 32.0,
            "dead_fraction_eval": 0.03,
            "ce_score": (zero.sum() - sae.sum()) / (zero.sum() - clean.sum()),
            "kl_score": 0.5,
            "ce_ill_conditioned": v != "trained",
            "entropy": ent.mean(),
        }
        for scorer in ("tokens", "embedding"):
            row[f"auroc_{scorer}"] = auroc(sc[sc.scorer == scorer].score.to_numpy(), sc[sc.scorer == scorer].label.to_numpy())
            row[f"auroc_{scorer}_mean"] = row[f"auroc_{scorer}"]
        rows.append(row)
        examples[key] = [
            {
                "latent": 3,
                "explanation": EVIL,
                "scores": {"tokens": 0.9},
                "entropy": 0.4,
                "windows": [{"tokens": ["<img src=x onerror=alert(1)>", " the", " cat"], "acts": [0.0, 1.0, 0.5]}],
            }
        ]
    manifest = {
        "config": {"models": ["smollm2"], "variants": VARIANTS, "layers": list(layers), "sae": {"archs": ["topk"]}},
        "created": "2026-01-01T00:00:00Z",
        "git_commit": "abc",
    }
    return ResultTables(
        metrics=pd.DataFrame(rows),
        tokens=pd.concat(toks, ignore_index=True),
        chunks=pd.concat(chunks, ignore_index=True),
        latents=pd.concat(lats, ignore_index=True),
        scores=pd.concat(scores, ignore_index=True),
        examples=examples,
        manifest=manifest,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report(synthetic_tables(), out, title="nullsae report: test", n_boot=200), out


def test_pooled_auroc_matches_sklearn_and_resamples_latents():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    lat = np.repeat(np.arange(10), 12)
    lab = np.tile(np.r_[np.ones(6), np.zeros(6)], 10).astype(int)
    score = np.round(rng.normal(lab, 1.0), 1)  # ties on purpose
    f = PooledAUROC(lat, lab, score)
    assert f(np.arange(10)) == pytest.approx(roc_auc_score(lab, score))
    draw = np.array([0, 0, 3, 7, 7, 7, 9, 1, 1, 2])  # a resample with repeats = examples repeated
    idx = np.concatenate([np.nonzero(lat == j)[0] for j in draw])
    assert f(draw) == pytest.approx(roc_auc_score(lab[idx], score[idx]))
    assert auroc(score, lab) == pytest.approx(roc_auc_score(lab, score))  # one formula, weighted or not


def test_verdicts_follow_the_planted_pattern(report):
    rep, _ = report
    v = {(x.null, x.metric, x.layer): x for x in rep.verdicts}
    for layer in (2, 8, 14):
        assert v[("control", "ev", layer)].verdict == "distinguishes"
        assert v[("control", "ev", layer)].low > 0.4
        assert v[("control", "auroc_embedding", layer)].verdict == "distinguishes"
        for null in ("rerandomized", "rerandomized-excl-emb", "step0"):
            x = v[(null, "ev", layer)]
            assert x.verdict in ("does not distinguish", "equal within tolerance") and abs(x.diff) < 0.02
            assert x.tolerance_source == "default" and x.n_seeds == 1 and x.chance == 0.0
        assert v[("rerandomized", "ce_score", layer)].warning  # ill-conditioned CE for random variants
        assert v[("control", "l1", layer)].verdict in ("no expected direction", "differs")
    assert v[("frozen-decoder", "ev", 8)].verdict == "distinguishes"
    assert v[("frozen-encoder", "ev", 8)].verdict == "equal within tolerance"  # planted equal: inside ±δ (default 0.01)
    summary = verdict_summary(rep.verdicts)
    assert set(summary.null) == set(VARIANTS[1:]) | set(BASELINES)
    findings = {f.claim: f.holds for f in paper_findings(synthetic_tables())}
    assert findings["Control EV is well below trained EV"] is True
    assert findings["Token entropy rises with depth for the trained model only"] is True
    assert all(h for c, h in findings.items() if "close to trained" in c)


def test_findings_say_plainly_when_they_do_not_hold():
    t = synthetic_tables()
    m = t.metrics
    m.loc[m.variant == "control", "ev"] = m.loc[m.variant == "trained", "ev"].mean()  # control as good as trained
    findings = {f.claim: f for f in paper_findings(t)}
    assert findings["Control EV is well below trained EV"].holds is False
    assert "L2" in findings["Control EV is well below trained EV"].evidence


def test_html_is_self_contained_and_escaped(report):
    rep, _ = report
    html = rep.path.read_text(encoding="utf-8")
    assert html.index('id="verdicts"' if 'id="verdicts"' in html else "id='verdicts'") < html.index("<img")
    assert html.count("data:image/png;base64,") == len(rep.figures) >= 4
    for bad in ('src="http', "src='http", 'href="http', "href='http", "<script", "<img src=x"):
        assert bad not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _near(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return np.asarray((np.abs(img[..., :3].astype(int) - np.array(rgb)) <= tol).all(-1))


@pytest.mark.skipif(
    _chromium() is None, reason="Chromium is not installed (Debian: apt-get install chromium); the report render test needs it"
)
def test_report_renders_in_headless_chromium(report, tmp_path):
    """Screenshot the report offline: the verdict table (green/red cells) at the top, the figures below."""
    import matplotlib.image as mpimg

    rep, _ = report
    shot = tmp_path / "shot.png"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--window-size=1280,4000",
        f"--screenshot={shot}",
        rep.path.as_uri(),
    ]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    img = (mpimg.imread(shot) * 255).astype(np.uint8)
    assert img.shape[0] >= 3000 and img.shape[1] >= 1200
    top = img[:1400]
    green = _near(top, (0xC7, 0xEC, 0xC7)).sum()
    red = _near(top, (0xF6, 0xD0, 0xD0)).sum()
    assert green > 5000 and red > 5000, (green, red)  # the verdict table, first on the page
    rows_with_table = np.nonzero(_near(img, (0xC7, 0xEC, 0xC7)).any(1) | _near(img, (0xF6, 0xD0, 0xD0)).any(1))[0]
    below = img[rows_with_table.min() :]
    # figure pixels: the variant line colours of Fig. 3 occur only inside the embedded PNGs
    orange = _near(below, (0xFF, 0x7F, 0x0E), 20).sum()
    blue = _near(below, (0x1F, 0x77, 0xB4), 20).sum()
    assert orange > 200 and blue > 200, (orange, blue)
    first_fig_row = np.nonzero(_near(img, (0xFF, 0x7F, 0x0E), 20).any(1))[0].min()
    assert first_fig_row > rows_with_table.min()  # the table comes before the figures
