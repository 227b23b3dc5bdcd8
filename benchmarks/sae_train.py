"""TopK SAE training throughput and FVU, nullsae vs sparsify (and SAELens), in one process run.

Config: d = 576, m = 9,216, k = 32, batch 4,096, fp32, CPU, Adam, the same data and the
same initial weights for every library. The arms run interleaved: each round gives every library
the next steps/repeats batches in turn (nullsae, sparsify, SAELens), so a load that comes and goes
slows all of them alike; each round's tokens/s ratio is one sample and the median is reported.
Prints median tokens/s, FVU on a held-out batch after equal tokens, the fraction of this machine's
dense-matmul FLOP/s the step reaches, and the cost of training K SAEs on one stream against K
separate runs. Last line: `ratio vs sparsify: X.XX` (the median over rounds).

    .venv/bin/python benchmarks/sae_train.py [--steps 40] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from nullsae.sae import SAE, SAEConfig
from nullsae.sae.architectures import fvu, geometric_median
from nullsae.sae.train import TrainConfig, make_optimizer, train_saes
from nullsae.toy.korznikov import KorznikovData

D, M, K, B, LR = 576, 9216, 32, 4096, 1e-3


def matmul_flops(repeats: int = 5) -> float:
    a, b = torch.randn(B, D), torch.randn(D, M)
    _ = a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        _ = a @ b
    return 2 * B * D * M * repeats / (time.perf_counter() - start)


def step_flops() -> float:
    """Arithmetic a TopK step needs: the dense encoder product plus O(B·k·d) sparse work."""
    return 2 * B * D * M + 10 * B * K * D


Step = Callable[[int, torch.Tensor], None]
Arm = tuple[Step, Callable[[torch.Tensor], float]]  # one training step; FVU on held-out data


def nullsae_arm(init: SAE) -> Arm:
    sae = SAE(init.cfg)
    sae.load_state_dict(init.state_dict())
    opt = make_optimizer(sae, LR)  # the trainer's optimiser

    def step(_i, x):
        out = sae(x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        sae.before_step()
        opt.step()
        sae.after_step()

    @torch.no_grad()
    def evaluate(held_out):
        sae.eval()
        return float(fvu(held_out, sae.decode(sae.encode(held_out))))

    return step, evaluate


def sparsify_arm(init: SAE) -> Arm:
    from sparsify import SparseCoder, SparseCoderConfig

    sc = SparseCoder(D, SparseCoderConfig(num_latents=M, k=K))
    assert sc.W_dec is not None  # SparseCoder keeps a decoder unless built with one tied to the encoder
    with torch.no_grad():
        sc.encoder.weight.copy_(init.W_enc)
        sc.encoder.bias.copy_(init.b_enc)
        sc.W_dec.copy_(init.W_dec)
        sc.b_dec.copy_(init.b_dec)
    opt = torch.optim.Adam(sc.parameters(), lr=LR)

    def step(_i, x):  # sparsify's Trainer step, minus logging and distributed code
        out = sc(x)
        opt.zero_grad(set_to_none=True)
        out.fvu.backward()
        sc.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sc.set_decoder_norm_to_unit_norm()

    @torch.no_grad()
    def evaluate(held_out):
        return float(fvu(held_out, sc(held_out).sae_out))

    return step, evaluate


def saelens_arm(init: SAE) -> Arm:
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sl = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D, d_sae=M, k=K, decoder_init_norm=None))
    with torch.no_grad():
        sl.W_enc.copy_(init.W_enc.T)
        sl.b_enc.copy_(init.b_enc)
        sl.W_dec.copy_(init.W_dec)
        sl.b_dec.copy_(init.b_dec)
    opt = torch.optim.Adam(sl.parameters(), lr=LR)

    def step(i, x):
        out = sl.training_forward_pass(
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=i, is_logging_step=False)
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    @torch.no_grad()
    def evaluate(held_out):
        return float(fvu(held_out, sl.decode(sl.encode(held_out))))

    return step, evaluate


def interleaved(arms: dict[str, Arm], batches: list[torch.Tensor], repeats: int) -> dict[str, list[float]]:
    """Tokens/s of every arm in each of `repeats` rounds; batch 0 is every arm's untimed warm-up.

    Round r gives each arm, in turn, the same slice of batches: all arms see the same batches in the
    same order, and each round's ratios compare arms that ran seconds apart.
    """
    for step, _ in arms.values():
        step(0, batches[0])
    per_round = (len(batches) - 1) // repeats
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(repeats):
        chunk = range(1 + r * per_round, 1 + (r + 1) * per_round)
        for name, (step, _) in arms.items():
            start = time.perf_counter()
            for i in chunk:
                step(i, batches[i])
            rates[name].append(len(chunk) * B / (time.perf_counter() - start))
    return rates


def shared_stream_cost(steps: int, n_saes: int) -> tuple[float, float, float]:
    """Seconds for: the stream alone, one SAE on it, n_saes SAEs on it (smaller SAEs, same stream)."""
    data = KorznikovData("constant", d=D, n_features=4 * D, batch_size=B, seed=5)
    start = time.perf_counter()
    for _, _x in zip(range(steps), data.batches(0)):
        pass
    t_stream = time.perf_counter() - start
    times = []
    for count in (1, n_saes):
        saes = {f"s{i}": SAE(SAEConfig(arch="topk", d_in=D, n_latents=M // 4, k=K, seed=i)) for i in range(count)}
        start = time.perf_counter()
        train_saes(saes, data, TrainConfig(steps=steps, lr=LR, warmup_steps=0), progress=False)
        times.append(time.perf_counter() - start)
    return t_stream, times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per library (one more is a warm-up)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds the steps are split into, each running every library in turn")
    args = parser.parse_args()
    if args.repeats < 1 or args.steps < args.repeats:
        parser.error("give --repeats ≥ 1 and --steps ≥ --repeats")
    steps = args.steps - args.steps % args.repeats
    torch.manual_seed(0)
    data = KorznikovData("constant", d=D, n_features=4 * D, batch_size=B, seed=1)
    stream = data.batches(0)
    batches = [next(stream) for _ in range(steps + 1)]
    held_out = data.eval_set(B)
    init = SAE(SAEConfig(arch="topk", d_in=D, n_latents=M, k=K, auxk=False))
    with torch.no_grad():
        init.b_dec.copy_(geometric_median(batches[0]))
    print(
        f"TopK SAE d={D} m={M} k={K} batch={B} fp32 CPU, {torch.get_num_threads()} threads, "
        f"{steps} timed steps in {args.repeats} interleaved rounds, Adam lr={LR}"
    )
    peak = matmul_flops()
    print(f"dense matmul ({B}x{D} @ {D}x{M}): {peak / 1e9:.1f} GFLOP/s")
    arms = {"nullsae": nullsae_arm(init), "sparsify": sparsify_arm(init)}
    try:
        arms["SAELens"] = saelens_arm(init)
    except Exception as exc:  # noqa: BLE001 - a peer that fails to run is reported, not fatal
        print(f"SAELens: skipped ({type(exc).__name__}: {exc})")
    rates = interleaved(arms, batches, args.repeats)
    for name, (_, evaluate) in arms.items():
        tps = statistics.median(rates[name])
        frac = step_flops() * tps / B / peak
        print(
            f"{name:<9} {tps:>9.0f} tokens/s (median of {args.repeats})   FVU after {steps * B:,} tokens: {evaluate(held_out):.4f}   "
            f"{frac:.0%} of dense-matmul FLOP/s"
        )
    t_stream, t_one, t_many = shared_stream_cost(max(5, steps // 4), 3)
    bound = 3 * (t_one - t_stream) + t_stream
    print(
        f"one stream: stream alone {t_stream:.1f} s, 1 SAE {t_one:.1f} s, 3 SAEs {t_many:.1f} s (bound 3×(1 SAE − stream) + stream = {bound:.1f} s; ratio {t_many / bound:.2f})"
    )
    ratios = [a / b for a, b in zip(rates["nullsae"], rates["sparsify"])]
    print(f"ratios vs sparsify per round: {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"ratio vs sparsify: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
