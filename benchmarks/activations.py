"""Residual capture speed and streaming memory on the bundled SmolLM2 (30 layers).

Compares tokens/s of a full forward pass (logits included) with capture that stops after layer 10
and with capture at the last layer, interleaving them so machine load hits them alike. Capture at
the last layer skips the final norm and the unembedding, so it is also compared with a forward pass
of the base model (decoder stack only), its like-for-like reference. Then
measures, in a fresh process per buffer size, the peak resident-memory growth of a LiveStream over
one epoch, against its buffer size and against holding all activations.

    .venv/bin/python benchmarks/activations.py [--tokens 4096] [--window 128] [--batch 8] [--repeats 3] [--streams 2048:8192,...]

The last line reads `speedup at layer 10: X.XX` (early-stopping capture over full forward, tokens/s).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import threading
import time
from multiprocessing import Queue

import torch

from nullsae.activations import LiveStream
from nullsae.data import token_windows
from nullsae.models import capture_residuals, load_model


def _time(fn, windows: torch.Tensor, batch: int) -> float:
    """Seconds to run fn over all windows, batch by batch."""
    start = time.perf_counter()
    for b in range(0, windows.shape[0], batch):
        fn(windows[b : b + batch])
    return time.perf_counter() - start


def _rss() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _stream_peak(buffer_tokens: int, n_tokens: int, window: int, model_batch: int, out: Queue) -> None:
    """In a fresh process: peak RSS growth while a LiveStream at layer 10 runs one epoch (MiB, sampled
    every 2 ms), over the resident size after one warm-up forward pass of a model batch."""
    loaded = load_model("smollm2")
    windows = token_windows(loaded.tokenizer, loaded.bos_id, window, max(1, n_tokens // window), split="train")
    stream = LiveStream(loaded, windows, layer=10, batch_size=256, seed=0, buffer_tokens=buffer_tokens, model_batch=model_batch)
    capture_residuals(loaded.model, windows[:model_batch], [10])  # warm-up: the forward pass's own working memory
    base = peak = _rss()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    n = sum(1 for _ in stream.batches())
    done.set()
    thread.join()
    out.put((n, (peak - base) / 2**20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="windows per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--streams", default="2048:8192,2048:32768,2048:131072,8192:32768", help="LiveStream memory runs as BUFFER_TOKENS:DATA_TOKENS pairs"
    )
    args = ap.parse_args()

    loaded = load_model("smollm2")
    model, last = loaded.model, loaded.n_layers - 1
    windows = token_windows(loaded.tokenizer, loaded.bos_id, args.window, max(1, args.tokens // args.window), split="train")
    n_tok = windows.numel()
    print(
        f"SmolLM2-135M, {loaded.n_layers} layers, d={loaded.d_model}; {n_tok} tokens in windows of {args.window}, batch {args.batch}, torch threads {torch.get_num_threads()}"
    )

    def full(ids: torch.Tensor) -> None:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)

    def base(ids: torch.Tensor) -> None:  # decoder stack + final norm, no unembedding
        with torch.inference_mode():
            model.base_model(input_ids=ids, use_cache=False)

    methods = {
        "full forward": full,
        "base-model forward": base,
        "capture layer 10": lambda ids: capture_residuals(model, ids, [10]),
        f"capture layer {last}": lambda ids: capture_residuals(model, ids, [last]),
    }
    for fn in methods.values():  # warm-up
        fn(windows[: args.batch])
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(_time(fn, windows, args.batch))
    rate = {name: n_tok / statistics.median(ts) for name, ts in times.items()}
    for name, r in rate.items():
        print(
            f"{name:>18}: {r:8.0f} tok/s  ({r / rate['full forward']:.2f}x full forward, {r / rate['base-model forward']:.2f}x base-model forward; median of {args.repeats})"
        )

    ctx = mp.get_context("spawn")
    for pair in args.streams.split(","):
        buf, n_tokens = (int(v) for v in pair.split(":"))
        q = ctx.Queue()
        proc = ctx.Process(target=_stream_peak, args=(buf, n_tokens, args.window, args.batch, q))
        proc.start()
        n, grow = q.get()
        proc.join()
        buf_mib = buf * loaded.d_model * 4 / 2**20
        all_mib = n_tokens * loaded.d_model * 4 / 2**20
        print(
            f"LiveStream layer 10, {n_tokens} tokens, buffer {buf} tokens = {buf_mib:.1f} MiB (all activations: {all_mib:.1f} MiB): {n} batches, peak RSS growth {grow:.1f} MiB (incl. forward-pass temporaries)"
        )

    print(f"speedup at layer 10: {rate['capture layer 10'] / rate['full forward']:.2f}")


if __name__ == "__main__":
    main()
