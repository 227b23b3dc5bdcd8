"""RAVEL-style causal editing: do an SAE's latents for an attribute move that attribute, and only it?

Facts are (entity, attribute, value) with prompt templates (the bundled `assets/ravel_facts.json`, or
any file of the same shape). Only prompts the model answers right (its greedy next token is the first
token of the value) are used, and how many those are is reported. For an attribute A, an interchange
intervention at layer ℓ and the entity's last token replaces the base residual's SAE code on a latent
set S by the code of a source entity's residual (x' = x + (z_src − z_base)[S] · W_dec[S], so the SAE's
reconstruction error stays in place):
  cause     = the A-prompt of the base entity now answers the source entity's A value;
  isolation = the base entity's prompts of the other attributes keep their answers;
  score     = (cause + isolation) / 2 per attribute, as in RAVEL (Huang et al. 2024).
S is chosen on training entities and scored on other entities, by one of two methods (`selection`):
  eta2  the n latents whose activation best separates A's values (η², between-value over total
        variance), n chosen by the RAVEL score on the training entities (cheap: one pass per n);
  mask  SAEBench's learned binary mask: a relaxed mask m = σ(logit / T) over all latents, trained by
        gradient descent on the training pairs (cross-entropy towards the source's value on cause items
        and the base's own value on isolation items) while T falls from 1 to 1e-4, then S = {logit > 0}.
Every score comes with its two references on the same items: no intervention (cause 0, isolation 1 by
construction, since only correctly answered prompts are used) and the whole-residual swap x' = x_src.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import Tensor

from nullsae.config import EditingConfig
from nullsae.errors import UserError
from nullsae.models.hooks import check_layers, patch_residual
from nullsae.models.load import LoadedModel
from nullsae.progress import progress_bar
from nullsae.sae.architectures import SAE

BUNDLED_FACTS = Path(__file__).parent / "assets" / "ravel_facts.json"


class EntityType(BaseModel):
    """Prompt templates per attribute ("{entity}" marks the entity) and each entity's attribute values."""

    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, list[str]]
    entities: dict[str, dict[str, str]]


class FactSet(BaseModel):
    """An attribute dataset: entity types, e.g. country and city."""

    model_config = ConfigDict(extra="ignore")

    entity_types: dict[str, EntityType]


def load_facts(path: str | Path | None = None) -> FactSet:
    """The facts in `path` (default: the bundled dataset), checked for shape and consistency."""
    path = Path(path) if path is not None else BUNDLED_FACTS
    if not path.is_file():
        raise UserError(f"facts file {path} does not exist; give a JSON file shaped like nullsae/assets/ravel_facts.json")
    try:
        facts = FactSet.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise UserError(f"facts file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); fix it") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(
            f"facts file {path} is malformed at {'.'.join(map(str, err['loc']))}: {err['msg']}; follow the shape of nullsae/assets/ravel_facts.json"
        ) from None
    for tname, etype in facts.entity_types.items():
        for attr, templates in etype.attributes.items():
            if not templates or any(t.count("{entity}") != 1 for t in templates):
                raise UserError(f"facts file {path}: every template of {tname}/{attr} must contain '{{entity}}' exactly once")
        for entity, values in etype.entities.items():
            unknown = set(values) - set(etype.attributes)
            if unknown:
                raise UserError(
                    f"facts file {path}: {tname} '{entity}' has attribute(s) {', '.join(sorted(unknown))} with no templates; add templates or remove them"
                )
    return facts


class AttributeCounts(BaseModel):
    """Facts (entity, attribute) and prompts (fact × template) of one attribute, and how many the model gets right."""

    n_facts: int
    n_facts_correct: int
    n_prompts: int
    n_prompts_correct: int


class FactCounts(BaseModel):
    """What the model knows before any intervention."""

    n_facts: int
    n_facts_correct: int  # facts with at least one template answered right
    n_prompts: int
    n_prompts_correct: int
    n_prompts_dropped: int  # entity not a token prefix of the prompt, or value sharing its first token with another value
    per_attribute: dict[str, AttributeCounts]


class AttributeEdit(BaseModel):
    """Interchange results for one attribute on the evaluation entities."""

    attribute: str  # "<entity type>/<attribute>"
    n_train_entities: int
    n_eval_entities: int
    n_latents: int
    latents: list[int]
    train_score: float
    n_cause: int
    n_isolation: int
    cause: float
    isolation: float
    score: float
    full_cause: float  # the same items with the whole residual swapped: the ceiling of cause
    full_isolation: float
    full_score: float
    none_cause: float  # the same items with no intervention (0 by construction)
    none_isolation: float  # (1 by construction)
    none_score: float
    selection: str = "eta2"


class EditingResult(BaseModel):
    """RAVEL-style scores of one SAE: per attribute and their means; skipped attributes with the reason."""

    layer: int
    counts: FactCounts
    attributes: list[AttributeEdit]
    skipped: dict[str, str]
    cause: float | None
    isolation: float | None
    score: float | None
    full_cause: float | None  # whole-residual swap at the entity position (ceiling of cause)
    full_isolation: float | None
    full_score: float | None = None
    none_score: float | None = None  # no intervention: the chance level of the score
    selection: str = "eta2"


@dataclass
class _Prompt:
    etype: str
    entity: str
    attribute: str
    ids: list[int]
    pos: int  # index of the entity's last token in ids
    answer: int  # first token of the value
    value: str
    correct: bool = False
    pred: int = -1  # the clean model's greedy next token


@dataclass
class PreparedFacts:
    """Tokenised prompts, which the model answers right, and their residuals at the entity's last token."""

    layer: int
    prompts: list[_Prompt]
    residuals: Tensor  # (n_prompts, d) at `layer`
    counts: FactCounts
    facts: FactSet


def _tokenise(loaded: LoadedModel, facts: FactSet) -> tuple[list[_Prompt], dict[str, AttributeCounts], int]:
    tok = loaded.tokenizer
    if tok is None:
        raise UserError(f"model {loaded.name} has no tokenizer; causal editing needs one to read prompts")
    bos = [loaded.bos_id] if loaded.bos_id is not None else []
    prompts: list[_Prompt] = []
    counts: dict[str, AttributeCounts] = {}
    dropped = 0
    for tname, etype in facts.entity_types.items():
        for attr, templates in etype.attributes.items():
            values = sorted({v[attr] for v in etype.entities.values() if attr in v})
            first = {v: tok(" " + v, add_special_tokens=False)["input_ids"][0] for v in values}
            shared = {t for t in first.values() if list(first.values()).count(t) > 1}
            n_facts = n_prompts = 0
            for entity, vals in etype.entities.items():
                if attr not in vals:
                    continue
                n_facts += 1
                for template in templates:
                    n_prompts += 1
                    head = template[: template.index("{entity}")] + entity
                    ids = tok(template.replace("{entity}", entity), add_special_tokens=False)["input_ids"]
                    head_ids = tok(head, add_special_tokens=False)["input_ids"]
                    if ids[: len(head_ids)] != head_ids or first[vals[attr]] in shared:
                        dropped += 1
                        continue
                    prompts.append(_Prompt(tname, entity, attr, bos + ids, len(bos) + len(head_ids) - 1, first[vals[attr]], vals[attr]))
            counts[f"{tname}/{attr}"] = AttributeCounts(n_facts=n_facts, n_facts_correct=0, n_prompts=n_prompts, n_prompts_correct=0)
    return prompts, counts, dropped


def _pad(rows: list[list[int]]) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


Edit = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]  # (h, batch rows, entity positions, item indices) -> h'


def _last_logits(
    loaded: LoadedModel, batch: list[_Prompt], layer: int, edit: Edit | None, idx: Tensor, resid: Tensor | None = None
) -> Tensor:
    """(B, V) next-token logits of `batch` with `edit` applied to the layer's output (None: clean run);
    the clean residual at the entity position goes to resid[idx] when given. Differentiable through `edit`."""
    device = next(loaded.model.parameters()).device
    ids, mask = _pad([p.ids for p in batch])
    pos = torch.tensor([p.pos for p in batch])
    r = torch.arange(len(batch))

    def hook(h: Tensor) -> Tensor:
        if resid is not None:
            resid[idx] = h[r, pos].detach().float().cpu()
        return h if edit is None else edit(h, r, pos, idx)

    with patch_residual(loaded.model, layer, hook):
        hidden = loaded.model.base_model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).last_hidden_state
    last = (mask.sum(1) - 1).to(hidden.device)  # only the last real position is unembedded
    return loaded.model.get_output_embeddings()(hidden[r.to(hidden.device), last])


def _predict(
    loaded: LoadedModel, prompts: list[_Prompt], layer: int, edit: Edit | None, batch_size: int, desc: str
) -> tuple[Tensor, Tensor]:
    """Greedy next token of each prompt and its clean residual at (layer, entity position), with `edit`
    applied (None: clean run). Prompts run in length order (little padding)."""
    preds = torch.empty(len(prompts), dtype=torch.long)
    resid = torch.empty(len(prompts), loaded.d_model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i].ids))
    chunks = [torch.tensor(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    for idx in progress_bar(chunks, desc=desc, unit="batch", leave=False, disable=len(chunks) < 8):
        with torch.inference_mode():
            preds[idx] = _last_logits(loaded, [prompts[i] for i in idx.tolist()], layer, edit, idx, resid).argmax(-1).cpu()
    return preds, resid


def prepare_facts(loaded: LoadedModel, layer: int, cfg: EditingConfig | None = None, facts: FactSet | None = None) -> PreparedFacts:
    """Tokenise every prompt, run the clean model once: which prompts it answers right, and their residuals."""
    cfg = cfg or EditingConfig()
    check_layers([layer], loaded.n_layers)
    facts = facts or load_facts(cfg.facts)
    prompts, per_attr, dropped = _tokenise(loaded, facts)
    if not prompts:
        raise UserError("no usable prompt in the facts file (each entity must tokenise as a prefix of its prompt); check the templates")
    preds, resid = _predict(loaded, prompts, layer, None, cfg.batch_size, "checking facts")
    for p, pred in zip(prompts, preds.tolist()):
        p.pred, p.correct = pred, pred == p.answer
    known: set[tuple[str, str, str]] = set()
    for p in prompts:
        key = f"{p.etype}/{p.attribute}"
        if p.correct:
            per_attr[key].n_prompts_correct += 1
            known.add((p.etype, p.entity, p.attribute))
    for etype, _, attr in known:
        per_attr[f"{etype}/{attr}"].n_facts_correct += 1
    counts = FactCounts(
        n_facts=sum(a.n_facts for a in per_attr.values()),
        n_facts_correct=len(known),
        n_prompts=sum(a.n_prompts for a in per_attr.values()),
        n_prompts_correct=sum(p.correct for p in prompts),
        n_prompts_dropped=dropped,
        per_attribute=per_attr,
    )
    return PreparedFacts(layer=layer, prompts=prompts, residuals=resid, counts=counts, facts=facts)


def entity_split(facts: FactSet, cfg: EditingConfig) -> dict[str, dict[str, str]]:
    """Entity type -> {entity: "train" | "eval"}: a seeded shuffle per type, the first train_fraction for selection."""
    out = {}
    for tname, etype in facts.entity_types.items():
        names = sorted(etype.entities)
        random.Random(f"{cfg.seed}/{tname}").shuffle(names)
        n_train = round(len(names) * cfg.train_fraction)
        out[tname] = {e: ("train" if i < n_train else "eval") for i, e in enumerate(names)}
    return out


@dataclass
class _Item:
    prompt: int  # index of the base prompt
    source: int  # index of the source prompt (its residual is the source)
    expected: int  # token the prediction must equal
    kind: str  # "cause" | "isolation"


def make_items(prep: PreparedFacts, etype: str, attribute: str, entities: set[str], max_pairs: int, seed: int) -> list[_Item]:
    """Cause items (base A-prompt, source A-prompt of an entity with another value) and, for every pair, one
    isolation item per other attribute the base entity is known for; all among `entities`, correct prompts only."""
    rng = random.Random(f"{seed}/{etype}/{attribute}")
    usable = [i for i, p in enumerate(prep.prompts) if p.correct and p.etype == etype and p.entity in entities]
    own = [i for i in usable if prep.prompts[i].attribute == attribute]
    others: dict[tuple[str, str], list[int]] = {}
    for i in usable:
        p = prep.prompts[i]
        if p.attribute != attribute:
            others.setdefault((p.entity, p.attribute), []).append(i)
    pairs = [
        (b, s)
        for b in own
        for s in own
        if prep.prompts[s].entity != prep.prompts[b].entity and prep.prompts[s].value != prep.prompts[b].value
    ]
    rng.shuffle(pairs)
    items: list[_Item] = []
    for b, s in pairs[:max_pairs]:
        items.append(_Item(b, s, prep.prompts[s].answer, "cause"))
        base = prep.prompts[b]
        for (entity, _attr), idx in sorted(others.items()):
            if entity == base.entity:
                i = rng.choice(idx)
                items.append(_Item(i, s, prep.prompts[i].answer, "isolation"))
    return items


def _encode(sae: SAE, x: Tensor) -> Tensor:
    """The SAE's dense code of x, computed where the SAE lives."""
    with torch.no_grad():
        return sae.encode(x.to(sae.W_dec.device, sae.W_dec.dtype))


def _latent_edit(sae: SAE, z_src: Tensor, weights: Callable[[], Tensor], keep_error: bool) -> Edit:
    """The interchange at the entity position: x' = x + ((z_src − z_base) ⊙ w) · W_dec, w the latent
    weights (0/1 for a latent set, σ(logit/T) while a mask trains); without `keep_error` the base is
    the SAE's reconstruction x̂ instead of x (SAEBench's form: decode((1 − w) z_base + w z_src))."""
    W = sae.W_dec.detach()

    def edit(h: Tensor, r: Tensor, pos: Tensor, idx: Tensor) -> Tensor:
        x = h[r, pos]
        z = _encode(sae, x)
        delta = ((z_src[idx.to(z.device)] - z) * weights()) @ W
        base = x if keep_error else sae.decode(z).detach().to(x.dtype)
        h = h.clone()
        h[r, pos] = base + delta.to(h.device, h.dtype)
        return h

    return edit


def _accuracy(hit: Tensor, items: list[_Item]) -> tuple[float, float]:
    """(cause, isolation): mean hit over the items of each kind (nan for a kind with no item)."""
    kind = np.array([it.kind for it in items])
    hit = hit.float()
    cause = float(hit[torch.from_numpy(kind == "cause")].mean()) if (kind == "cause").any() else float("nan")
    iso = float(hit[torch.from_numpy(kind == "isolation")].mean()) if (kind == "isolation").any() else float("nan")
    return cause, iso


def no_intervention(prep: PreparedFacts, items: list[_Item]) -> tuple[float, float]:
    """(cause, isolation) of the clean model on `items`: the floor of cause and ceiling of isolation."""
    if not items:
        return float("nan"), float("nan")
    return _accuracy(torch.tensor([prep.prompts[it.prompt].pred == it.expected for it in items]), items)


def interchange(
    loaded: LoadedModel,
    sae: SAE | None,
    prep: PreparedFacts,
    items: list[_Item],
    latents: list[int] | None,
    batch_size: int,
    keep_error: bool = True,
) -> tuple[float, float]:
    """(cause, isolation) accuracy of the interchange on `latents` over `items`; `latents=None` swaps the
    whole residual at the entity position (x' = x_src), the ceiling any latent set is measured against."""
    if not items:
        return float("nan"), float("nan")
    x_src = prep.residuals[[it.source for it in items]]
    if latents is None:

        def swap(h: Tensor, r: Tensor, pos: Tensor, idx: Tensor) -> Tensor:
            h = h.clone()
            h[r, pos] = x_src[idx].to(h.device, h.dtype)
            return h

        edit: Edit = swap
    else:
        assert sae is not None
        w = torch.zeros(sae.cfg.n_latents, device=sae.W_dec.device, dtype=sae.W_dec.dtype)
        w[torch.tensor(latents, dtype=torch.long)] = 1.0
        edit = _latent_edit(sae, _encode(sae, x_src), lambda: w, keep_error)
    prompts = [prep.prompts[it.prompt] for it in items]
    preds, _ = _predict(loaded, prompts, prep.layer, edit, batch_size, "interchange")
    return _accuracy(preds == torch.tensor([it.expected for it in items]), items)


def learn_mask(loaded: LoadedModel, sae: SAE, prep: PreparedFacts, items: list[_Item], cfg: EditingConfig) -> list[int]:
    """SAEBench's learned binary mask over the SAE's latents (MDBM, `sae_bench/evals/ravel/mdbm.py` in
    github.com/adamkarvonen/SAEBench, v0.6.0): logits start at 0, the relaxed mask σ(logit / T) is
    trained with Adam on the cross-entropy of the intervened prediction (the source's value on cause
    items, the base's own value on isolation items) while T falls log-linearly from 1 to 1e-4; the
    latents with logit > 0 are the mask. Items are shuffled per epoch with `cfg.seed`."""
    if not items:
        return []
    logits = torch.zeros(sae.cfg.n_latents, device=sae.W_dec.device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=cfg.mask_lr)
    z_src = _encode(sae, prep.residuals[[it.source for it in items]])
    target = torch.tensor([it.expected for it in items])
    bs = cfg.mask_batch_size
    n_steps = cfg.mask_epochs * -(-len(items) // bs)
    temps = torch.logspace(0, -4, n_steps).tolist()
    step = 0
    state = {"t": 1.0}
    edit = _latent_edit(sae, z_src, lambda: torch.sigmoid(logits / state["t"]), cfg.keep_error)
    rng = random.Random(f"{cfg.seed}/mask")
    order = list(range(len(items)))
    for _ in progress_bar(range(cfg.mask_epochs), desc="learning mask", unit="epoch", leave=False):
        rng.shuffle(order)
        for b in range(0, len(order), bs):
            idx = torch.tensor(order[b : b + bs])
            state["t"] = temps[step]
            with torch.enable_grad():
                out = _last_logits(loaded, [prep.prompts[items[i].prompt] for i in idx.tolist()], prep.layer, edit, idx)
                loss = F.cross_entropy(out.float(), target[idx].to(out.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            step += 1
    return torch.nonzero(logits.detach() > 0).flatten().cpu().tolist()


def ravel_score(cause: float, isolation: float) -> float:
    """Mean of cause and isolation; an attribute with no isolation items is scored on cause alone."""
    return cause if np.isnan(isolation) else (cause + isolation) / 2


def rank_latents(sae: SAE, prep: PreparedFacts, prompt_ids: list[int]) -> list[int]:
    """Latents by decreasing η² = between-value variance / total variance of their activation over the prompts."""
    z = _encode(sae, prep.residuals[prompt_ids]).double().cpu()
    values = [prep.prompts[i].value for i in prompt_ids]
    mean = z.mean(0)
    total = (z - mean).pow(2).sum(0)
    between = torch.zeros_like(total)
    for v in set(values):
        zi = z[[j for j, u in enumerate(values) if u == v]]
        between += zi.shape[0] * (zi.mean(0) - mean).pow(2)
    eta2 = torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total))
    return torch.argsort(-eta2, stable=True).tolist()


def _select_by_eta2(
    loaded: LoadedModel,
    sae: SAE,
    prep: PreparedFacts,
    train_prompts: list[int],
    train_items: list[_Item],
    grid: list[int],
    cfg: EditingConfig,
    key: str,
) -> tuple[list[int], float]:
    """The top-n latents by η², n from `grid` with the best RAVEL score on the training items; (latents, that score)."""
    order = rank_latents(sae, prep, train_prompts)
    best_n, best = grid[0], -1.0
    for n in progress_bar(grid, desc=f"selecting latents for {key}", unit="size", leave=False):
        s = ravel_score(*interchange(loaded, sae, prep, train_items, order[:n], cfg.batch_size, cfg.keep_error))
        if s > best + 1e-9:
            best_n, best = n, s
    return order[:best_n], best


def run_editing(
    sae: SAE, loaded: LoadedModel, layer: int, cfg: EditingConfig | None = None, prepared: PreparedFacts | None = None
) -> EditingResult:
    """RAVEL-style cause / isolation / score of `sae` at `layer`; `prepared` (from prepare_facts) is reused across SAEs."""
    cfg = cfg or EditingConfig()
    if sae.cfg.d_in != loaded.d_model:
        raise UserError(f"the SAE reads d = {sae.cfg.d_in} but {loaded.name} has d = {loaded.d_model}; give the SAE of this model")
    prep = prepared if prepared is not None else prepare_facts(loaded, layer, cfg)
    if prep.layer != layer:
        raise UserError(f"the prepared facts hold residuals of layer {prep.layer}, not {layer}; prepare them for this layer")
    sae = sae.eval()
    split = entity_split(prep.facts, cfg)
    grid = sorted({n for n in cfg.n_latents_grid if n <= sae.cfg.n_latents}) or [sae.cfg.n_latents]
    results: list[AttributeEdit] = []
    skipped: dict[str, str] = {}
    for tname, etype in prep.facts.entity_types.items():
        for attr in etype.attributes:
            key = f"{tname}/{attr}"
            groups = {}
            for part in ("train", "eval"):
                ents = {e for e, s in split[tname].items() if s == part}
                known = {p.entity for p in prep.prompts if p.correct and p.etype == tname and p.attribute == attr and p.entity in ents}
                groups[part] = known
            short = [f"{len(groups[p])} {p}" for p in ("train", "eval") if len(groups[p]) < cfg.min_facts]
            if short:
                skipped[key] = f"the model answers {' and '.join(short)} entities right, fewer than min_facts = {cfg.min_facts} per split"
                continue
            train_items = make_items(prep, tname, attr, groups["train"], cfg.max_pairs, cfg.seed)
            eval_items = make_items(prep, tname, attr, groups["eval"], cfg.max_pairs, cfg.seed + 1)
            if not any(it.kind == "cause" for it in train_items) or not any(it.kind == "cause" for it in eval_items):
                skipped[key] = "the correctly answered entities of a split all share one value; no cause pair"
                continue
            if cfg.selection == "mask":
                latents = learn_mask(loaded, sae, prep, train_items, cfg)
                best = ravel_score(*interchange(loaded, sae, prep, train_items, latents, cfg.batch_size, cfg.keep_error))
            else:
                train_prompts = [
                    i
                    for i, p in enumerate(prep.prompts)
                    if p.correct and p.etype == tname and p.attribute == attr and p.entity in groups["train"]
                ]
                latents, best = _select_by_eta2(loaded, sae, prep, train_prompts, train_items, grid, cfg, key)
            cause, iso = interchange(loaded, sae, prep, eval_items, latents, cfg.batch_size, cfg.keep_error)
            full_cause, full_iso = interchange(loaded, None, prep, eval_items, None, cfg.batch_size)
            none_cause, none_iso = no_intervention(prep, eval_items)
            results.append(
                AttributeEdit(
                    attribute=key,
                    n_train_entities=len(groups["train"]),
                    n_eval_entities=len(groups["eval"]),
                    n_latents=len(latents),
                    latents=latents,
                    train_score=best,
                    n_cause=sum(it.kind == "cause" for it in eval_items),
                    n_isolation=sum(it.kind == "isolation" for it in eval_items),
                    cause=cause,
                    isolation=iso,
                    score=ravel_score(cause, iso),
                    full_cause=full_cause,
                    full_isolation=full_iso,
                    full_score=ravel_score(full_cause, full_iso),
                    none_cause=none_cause,
                    none_isolation=none_iso,
                    none_score=ravel_score(none_cause, none_iso),
                    selection=cfg.selection,
                )
            )

    def mean(values: list[float]) -> float | None:
        vals = [v for v in values if not np.isnan(v)]
        return float(np.mean(vals)) if vals else None

    return EditingResult(
        layer=layer,
        counts=prep.counts,
        attributes=results,
        skipped=skipped,
        cause=mean([a.cause for a in results]),
        isolation=mean([a.isolation for a in results]),
        score=mean([a.score for a in results]),
        full_cause=mean([a.full_cause for a in results]),
        full_isolation=mean([a.full_isolation for a in results]),
        full_score=mean([a.full_score for a in results]),
        none_score=mean([a.none_score for a in results]),
        selection=cfg.selection,
    )
