"""A planted "SAE" whose latents fire on known token sets of the bundled corpus (bundled tokenizer).

The token-list explainer must recover the sets and separate activating from random windows (AUROC
≥ 0.95); explanations shuffled between latents must score at chance (0.5 ± 0.1); results survive a
kill and resume; the `hf:` path with the bundled instruct model runs end to end (score reported).
"""

import json

import pandas as pd
import pytest
import torch

from nullsae.autointerp.examples import ActivationSource, ExampleConfig, SparseActs, collect_examples
from nullsae.autointerp.explainers import Explanation, TokensExplainer, TokenText, parse_token_list
from nullsae.autointerp.llm import HFClient
from nullsae.autointerp.results import ResultStore, result_row, summarize
from nullsae.autointerp.run import AutointerpConfig, run_autointerp
from nullsae.autointerp.scorers import TokenListScorer
from nullsae.data import bundled_documents, pack_windows

N_SETS = 6


@pytest.fixture(scope="module")
def planted(smollm2):
    """3,000 windows of 32 tokens; latents 0–5 fire on two word tokens each (each in 6–20 % of windows),
    latent 6 on a rare token (< 200 windows: filtered), latent 7 never (dead)."""
    tok = smollm2.tokenizer
    ids = tok([d.text for d in bundled_documents()[:1500]], add_special_tokens=False)["input_ids"]
    W = pack_windows(ids, 32, smollm2.bos_id, max_windows=3000)
    text = TokenText(tok)
    V = len(text.strings)
    present = torch.zeros(V)
    for row in W:
        present[row.unique()] += 1
    freq = present / W.shape[0]
    cands = ((freq > 0.06) & (freq < 0.2)).nonzero().flatten()
    words = [i for i in cands[freq[cands].argsort()].tolist() if text.strings[i].strip().isalpha()]
    sets = [words[2 * j : 2 * j + 2] for j in range(N_SETS)]
    rare = int(((freq > 0.01) & (freq < 0.03)).nonzero()[0])
    sets += [[rare], [V + 1]]
    m = len(sets)
    masks = [torch.tensor(s) for s in sets]

    def encode(wids):
        x = W[wids]
        acts = torch.zeros(x.shape[0], 32, m)
        for j, s in enumerate(masks):
            acts[..., j] = torch.isin(x, s) * (1 + ((x * 7 + torch.arange(32)) % 5) / 5)
        return SparseActs.from_dense(acts, wids)

    return ActivationSource(W, encode, m), [[text.strings[i] for i in s[:2]] for s in sets[:N_SETS]], tok, text


@pytest.mark.slow
def test_token_explainer_recovers_sets_and_detects(planted, tmp_path):
    source, sets, tok, _ = planted
    cfg = AutointerpConfig(explainer="tokens", scorers=["tokens"], n_boot=200)
    res = run_autointerp(source, tok, cfg, tmp_path, "planted")
    assert res.selection.n_removed == 2 and res.selection.n_dead == 1
    assert res.selection.latents == list(range(N_SETS))
    df = pd.read_parquet(res.latents_path)
    for _, row in df.iterrows():
        tokens = parse_token_list(row["explanation"])
        assert tokens is not None and set(tokens) == set(sets[row["latent"]])
        assert row["n_pos"] == 100 and row["n_neg"] == 100 and row["n_failed"] == 0
        assert row["prompt_version"] and row["explainer"] == "tokens" and row["scorer"] == "tokens"
        assert 0 < row["entropy"] <= 1 and row["entropy_raw"] > 0
    (s,) = res.summaries
    print(f"planted tokens/tokens: mean AUROC {s.auroc_mean.estimate:.3f}, pooled {s.auroc_pooled.estimate:.3f}")
    assert s.auroc_pooled.estimate >= 0.95 and s.auroc_mean.estimate >= 0.95
    assert s.balanced_accuracy is not None and s.balanced_accuracy.estimate >= 0.95
    assert len(s.roc["fpr"]) == len(s.roc["tpr"]) >= 2
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["selection"]["n_removed"] == 2


@pytest.mark.slow
def test_shuffled_explanations_score_at_chance(planted):
    source, _, _, text = planted
    ex = collect_examples(source, list(range(N_SETS)), ExampleConfig(seed=1))
    items = [ex[j] for j in range(N_SETS)]
    expl = TokensExplainer(text).explain(items)
    shuffled = [Explanation(e.latent, expl[(i + 1) % N_SETS].text) for i, e in enumerate(items)]
    rows = [
        result_row(r, sae="planted", explainer="tokens-shuffled", prompt_version="v1")
        for r in TokenListScorer(text).score(list(zip(items, shuffled)))
    ]
    (s,) = summarize(pd.DataFrame(rows), n_boot=200)
    print(f"shuffled tokens/tokens: mean AUROC {s.auroc_mean.estimate:.3f}, pooled {s.auroc_pooled.estimate:.3f}")
    assert abs(s.auroc_pooled.estimate - 0.5) <= 0.1 and abs(s.auroc_mean.estimate - 0.5) <= 0.1


@pytest.mark.slow
def test_kill_keeps_scored_latents_and_resume_skips_them(planted, tmp_path, monkeypatch):
    source, _, tok, _ = planted
    cfg = AutointerpConfig(explainer="tokens", scorers=["tokens"], chunk=2, n_boot=50)
    calls, killed = [], []
    real = TokenListScorer.score

    def dying(self, pairs):
        calls.append([ex.latent for ex, _ in pairs])
        if len(calls) == 2 and not killed:
            killed.append(True)
            raise KeyboardInterrupt
        return real(self, pairs)

    monkeypatch.setattr(TokenListScorer, "score", dying)
    with pytest.raises(KeyboardInterrupt):
        run_autointerp(source, tok, cfg, tmp_path, "planted")
    assert ResultStore(tmp_path).done() == {0, 1}
    calls.clear()
    res = run_autointerp(source, tok, cfg, tmp_path, "planted")
    assert sorted(sum(calls, [])) == [2, 3, 4, 5]  # finished latents were not scored again
    assert len(pd.read_parquet(res.latents_path)) == N_SETS
    with pytest.raises(Exception, match="different setup"):
        run_autointerp(source, tok, cfg.model_copy(update={"scorers": ["embedding"]}), tmp_path, "planted")


@pytest.mark.slow
def test_embedding_scorer_runs(planted, tmp_path):
    source, _, tok, _ = planted
    small = ExampleConfig(n_latents_sampled=3, n_bins=5, per_bin=4, n_negative=20)
    res = run_autointerp(
        source, tok, AutointerpConfig(explainer="tokens", scorers=["embedding"], examples=small, n_boot=50), tmp_path, "planted"
    )
    (s,) = res.summaries
    print(f"planted tokens/embedding: mean AUROC {s.auroc_mean.estimate:.3f}")
    assert s.n_failed_items == 0 and s.n_items == 3 * 40 and 0 <= s.auroc_mean.estimate <= 1
    assert s.balanced_accuracy is None


@pytest.mark.slow
def test_hf_explainer_and_scorers_end_to_end(planted, smollm2, tmp_path):
    source, _, tok, _ = planted
    client = HFClient(smollm2.model, smollm2.tokenizer, "smollm2", batch_size=4, cache_dir=tmp_path / "llm")
    small = ExampleConfig(n_latents_sampled=1, n_explain=5, n_bins=2, per_bin=2, n_negative=4)
    cfg = AutointerpConfig(explainer="hf:smollm2", scorers=["detection", "fuzzing"], examples=small, n_boot=50)
    res = run_autointerp(source, tok, cfg, tmp_path / "out", "planted", client=client)
    df = pd.read_parquet(res.latents_path)
    assert len(df) == 2 and set(df["scorer"]) == {"detection", "fuzzing"}
    for s in res.summaries:
        print(
            f"planted hf:smollm2/{s.scorer}: mean AUROC {s.auroc_mean.estimate:.3f}, pooled {s.auroc_pooled.estimate:.3f}, "
            f"failed {s.n_failed_items}/{s.n_items} {s.failures}; explanations {df['explanation'].unique().tolist()}"
        )
        assert s.n_items == 8


@pytest.mark.slow
def test_no_eligible_latent_is_a_clean_empty_result(planted, tmp_path):
    source, _, tok, _ = planted
    res = run_autointerp(source, tok, AutointerpConfig(examples=ExampleConfig(min_examples=10**6)), tmp_path, "planted")
    assert res.selection.latents == [] and res.selection.n_removed == 8 and res.summaries == []
