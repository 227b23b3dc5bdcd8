"""Where the tasks of a plan run: `local` (in this process, one after another) or `ray` (spread over a
Ray cluster). Each task writes its results into the run directory itself, so the run directory must
be on a filesystem every Ray node sees (one machine, or a shared mount).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from nullsae.errors import UserError, advice
from nullsae.extras import require
from nullsae.progress import progress_bar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    name: str

    def map(self, fn: Callable[[T], R], items: Sequence[T], labels: Sequence[str], progress: bool) -> list[R]: ...


class LocalExecutor:
    """Runs every task in this process, in plan order."""

    name = "local"

    def map(self, fn: Callable[[T], R], items: Sequence[T], labels: Sequence[str], progress: bool) -> list[R]:
        out = []
        bar = progress_bar(total=len(items), desc="tasks", unit="task", disable=not progress, position=0)
        for item, label in zip(items, labels):
            bar.set_postfix_str(label)
            out.append(fn(item))
            bar.update(1)
        bar.close()
        return out


def _apply(fn: Callable[[T], R], item: T) -> R:
    """The Ray task body: call `fn` on one item (any callable, builtins included)."""
    return fn(item)


class RayExecutor:
    """Submits one Ray task per item to the cluster at `address` and gathers results as they finish."""

    name = "ray"

    def __init__(self, address: str | None, num_cpus: float = 1.0, num_gpus: float = 0.0):
        ray = require("ray", "ray")
        self.ray = ray
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        if not ray.is_initialized():
            try:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UserError(
                    f"could not connect to the Ray cluster at {address or 'auto'} ({first}); start it with `ray start --head` or check {advice('--address', '--address', 'the address')}"
                ) from None

    def map(self, fn: Callable[[T], R], items: Sequence[T], labels: Sequence[str], progress: bool) -> list[R]:
        ray = self.ray
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)(_apply)
        refs = [remote.remote(fn, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending = list(refs)
        bar = progress_bar(total=len(refs), desc="tasks (ray)", unit="task", disable=not progress)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    out[index[ref]] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    if isinstance(cause, UserError):
                        raise UserError(f"{labels[index[ref]]}: {cause}") from None
                    raise
                bar.set_postfix_str(labels[index[ref]])
                bar.update(1)
        bar.close()
        return out


def make_executor(name: str, address: str | None = None) -> Executor:
    if name == "local":
        if address:
            raise UserError(
                advice("--executor", "--address only applies to --executor ray", "a Ray address only applies to the ray executor")
            )
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise UserError(f"unknown executor '{name}'; choose local or ray")
