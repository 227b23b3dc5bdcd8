"""Sparse probing (SAEBench-style): can k latents of an SAE predict a binary label of a text?

For each task the texts are run through the model once; every token's residual at the layer is
encoded by each SAE and pooled over the text (mean, or max), BOS and padding left out. On the train
half, the k latents with the largest |mean(class 1) − mean(class 0)| are chosen (k = 1, 2, 5, 10, 20)
and a logistic-regression probe is fit on them; its test accuracy is the score. The same probe on the
full pooled residual is the ceiling, and on k random projections of it the floor. Every accuracy comes
with a 95 % interval: a task's is the Wilson score interval of its test texts, a mean over tasks's the
percentile bootstrap over test texts that the verdicts use (`mean_task_accuracy` on resampled texts).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import Tensor

from nullsae.config import ProbingConfig
from nullsae.errors import UserError, advice
from nullsae.metrics.verdict import Terms, VerdictMetric, has_columns
from nullsae.models.hooks import capture_residuals, check_layers
from nullsae.models.load import LoadedModel
from nullsae.progress import progress_bar
from nullsae.sae.architectures import SAE
from nullsae.stats import bootstrap
from nullsae.tasks import Task

LEVEL = 0.95  # of every accuracy interval
N_BOOT = 1000  # bootstrap resamples of a mean's interval


Interval = tuple[float, float]  # (low, high) of a 95 % interval


class TaskProbe(BaseModel):
    """Test accuracies of one task: SAE probe per k, raw-activation ceiling, random-projection floor per k,
    each with its Wilson interval over the task's test texts."""

    task: str
    n_train: int
    n_test: int
    sae: dict[int, float]
    sae_ci: dict[int, Interval]
    correct: dict[int, list[bool]]  # per k, whether each test text (in task order) was labelled right
    latents: dict[int, list[int]]  # the latents each k-probe used, by decreasing |mean difference|
    raw: float
    raw_ci: Interval
    raw_correct: list[bool]
    random: dict[int, float]
    random_ci: dict[int, Interval]
    random_correct: dict[int, list[bool]]


class ProbingResult(BaseModel):
    """Sparse-probing accuracy of one SAE on a set of tasks, and the means over tasks with their bootstrap intervals."""

    layer: int
    pooling: str
    ks: list[int]
    tasks: list[TaskProbe]
    mean_sae: dict[int, float]
    mean_sae_ci: dict[int, Interval]
    mean_raw: float
    mean_raw_ci: Interval
    mean_random: dict[int, float]
    mean_random_ci: dict[int, Interval]


def pooled_features(
    loaded: LoadedModel, layer: int, texts: list[str], encoders: dict[str, Callable[[Tensor], Tensor]], cfg: ProbingConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """Pooled residuals (n, d) and pooled codes {name: (n, m)} of `texts`, from one model pass per batch.

    Each text is tokenised without special tokens, cut to max_tokens − 1 and preceded by BOS; pooling
    covers the text's own tokens only (never BOS or padding)."""
    check_layers([layer], loaded.n_layers)
    if loaded.tokenizer is None:
        raise UserError(f"model {loaded.name} has no tokenizer; probing needs one to read texts")
    bos = [loaded.bos_id] if loaded.bos_id is not None else []
    ids = loaded.tokenizer(texts, add_special_tokens=False)["input_ids"]
    ids = [bos + list(t)[: cfg.max_tokens - len(bos)] for t in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch
    device = next(loaded.model.parameters()).device
    raw = torch.zeros(len(ids), loaded.d_model)
    codes: dict[str, Tensor] = {}
    for start in progress_bar(
        range(0, len(order), cfg.batch_size),
        desc=f"probing texts (layer {layer})",
        unit="batch",
        leave=False,
        disable=len(order) < 4 * cfg.batch_size,
    ):
        rows = order[start : start + cfg.batch_size]
        width = max(len(ids[i]) for i in rows)
        batch = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for r, i in enumerate(rows):
            batch[r, : len(ids[i])] = torch.tensor(ids[i])
            mask[r, : len(ids[i])] = 1
        h = capture_residuals(loaded.model, batch.to(device), [layer], attention_mask=mask.to(device))[layer].float().cpu()
        keep = mask.bool()
        keep[:, : len(bos)] = False
        if not bool(keep.any(1).all()):
            raise UserError("a text has no tokens after BOS; drop empty texts from the task")
        flat = h[keep]  # (tokens, d)
        owner = keep.nonzero()[:, 0]
        raw[rows] = _pool(flat, owner, len(rows), cfg.pooling)
        for name, enc in encoders.items():
            with torch.no_grad():
                z = enc(flat).float()
            if name not in codes:
                codes[name] = torch.zeros(len(ids), z.shape[1])
            codes[name][rows] = _pool(z, owner, len(rows), cfg.pooling)
    return raw, codes


def _pool(values: Tensor, owner: Tensor, n: int, how: str) -> Tensor:
    """Mean or max of the rows of `values` grouped by `owner` in [0, n)."""
    if how == "mean":
        total = torch.zeros(n, values.shape[1]).index_add_(0, owner, values)
        return total / torch.bincount(owner, minlength=n).clamp_min(1)[:, None]
    out = torch.full((n, values.shape[1]), -torch.inf)
    return out.scatter_reduce_(0, owner[:, None].expand_as(values), values, reduce="amax")


def top_latents(z: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """The k columns of z with the largest |mean over class 1 − mean over class 0| (SAEBench)."""
    diff = np.abs(z[y == 1].mean(0) - z[y == 0].mean(0))
    return np.argsort(-diff, kind="stable")[:k]


def probe_correct(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, cfg: ProbingConfig) -> np.ndarray:
    """Per test text, whether a logistic-regression probe on standardised features labels it right."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=cfg.C, max_iter=cfg.max_iter))
    probe.fit(x_train, y_train)
    return probe.predict(x_test) == y_test


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, cfg: ProbingConfig) -> float:
    """Test accuracy of a logistic-regression probe on standardised features."""
    return float(probe_correct(x_train, y_train, x_test, y_test, cfg).mean())


def mean_task_accuracy(task: np.ndarray, correct: np.ndarray) -> float:
    """Sparse-probing accuracy of an SAE: per task the fraction of its test texts labelled right, then
    the mean over tasks (tasks with no text drawn are left out)."""
    task = np.asarray(task)
    n = np.bincount(task)
    hits = np.bincount(task, weights=np.asarray(correct, dtype=float), minlength=n.size)
    drawn = n > 0
    return float((hits[drawn] / n[drawn]).mean()) if drawn.any() else math.nan


def wilson_interval(correct: list[bool] | np.ndarray, level: float = LEVEL) -> Interval:
    """Wilson score interval of the fraction of True in `correct`: unlike the normal approximation it stays
    inside [0, 1] and is not empty at 0 or 1 correct."""
    n = len(correct)
    if n == 0:
        return (math.nan, math.nan)
    p = float(np.mean(correct))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _accuracy_statistic(task: np.ndarray, correct: np.ndarray) -> Terms:
    """(number of test texts, mean_task_accuracy of a resampled index array): the units every probing
    interval and verdict resamples."""
    return len(task), lambda i: mean_task_accuracy(task[i], correct[i])


def mean_accuracy_interval(task: np.ndarray, correct: np.ndarray, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of `mean_task_accuracy` over the test texts (docs/spec.md#verdicts' units)."""
    n, stat = _accuracy_statistic(np.asarray(task), np.asarray(correct, dtype=bool))
    ci = bootstrap(stat, n, n_boot=N_BOOT, seed=seed, level=LEVEL)
    return (ci.low, ci.high)


def probe_task(
    task: Task, raw_train: np.ndarray, raw_test: np.ndarray, z_train: np.ndarray, z_test: np.ndarray, cfg: ProbingConfig
) -> TaskProbe:
    """All probes of one task from pooled features of its train and test texts."""
    y_tr, y_te = np.asarray(task.train_labels), np.asarray(task.test_labels)
    rng = np.random.default_rng(cfg.seed)
    correct, latents, rand = {}, {}, {}
    for k in cfg.ks:
        if k > z_train.shape[1]:
            raise UserError(f"k = {k} is larger than the SAE's {z_train.shape[1]} latents; lower {advice('--ks', '--ks', 'k')}")
        cols = top_latents(z_train, y_tr, k)
        latents[k] = cols.tolist()
        correct[k] = probe_correct(z_train[:, cols], y_tr, z_test[:, cols], y_te, cfg).tolist()
        proj = rng.standard_normal((raw_train.shape[1], k))
        rand[k] = probe_correct(raw_train @ proj, y_tr, raw_test @ proj, y_te, cfg).tolist()
    raw = probe_correct(raw_train, y_tr, raw_test, y_te, cfg).tolist()
    return TaskProbe(
        task=task.name,
        n_train=len(y_tr),
        n_test=len(y_te),
        sae={k: float(np.mean(c)) for k, c in correct.items()},
        sae_ci={k: wilson_interval(c) for k, c in correct.items()},
        correct=correct,
        latents=latents,
        raw=float(np.mean(raw)),
        raw_ci=wilson_interval(raw),
        raw_correct=raw,
        random={k: float(np.mean(c)) for k, c in rand.items()},
        random_ci={k: wilson_interval(c) for k, c in rand.items()},
        random_correct=rand,
    )


def run_probing_many(
    saes: dict[str, SAE], loaded: LoadedModel, layer: int, tasks: list[Task], cfg: ProbingConfig | None = None
) -> dict[str, ProbingResult]:
    """Sparse probing of several SAEs of one layer; the model reads every distinct text once."""
    cfg = cfg or ProbingConfig()
    if not tasks:
        raise UserError("no probing tasks; give at least one task")
    for name, sae in saes.items():
        if sae.cfg.d_in != loaded.d_model:
            raise UserError(f"SAE '{name}' reads d = {sae.cfg.d_in} but {loaded.name} has d = {loaded.d_model}; give the SAE of this model")
    texts = sorted({t for task in tasks for t in task.train_texts + task.test_texts})
    row = {t: i for i, t in enumerate(texts)}
    encoders = {name: (lambda x, s=sae.eval(): s.encode(x.to(s.W_dec.device, s.W_dec.dtype)).cpu()) for name, sae in saes.items()}
    raw, codes = pooled_features(loaded, layer, texts, encoders, cfg)
    raw_np = raw.numpy()
    results: dict[str, ProbingResult] = {}
    for name in saes:
        z = codes[name].numpy()
        per_task = []
        for task in progress_bar(tasks, desc=f"probing {name}", unit="task", leave=False, disable=len(tasks) < 4):
            tr = [row[t] for t in task.train_texts]
            te = [row[t] for t in task.test_texts]
            per_task.append(probe_task(task, raw_np[tr], raw_np[te], z[tr], z[te], cfg))
        units = {
            "sae": {k: _task_units(per_task, lambda p, k=k: p.correct[k]) for k in cfg.ks},
            "random": {k: _task_units(per_task, lambda p, k=k: p.random_correct[k]) for k in cfg.ks},
        }
        raw_units = _task_units(per_task, lambda p: p.raw_correct)
        results[name] = ProbingResult(
            layer=layer,
            pooling=cfg.pooling,
            ks=list(cfg.ks),
            tasks=per_task,
            mean_sae={k: mean_task_accuracy(*u) for k, u in units["sae"].items()},
            mean_sae_ci={k: mean_accuracy_interval(*u, seed=cfg.seed) for k, u in units["sae"].items()},
            mean_raw=mean_task_accuracy(*raw_units),
            mean_raw_ci=mean_accuracy_interval(*raw_units, seed=cfg.seed),
            mean_random={k: mean_task_accuracy(*u) for k, u in units["random"].items()},
            mean_random_ci={k: mean_accuracy_interval(*u, seed=cfg.seed) for k, u in units["random"].items()},
        )
    return results


def _task_units(per_task: list[TaskProbe], correct: Callable[[TaskProbe], list[bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(task index, correct) of every test text of one probe (`correct` picks its list from each task)."""
    task = np.concatenate([np.full(p.n_test, t) for t, p in enumerate(per_task)])
    return task, np.concatenate([np.asarray(correct(p), dtype=bool) for p in per_task])


def unit_table(result: ProbingResult) -> pd.DataFrame:
    """One row per (k, task, test text): whether the k-probe labelled it right (the verdict's units)."""
    frames = []
    for k in result.ks:
        task, correct = _task_units(result.tasks, lambda p, k=k: p.correct[k])
        item = np.concatenate([np.arange(p.n_test) for p in result.tasks])
        frames.append(pd.DataFrame({"k": k, "task": [result.tasks[t].task for t in task], "item": item, "correct": correct}))
    return pd.concat(frames, ignore_index=True)


def _accuracy_terms(df: pd.DataFrame) -> Terms | None:
    if not has_columns(df, "task", "correct"):
        return None
    return _accuracy_statistic(pd.factorize(df["task"])[0], df["correct"].to_numpy(bool))


def probing_metric(k: int) -> VerdictMetric:
    """Sparse-probing accuracy at k latents as a verdict metric: test texts are the unit, paired (the
    same texts for every SAE); chance 0.5 (balanced classes); default δ 0.02."""
    return VerdictMetric(
        f"probe_acc_k{k}",
        f"probing accuracy, k = {k}",
        +1,
        "test text",
        "probing",
        _accuracy_terms,
        tolerance=0.02,
        chance=0.5,
        paired=True,
        ids=("task", "item"),
        select=(("k", k),),
    )


def format_tables(result: ProbingResult) -> str:
    """The terminal tables of `nullsae probe`: every accuracy with its 95 % interval, per task and the mean."""
    ks = result.ks
    iv = lambda a, ci: f"{a:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"  # noqa: E731
    w, cell = max(40, *(len(t.task) + 1 for t in result.tasks)), 19
    head = f"{'task':<{w}} {'n_test':>6} "
    sae = ["SAE probe: test accuracy [95 % interval] with k latents (chance 0.5; per task Wilson, mean bootstrap over test texts)"]
    sae.append(head + " ".join(f"{'k=' + str(k):>{cell}}" for k in ks))
    floor = ["ceiling (all dimensions) and floor (k random projections of the residual)"]
    floor.append(head + f"{'raw':>{cell}} " + " ".join(f"{'random k=' + str(k):>{cell}}" for k in ks))
    for t in result.tasks:
        sae.append(f"{t.task:<{w}} {t.n_test:>6} " + " ".join(f"{iv(t.sae[k], t.sae_ci[k]):>{cell}}" for k in ks))
        floor.append(
            f"{t.task:<{w}} {t.n_test:>6} {iv(t.raw, t.raw_ci):>{cell}} "
            + " ".join(f"{iv(t.random[k], t.random_ci[k]):>{cell}}" for k in ks)
        )
    n = sum(t.n_test for t in result.tasks)
    sae.append(f"{'mean over tasks':<{w}} {n:>6} " + " ".join(f"{iv(result.mean_sae[k], result.mean_sae_ci[k]):>{cell}}" for k in ks))
    floor.append(
        f"{'mean over tasks':<{w}} {n:>6} {iv(result.mean_raw, result.mean_raw_ci):>{cell}} "
        + " ".join(f"{iv(result.mean_random[k], result.mean_random_ci[k]):>{cell}}" for k in ks)
    )
    return "\n".join(sae + [""] + floor)


def run_probing(sae: SAE, loaded: LoadedModel, layer: int, tasks: list[Task], cfg: ProbingConfig | None = None) -> ProbingResult:
    """Sparse probing of one SAE reading `layer` of `loaded` on `tasks`."""
    return run_probing_many({"sae": sae}, loaded, layer, tasks, cfg)["sae"]
