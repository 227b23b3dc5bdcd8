"""RAVEL-style editing on a planted setting: a tiny real Llama whose weights route an entity's two binary
attributes (color, size) along known residual directions, and an SAE with one latent per attribute value."""

from __future__ import annotations

import json

import pytest
import torch

from nullsae.editing import EditingConfig, FactSet, interchange, load_facts, make_items, prepare_facts, run_editing
from nullsae.errors import UserError
from nullsae.models import LoadedModel
from nullsae.sae import SAE, SAEConfig

D = 16
ENTITIES = {
    f"e{i}": {"color": "red" if i % 2 == 0 else "blue", "size": "big" if i % 4 < 2 else "small", "shape": "round"} for i in range(12)
}


def planted_llama() -> LoadedModel:
    """Tokens: e0..e11 (embedding: ±1 on dim 0 = color, ±1 on dim 1 = size, 1 on dim 4), query words `color`
    (dim 2) and `size` (dim 3). Block 0 is the identity; block 1's attention is uniform (q = k = 0) and copies
    dims 0-1 of every position into the last one; MLPs write nothing. The head reads red/blue from ±dim 0
    when dim 2 is set and big/small from ±dim 1 when dim 3 is set; no token ever outputs round/square."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    words = ["<pad>", "<bos>", "<unk>", "color", "size", "shape", "red", "blue", "big", "small", "round", "square", *ENTITIES]
    vocab = {w: i for i, w in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>")
    cfg = LlamaConfig(
        vocab_size=len(words),
        hidden_size=D,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=0,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "norm" in name:
                p.fill_(1.0)
        emb = model.model.embed_tokens.weight
        emb[:, 4] = 1.0
        for e, vals in ENTITIES.items():
            emb[vocab[e], 0] = 1.0 if vals["color"] == "red" else -1.0
            emb[vocab[e], 1] = 1.0 if vals["size"] == "big" else -1.0
        emb[vocab["color"], 2] = 1.0
        emb[vocab["size"], 3] = 1.0
        block = model.model.layers[1]
        assert isinstance(block, LlamaDecoderLayer)
        attn = block.self_attn
        attn.v_proj.weight[0, 0] = attn.v_proj.weight[1, 1] = 1.0  # head 0 reads dims 0, 1
        attn.o_proj.weight[0, 0] = attn.o_proj.weight[1, 1] = 3.0  # and writes them back, amplified
        head = model.lm_head.weight
        head[vocab["red"], 0], head[vocab["blue"], 0] = 1.0, -1.0
        head[vocab["red"], 2] = head[vocab["blue"], 2] = 4.0
        head[vocab["big"], 1], head[vocab["small"], 1] = 1.0, -1.0
        head[vocab["big"], 3] = head[vocab["small"], 3] = 4.0
    return LoadedModel.from_model(model, tok, name="planted-llama")


def planted_sae() -> SAE:
    """Latents 0/1 = relu(±dim 0) (red/blue), 2/3 = relu(±dim 1) (big/small), 4-7 random directions in dims 5-15."""
    sae = SAE(SAEConfig(arch="relu", d_in=D, n_latents=8))
    gen = torch.Generator().manual_seed(1)
    W = torch.zeros(8, D)
    W[0, 0], W[1, 0], W[2, 1], W[3, 1] = 1.0, -1.0, 1.0, -1.0
    W[4:, 5:] = torch.nn.functional.normalize(torch.randn(4, D - 5, generator=gen), dim=1)
    with torch.no_grad():
        sae.W_enc.copy_(W)
        sae.W_dec.copy_(W)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def planted_facts() -> FactSet:
    return FactSet.model_validate(
        {
            "entity_types": {
                "thing": {
                    "attributes": {"color": ["{entity} color"], "size": ["{entity} size"], "shape": ["{entity} shape"]},
                    "entities": ENTITIES,
                }
            }
        }
    )


@pytest.fixture(scope="module")
def planted():
    loaded = planted_llama()
    cfg = EditingConfig(min_facts=3, n_latents_grid=[1, 2, 4, 8], max_pairs=16)
    return loaded, planted_sae(), cfg, prepare_facts(loaded, 0, cfg, planted_facts())


def test_facts_checked_before_any_intervention(planted):
    _, _, _, prep = planted
    per = prep.counts.per_attribute
    assert per["thing/color"].n_facts_correct == 12 and per["thing/size"].n_facts_correct == 12
    assert per["thing/shape"].n_facts_correct == 0  # the head never says "round"
    assert prep.counts.n_facts == 36 and prep.counts.n_facts_correct == 24


def test_interchange_on_planted_latents_moves_output_as_designed(planted):
    loaded, sae, cfg, prep = planted
    entities = set(ENTITIES)
    items = make_items(prep, "thing", "color", entities, max_pairs=40, seed=0)
    assert {it.kind for it in items} == {"cause", "isolation"}
    assert interchange(loaded, sae, prep, items, [0, 1], cfg.batch_size) == (1.0, 1.0)  # color follows the source, size stays
    cause, iso = interchange(loaded, sae, prep, items, [4, 5, 6, 7], cfg.batch_size)  # latents blind to color: nothing moves
    assert cause == 0.0 and iso == 1.0
    cause, iso = interchange(loaded, sae, prep, items, [0, 1, 2, 3], cfg.batch_size)  # also swapping size breaks isolation
    assert cause == 1.0 and iso < 1.0


def test_run_editing_selects_planted_latents_and_skips_unknown_attribute(planted):
    loaded, sae, cfg, prep = planted
    res = run_editing(sae, loaded, 0, cfg, prepared=prep)
    by = {a.attribute: a for a in res.attributes}
    assert set(by) == {"thing/color", "thing/size"}
    assert sorted(by["thing/color"].latents) == [0, 1] and sorted(by["thing/size"].latents) == [2, 3]
    assert by["thing/color"].score == 1.0 and by["thing/size"].score == 1.0 and res.score == 1.0
    # swapping the whole residual moves every attribute
    assert res.full_cause == 1.0 and res.full_isolation is not None and res.full_isolation < 1.0
    assert "thing/shape" in res.skipped and "min_facts" in res.skipped["thing/shape"]
    assert by["thing/color"].n_train_entities + by["thing/color"].n_eval_entities == 12  # disjoint entity halves


def test_random_sae_scores_worse_on_planted_model(planted):
    loaded, _, cfg, prep = planted
    rand = SAE(SAEConfig(arch="relu", d_in=D, n_latents=8, seed=3)).eval()
    with torch.no_grad():
        rand.W_enc[:, :5] = 0  # random directions that cannot see the planted dims
        rand.W_dec[:, :5] = 0
    res = run_editing(rand, loaded, 0, cfg, prepared=prep)
    assert res.score is not None and res.score <= 0.5 + 1e-9  # cause 0: nothing it swaps carries the attribute


def test_bundled_facts_are_consistent():
    facts = load_facts()
    assert set(facts.entity_types) == {"country", "city"}
    country = facts.entity_types["country"]
    assert set(country.attributes) == {"capital", "continent", "language"}
    assert country.entities["France"] == {"capital": "Paris", "continent": "Europe", "language": "French"}
    continents = {"Africa", "Asia", "Europe", "North America", "South America", "Oceania"}
    for etype in facts.entity_types.values():
        assert all(v["continent"] in continents for v in etype.entities.values())
    demos = {"Iceland", "Laos", "Armenia", "Zambia", "Lille", "Nagoya", "Durban", "Graz"}
    assert not demos & set(country.entities) and not demos & set(facts.entity_types["city"].entities)


def test_bad_facts_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "facts.json"
    bad.write_text(json.dumps({"entity_types": {"thing": {"attributes": {"color": ["no placeholder"]}, "entities": {}}}}))
    with pytest.raises(UserError, match="exactly once"):
        load_facts(bad)
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_facts(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_facts(tmp_path / "missing.json")


def test_cli_bad_facts_prints_one_line(capsys, tmp_path, sae_folder):
    from nullsae.cli import main

    (tmp_path / "facts.json").write_text("[1, 2]")
    assert main(["edit", "--sae", str(sae_folder), "--layer", "3", "--facts", str(tmp_path / "facts.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nullsae edit: error: facts file")


@pytest.mark.slow
def test_bundled_model_knows_capitals_and_entity_positions_are_right(smollm2):
    """On SmolLM2 (BPE): the entity's last token is where the intervention goes, and the model gets easy facts right."""
    full = load_facts()
    country = full.entity_types["country"]
    names = ["France", "Japan", "Germany", "Italy", "South Korea", "Egypt"]
    facts = FactSet.model_validate(
        {
            "entity_types": {
                "country": {
                    "attributes": {"capital": country.attributes["capital"][:1]},
                    "entities": {n: {"capital": country.entities[n]["capital"]} for n in names},
                }
            }
        }
    )
    prep = prepare_facts(smollm2, 6, EditingConfig(), facts)
    tok = smollm2.tokenizer
    for p in prep.prompts:
        assert tok.decode(p.ids[: p.pos + 1]).endswith(p.entity)
        assert p.ids[0] == smollm2.bos_id
    assert prep.counts.n_facts == 6
    assert prep.counts.n_facts_correct >= 4  # SmolLM2-135M knows Paris, Tokyo, Berlin, Rome, ...
    assert next(p for p in prep.prompts if p.entity == "France").correct


@pytest.mark.slow
@pytest.mark.parametrize("keep_error", [True, False])
def test_learned_mask_finds_planted_latents_without_eta2(planted, keep_error):
    """SAEBench's learned mask alone recovers each attribute's latents, with no η² ranking and no size
    grid; the same config under η² (grid cut to one size, all 8 latents) swaps size along with colour."""
    loaded, sae, _, prep = planted
    cfg = EditingConfig(min_facts=3, n_latents_grid=[8], max_pairs=16, selection="mask", keep_error=keep_error)
    res = run_editing(sae, loaded, 0, cfg, prepared=prep)
    by = {a.attribute: a for a in res.attributes}
    assert by["thing/color"].latents == [0, 1] and by["thing/size"].latents == [2, 3]
    assert by["thing/color"].score == 1.0 and res.score == 1.0 and res.selection == "mask"
    assert "min_facts" in res.skipped["thing/shape"]  # too few correct facts: skipped with the reason, as under η²
    eta2 = run_editing(sae, loaded, 0, cfg.model_copy(update={"selection": "eta2"}), prepared=prep)
    assert eta2.isolation is not None and eta2.isolation < 1.0  # the same grid under η² swaps every latent


def test_references_sit_beside_every_score(planted):
    loaded, sae, cfg, prep = planted
    res = run_editing(sae, loaded, 0, cfg, prepared=prep)
    for a in res.attributes:
        assert (a.none_cause, a.none_isolation, a.none_score) == (0.0, 1.0, 0.5)  # correct prompts only: nothing moves
        assert a.full_cause == 1.0 and a.full_score == (a.full_cause + a.full_isolation) / 2
    assert res.none_score == 0.5 and res.full_score is not None
