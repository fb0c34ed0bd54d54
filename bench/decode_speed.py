"""Decoding speed on CPU: tokens/s of one generation step, from naive to the full sampler.

For two model sizes (random weights; speed does not depend on them) and
batch 1 and 64, 512 generated tokens:

- naive: every token re-runs the whole prefix through ``forward`` (batch 1);
- ``forward`` on a length-1 input with the carried state (what ``step`` did before);
- ``step``: the fast path (cell equations over cached, pre-packed weights);
- ``Decoder.sample`` with Temperature + TopK + TopP, and with the musical
  constraints too (grammar mask, repetition penalty, pitch range & key, monophony);
- the processors alone, replayed over a sampled history: their share of a step;
- the memory-bandwidth bound at batch 1: parameter bytes read once per step
  against a measured copy bandwidth (main memory, and a copy that fits in L3).

Every figure is the best of ``--repeats`` runs: the machine is shared, so
slower runs measure the neighbours. Threads: torch's default unless a row
says otherwise (the bench sets them; the library never does).

    python -m bench.decode_speed [--tokens 512] [--repeats 5] [--naive-tokens 512]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bench.common import machine, table
from melodylm.data.tokenizer import SpecialIds, build_tokenizer
from melodylm.decoding import constraints as C
from melodylm.decoding import processors as P
from melodylm.decoding.core import Decoder
from melodylm.decoding.grammar import GrammarMask
from melodylm.models.components.rnn_lm import RecurrentLM

MODELS = {  # name -> RecurrentLM arguments besides the vocabulary
    "LSTM 2x512, emb 256": dict(embedding_dim=256, hidden_size=512, num_layers=2, cell="lstm", dropout=0.3),
    "quickstart (LSTM 2x256, emb 128)": dict(embedding_dim=128, hidden_size=256, num_layers=2, cell="lstm", dropout=0.1),
}
BATCHES = (1, 64)


def sampling_processors(tokenizer, max_tokens: int) -> list:
    return [P.Temperature(0.9), P.TopK(40), P.TopP(0.95)]


# Musical processors added when they exist: (module, class name, how to build one).
def extra_processors(tokenizer, max_tokens: int) -> tuple[list, list[str]]:
    """Fresh musical constraints as ``melodylm sample`` builds them (one combined pitch filter)."""
    return [
        GrammarMask(tokenizer, max_tokens=max_tokens),
        P.RepetitionPenalty(1.2),
        C.PitchRange(tokenizer, 55, 91) & C.AllowedPitchClasses(tokenizer, "D major"),
        C.Monophonic(tokenizer),
    ], []


def best_of(repeats: int, run, fresh=list, warm_up: bool = True) -> float:
    """Smallest wall time in seconds of ``run(fresh())`` over ``repeats`` calls (after one warm-up call).

    ``fresh()`` (untimed) makes what each run needs anew, such as stateful processors.
    """
    if warm_up:
        run(fresh())
    times = []
    for _ in range(repeats):
        arg = fresh()
        start = time.perf_counter()
        run(arg)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.inference_mode()
def naive(model, ids: torch.Tensor, tokens: int) -> None:
    for t in range(1, tokens + 1):
        model(ids[:1, :t])


@torch.inference_mode()
def forward_one(model, ids: torch.Tensor, tokens: int) -> None:
    state = None
    for t in range(tokens):
        _, state = model(ids[:, t : t + 1], state)


@torch.inference_mode()
def fast_step(model, ids: torch.Tensor, tokens: int) -> None:
    state = None
    for t in range(tokens):
        _, state = model.step(ids[:, t], state)


@torch.inference_mode()
def replay(processors: list, history: torch.Tensor, logits: torch.Tensor, start: int) -> None:
    """Call the processors as the decoder does, over an already sampled history buffer."""
    for t in range(start, history.size(1) + 1):
        P.apply(processors, history[:, :t], logits)


def bandwidth(megabytes: int, repeats: int) -> float:
    """Bytes/s of ``dst.copy_(src)`` (each byte read once and written once)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    inner = max(1, 256 // megabytes)
    seconds = best_of(repeats, lambda _: [dst.copy_(src) for _ in range(inner)]) / inner
    return 2 * src.numel() * 4 / seconds


def rate(batch: int, tokens: int, seconds: float) -> str:
    return f"{batch * tokens / seconds:,.0f} ({seconds / tokens * 1e6:,.0f} µs)"


def with_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def bench_model(name: str, args: dict, tokenizer, opts, bw: dict) -> tuple[list[list], list[str]]:
    torch.manual_seed(0)
    special = SpecialIds(tokenizer)
    vocab = len(tokenizer)
    model = RecurrentLM(vocab, **args).eval()
    with torch.no_grad():
        model.head.bias[special.eos] -= 30.0  # random weights: keep EOS out so every run is the full length
    n_params = sum(p.numel() for p in model.parameters())
    n = opts.tokens
    ids = torch.randint(3, vocab, (max(BATCHES), n))
    threads = torch.get_num_threads()
    rows, notes = [], []
    label = f"{name}, vocab {vocab}, {n_params / 1e6:.1f}M params"

    def row(method: str, cells: dict) -> None:
        rows.append([label, method, *(cells.get(b, "") for b in BATCHES)])

    k = opts.naive_tokens
    seconds = best_of(2, lambda _: naive(model, ids, k), warm_up=False)  # slow: two runs
    row(f"naive: re-run the prefix per token ({k} tokens)", {1: rate(1, k, seconds)})
    for t in (threads, 1) if threads > 1 else (threads,):
        suffix = "" if t == threads else f", {t} thread"
        row(f"forward, length 1, carried state (old step){suffix}",
            {b: rate(b, n, with_threads(t, lambda: best_of(opts.repeats, lambda _: forward_one(model, ids[:b], n))))
             for b in BATCHES})
        row(f"step (fast path){suffix}",
            {b: rate(b, n, with_threads(t, lambda: best_of(opts.repeats, lambda _: fast_step(model, ids[:b], n))))
             for b in BATCHES})

    decoder = Decoder(model, bos=special.bos, eos=special.eos, pad=special.pad)
    configs = [("Temperature + TopK + TopP", lambda: sampling_processors(tokenizer, n))]
    extras, skipped = extra_processors(tokenizer, n)
    if skipped:
        notes.append(f"{name}: skipped processors: " + "; ".join(skipped))
    if extras:
        notes.append(f"{name}: musical processors found: " + ", ".join(type(p).__name__ for p in extras))
    if extras:
        names = " + ".join(type(p).__name__ for p in extras)
        # constraints first: top-k / top-p after a mask would keep only ids the mask may then ban
        configs.append((f"{names} + T + K + P", lambda: extra_processors(tokenizer, n)[0] + sampling_processors(tokenizer, n)))
    decode_step = {}
    for what, make in [("no processors", lambda: []), *configs]:
        cells = {}
        for b in BATCHES:
            steps = []

            def run(processors):
                samples = decoder.sample(b, n, processors=processors, seed=0)
                steps.append(max(len(s.token_logprobs) for s in samples))  # loop iterations actually run

            seconds = best_of(opts.repeats, run, fresh=make)
            if min(steps) < n:
                notes.append(f"{name}, Decoder.sample {what}, batch {b}: stopped after {min(steps)} steps")
            cells[b] = rate(b, min(steps), seconds)
            decode_step[what, b] = seconds / min(steps)
            if what != "no processors":  # the processors alone, over the history this sampler produced
                samples = decoder.sample(b, n, processors=make(), seed=0)
                history = torch.full((b, 1 + n), special.pad, dtype=torch.long)
                history[:, 0] = special.bos
                for i, s in enumerate(samples):
                    history[i, 1 : 1 + len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
                logits = torch.randn(b, vocab)
                replay_s = best_of(opts.repeats, lambda procs: replay(procs, history, logits, 1), fresh=make) / n
                decode_step["procs " + what, b] = replay_s
        row(f"Decoder.sample, {what}", cells)
    for what, _ in configs:
        row(f"processors alone ({what}): µs/step, share of the sampler step",
            {b: f"{decode_step['procs ' + what, b] * 1e6:,.0f} µs ({decode_step['procs ' + what, b] / decode_step[what, b]:.0%})"
             for b in BATCHES})

    param_bytes = n_params * 4
    for where, bytes_per_s in bw.items():
        row(f"bandwidth bound: {param_bytes / 2**20:.1f} MiB of parameters per step at {bytes_per_s / 1e9:.0f} GB/s ({where})",
            {1: f"{bytes_per_s / param_bytes:,.0f} ({param_bytes / bytes_per_s * 1e6:,.0f} µs)"})
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="generated tokens per run")
    parser.add_argument("--naive-tokens", type=int, default=512, help="tokens for the naive re-run-the-prefix loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure; the best is reported")
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="subset of: " + ", ".join(MODELS))
    opts = parser.parse_args()

    load_before = os.getloadavg()[0]
    tokenizer = build_tokenizer("REMI")
    bw = {"main memory, 256 MiB copy": bandwidth(256, opts.repeats), "L3-resident, 8 MiB copy": bandwidth(8, opts.repeats * 3)}
    rows, notes = [], []
    for name in opts.models:
        r, nt = bench_model(name, MODELS[name], tokenizer, opts, bw)
        rows += r
        notes += nt
    headers = ["model", "method", "batch 1: tok/s (per step)", "batch 64: tok/s (per step)"]
    print(table(headers, rows))
    print()
    for note in notes:
        print(f"- {note}")
    print(f"- {machine()}; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; best of {opts.repeats} runs")


if __name__ == "__main__":
    main()
