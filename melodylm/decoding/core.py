"""The decoding core: score, sample and beam-search by stepping the model with a carried state.

All three walk the same recurrent state: scoring and priming feed a whole
sequence in one ``forward`` call, generation feeds one token per
``model.step`` and carries ``(h, c)``; nothing ever re-runs a prefix. The
log-probabilities recorded while generating are the raw model's (before
temperature or any processor), so ``token_logprobs(sample.ids)`` sums to
``sample.logprob`` (plus the final EOS term when the sample ended on EOS).

Every tensor the core builds is on the model's device (that of its first
parameter, looked up at each call, so a model moved after the decoder was
made is followed); the processors move their tables to the device of the
logits they get. Sampling draws its uniforms on the CPU, so a seed gives the
same pieces on any device (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from melodylm.decoding import processors as P
from melodylm.models.components.rnn_lm import map_state


@dataclass
class Sample:
    """One generated sequence: ``ids`` excludes BOS, EOS and the primer; ``logprob`` in nats.

    ``stop_reason`` is ``"eos"``, ``"max_tokens"``, ``"bars"`` or ``"seconds"``.
    """

    ids: list[int]
    logprob: float
    token_logprobs: list[float] = field(repr=False)
    stop_reason: str

    @property
    def ended(self) -> bool:
        return self.stop_reason == "eos"


REASONS = ("", "eos", "bars", "seconds", "max_tokens")


@dataclass
class StopAt:
    """When generation ends besides EOS: a token budget, a number of bars, a duration; and how early EOS may come.

    Bars and seconds count from the end of the primer and need a
    :class:`~melodylm.decoding.timeline.Timeline`; the token that would cross
    the limit is not kept. ``min_bars`` bans EOS until that many bars have
    started (a part that must span its condition: ``bars=min_bars=N`` ends in
    bar ``N``, on EOS or on the bar line after it). ``bars`` and ``min_bars``
    may also be one value per row of the batch (sampling only).
    """

    max_tokens: int = 512
    bars: int | list[int] | None = None
    seconds: float | None = None
    min_bars: int | list[int] | None = None
    origin: tuple[int, float] = field(default=(0, 0.0), repr=False)  # bars and beats at the primer's end
    limits: dict = field(default_factory=dict, repr=False)  # bars / min_bars as tensors, set when a run starts

    def check(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"the token budget must be >= 1, got {self.max_tokens}")
        for name in ("bars", "min_bars"):
            value = getattr(self, name)
            if value is not None and min(value if isinstance(value, (list, tuple)) else [value]) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")

    def per_row(self, name: str, batch: int, device) -> torch.Tensor | None:
        """``bars`` or ``min_bars`` as a tensor to compare with a ``(batch,)`` bar count (0-d for one value for
        every row), or None when unset."""
        value = getattr(self, name)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            return torch.tensor(value, dtype=torch.long, device=device)
        if len(value) != batch:
            raise ValueError(f"{name}: {len(value)} values for a batch of {batch}")
        return torch.tensor(list(value), dtype=torch.long, device=device)


class Decoder:
    """Wraps a language model with ``forward(ids, state)`` and ``step(ids, state)``.

    ``bos``, ``eos``, ``pad`` are the special token ids of its tokenizer;
    ``timeline`` (a factory ``(batch_size, device) -> Timeline``) is needed only
    to stop on bars or seconds.
    """

    def __init__(self, model: torch.nn.Module, bos: int, eos: int, pad: int, timeline=None):
        self.model, self.bos, self.eos, self.pad = model.eval(), bos, eos, pad
        self.timeline = timeline

    @property
    def device(self) -> torch.device:
        """The model's device (its first parameter's; the CPU for a model without parameters)."""
        return next((p.device for p in self.model.parameters()), torch.device("cpu"))

    def _never(self, device: torch.device) -> torch.Tensor:
        return torch.tensor([self.pad, self.bos], device=device)  # ids generation must never produce

    # --- scoring -------------------------------------------------------------

    @torch.inference_mode()
    def token_logprobs(self, sequences: list[list[int]], primer: list[int] = ()) -> list[torch.Tensor]:
        """Log-probability (nats) of every token of ``[*seq, EOS]`` given ``[BOS, *primer, *seq]``.

        Returns one tensor of ``len(seq) + 1`` values per sequence.
        """
        if not sequences:
            return []
        head = [self.bos, *primer]
        width = len(head) + max(len(s) for s in sequences)
        rows = [[*head, *s, self.eos] + [self.pad] * (width - len(head) - len(s)) for s in sequences]
        ids = torch.tensor(rows, dtype=torch.long, device=self.device)  # (batch, width + 1)
        x, y = ids[:, :-1], ids[:, 1:]
        logits, _ = self.model(x)
        logp = logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return [logp[i, len(head) - 1 : len(head) + len(s)].clone() for i, s in enumerate(sequences)]

    def adapted_logprobs(self, sequence: list[int], lr: float, chunk: int = 16) -> torch.Tensor:
        """:meth:`token_logprobs` of one sequence while the model learns it as it goes (dynamic evaluation).

        The tokens ``[*sequence, EOS]`` are read in chunks of ``chunk`` with the state carried; each chunk
        is scored first, then one SGD step of ``lr`` on its mean NLL updates the weights the next chunks
        are scored with, so every probability is still a prediction from the tokens before it. The weights
        are restored afterwards: each sequence starts from the trained model, as IDyOM's short-term model
        starts empty for every piece. ``lr=0`` gives :meth:`token_logprobs` exactly.
        """
        if lr < 0 or chunk < 1:
            raise ValueError(f"dynamic evaluation needs lr >= 0 and chunk >= 1, got {lr} and {chunk}")
        ids = torch.tensor([[self.bos, *sequence, self.eos]], dtype=torch.long, device=self.device)
        saved = {k: v.clone() for k, v in self.model.state_dict().items()}
        optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        state, out = None, []
        try:
            with torch.enable_grad():
                for start in range(0, ids.size(1) - 1, chunk):
                    logits, state = self.model(ids[:, start : start + chunk], state)
                    y = ids[:, start + 1 : start + chunk + 1]
                    logp = logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)[0]
                    out.append(logp.detach())
                    if lr > 0:
                        optimizer.zero_grad(set_to_none=True)
                        (-logp.mean()).backward()
                        optimizer.step()
                    state = map_state(lambda t: t.detach(), state)
        finally:
            self.model.load_state_dict(saved)
            self.model.zero_grad(set_to_none=True)
        return torch.cat(out)

    # --- generation ------------------------------------------------------------

    def _prime(self, primer: list[int], batch: int):
        """Feed ``[BOS, *primer]`` in one call: the state after it and the next-token logits."""
        prefix = torch.tensor([[self.bos, *primer]], dtype=torch.long, device=self.device)
        logits, state = self.model(prefix)  # once, then copied to every row
        if batch > 1 and logits.size(0) == batch:  # a model conditioned per row (seq2seq) answered for every row
            return logits[:, -1], state, prefix.expand(batch, -1)
        state = select_state(state, torch.zeros(batch, dtype=torch.long, device=prefix.device))
        return logits[:, -1].expand(batch, -1), state, prefix.expand(batch, -1)

    def _clock(self, stop: StopAt, batch: int, primer: list[int], device: torch.device):
        """A Timeline on ``device`` advanced over the primer, or None when no bars/seconds/min_bars limit is set."""
        if stop.bars is None and stop.seconds is None and stop.min_bars is None:
            return None
        if self.timeline is None:
            raise ValueError("bars, seconds and min_bars limits need a timeline (the tokenizer's)")
        clock = self.timeline(batch, device)
        for tok in primer:
            clock.update(torch.full((batch,), tok, dtype=torch.long, device=device))
        stop.origin = (int(clock.bar_count()[0]), float(clock.beats()[0]))
        stop.limits = {name: stop.per_row(name, batch, device) for name in ("bars", "min_bars")}  # once per run
        return clock

    @staticmethod
    def _crossing(clock, stop: StopAt) -> torch.Tensor:
        """Per row, after the clock took the new token: 0 inside the limits, 1 past bars, 2 past seconds."""
        bars0, beats0 = stop.origin
        code = torch.zeros_like(clock.bars)
        if stop.seconds is not None:
            code = code.masked_fill((clock.beats() - beats0) * 60.0 / clock.tempo >= stop.seconds, 2)
        if stop.bars is not None:
            code = code.masked_fill(clock.bar_count() - bars0 > stop.limits["bars"], 1)
        return code

    def _no_early_end(self, clock, stop: StopAt, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` with EOS banned on the rows that have not yet started ``stop.min_bars`` bars."""
        if stop.min_bars is None:
            return scores
        short = clock.bar_count() - stop.origin[0] < stop.limits["min_bars"]
        if not bool(short.any()):
            return scores
        scores = scores.clone()
        scores[short, self.eos] = float("-inf")
        return scores

    @torch.inference_mode()
    def sample(
        self,
        num: int,
        stop: StopAt | int = 512,
        processors: list = (),
        seed: int | None = None,
        greedy: bool = False,
        primer: list[int] = (),
    ) -> list[Sample]:
        """Ancestral sampling of ``num`` continuations of ``primer`` in one batch.

        ``greedy`` takes the arg-max instead of sampling (its own mode, not a
        temperature). ``seed`` makes the output identical across runs.
        """
        stop = StopAt(stop) if isinstance(stop, int) else stop
        stop.check()
        primer = list(primer)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None  # a CPU one: see _draw
        logits, state, prefix = self._prime(primer, num)
        device, start = prefix.device, prefix.size(1)
        history = torch.full((num, start + stop.max_tokens), self.pad, dtype=torch.long, device=device)
        history[:, :start] = prefix
        logprobs = torch.zeros(num, stop.max_tokens, device=device)
        reason = torch.zeros(num, dtype=torch.long, device=device)  # index into REASONS; 0 = still running
        clock = self._clock(stop, num, primer, device)
        never = self._never(device)
        t = 0
        for t in range(stop.max_tokens):
            if t > 0:
                logits, state = self.model.step(history[:, start + t - 1], state)
            scores = P.apply(processors, history[:, : start + t], logits.index_fill(1, never, float("-inf")))
            if clock is not None:
                scores = self._no_early_end(clock, stop, scores)
            nxt = scores.argmax(-1) if greedy else _draw(scores, generator)
            running = reason == 0
            nxt = nxt.masked_fill(~running, self.pad)
            step_lp = logits.log_softmax(-1).gather(-1, nxt.unsqueeze(-1)).squeeze(-1)
            code = torch.where(nxt == self.eos, REASONS.index("eos"), 0)
            if clock is not None:
                clock.update(nxt)
                crossed = self._crossing(clock, stop) * (code == 0)
                code = torch.where(crossed > 0, crossed + REASONS.index("bars") - 1, code)
                nxt = nxt.masked_fill(crossed > 0, self.pad)  # the crossing token is not kept
            keep = running & (nxt != self.pad)
            logprobs[:, t] = step_lp.masked_fill(~keep, 0.0)
            history[:, start + t] = nxt
            reason = torch.where(running, code, reason)
            if bool((reason > 0).all()):
                break
        reason = reason.masked_fill(reason == 0, REASONS.index("max_tokens"))
        return [self._finish(history[i, start : start + t + 1], logprobs[i, : t + 1], REASONS[int(reason[i])])
                for i in range(num)]

    def _finish(self, ids: torch.Tensor, logprobs: torch.Tensor, reason: str) -> Sample:
        ids, lp = ids.tolist(), logprobs.tolist()
        if reason == "eos":
            n = ids.index(self.eos)
            return Sample(ids=ids[:n], logprob=float(sum(lp[: n + 1])), token_logprobs=lp[: n + 1], stop_reason=reason)
        n = ids.index(self.pad) if self.pad in ids else len(ids)
        return Sample(ids=ids[:n], logprob=float(sum(lp[:n])), token_logprobs=lp[:n], stop_reason=reason)

    # --- beam search -----------------------------------------------------------

    @torch.inference_mode()
    def beam_search(
        self,
        beam_size: int = 4,
        stop: StopAt | int = 512,
        processors: list = (),
        length_penalty: float = 1.0,
        primer: list[int] = (),
    ) -> list[Sample]:
        """The most likely continuations of ``primer``, best first (``beam_size`` of them).

        Hypotheses are ranked by model log-probability divided by
        ``length ** length_penalty`` (0: raw sum, which favours short pieces).
        Processors act as constraints: a token they set to -inf is never
        taken; their other effects (temperature, ...) do not change the ranking.
        Bars and seconds limits end a hypothesis like EOS would, without it.
        """
        stop = StopAt(stop) if isinstance(stop, int) else stop
        stop.check()
        primer = list(primer)
        logits, state, prefix = self._prime(primer, 1)
        device, start = prefix.device, prefix.size(1)
        history = prefix.clone()
        scores = torch.zeros(1, device=device)
        token_lp = torch.zeros(1, 0, device=device)
        clock = self._clock(stop, 1, primer, device)
        never = self._never(device)
        finished: list[tuple[float, Sample]] = []

        def rank(total: float, length: int) -> float:
            return total / max(length, 1) ** length_penalty

        for t in range(stop.max_tokens):
            if t > 0:
                logits, state = self.model.step(history[:, -1], state)
            logp = logits.log_softmax(-1)
            allowed = P.apply(processors, history, logits.index_fill(1, never, float("-inf")))
            if clock is not None:
                allowed = self._no_early_end(clock, stop, allowed)
            logp = logp.masked_fill(torch.isinf(allowed) & (allowed < 0), float("-inf"))
            cand = (scores.unsqueeze(-1) + logp).flatten()
            k = min(2 * beam_size, int(torch.isfinite(cand).sum()))
            if k == 0:
                break
            top, flat = torch.topk(cand, k)
            rows, toks = flat // logp.size(-1), flat % logp.size(-1)
            keep_rows, keep_toks, keep_scores = [], [], []
            crossing = None
            if clock is not None:
                trial = clock.select(rows)
                trial.update(toks)
                crossing = self._crossing(trial, stop)
            for j in range(k):
                r, tok, total = int(rows[j]), int(toks[j]), float(top[j])
                seq_lp = torch.cat([token_lp[r], logp[r, tok].reshape(1)])
                if tok == self.eos or (crossing is not None and int(crossing[j]) > 0):
                    ended = tok == self.eos
                    ids = history[r, start:].tolist()
                    kept_lp = seq_lp if ended else seq_lp[:-1]
                    sample = Sample(ids=ids, logprob=float(kept_lp.sum()), token_logprobs=kept_lp.tolist(),
                                    stop_reason="eos" if ended else REASONS[int(crossing[j]) + 1])
                    finished.append((rank(sample.logprob, len(kept_lp)), sample))
                else:
                    keep_rows.append(r)
                    keep_toks.append(tok)
                    keep_scores.append(total)
                if len(keep_rows) == beam_size:
                    break
            best_done = max((f[0] for f in finished), default=float("-inf"))
            if len(finished) >= beam_size and (not keep_scores or rank(max(keep_scores), t + 1) < best_done):
                break
            if not keep_rows:
                break
            idx = torch.tensor(keep_rows, device=device)
            toks = torch.tensor(keep_toks, device=device)
            history = torch.cat([history[idx], toks.unsqueeze(-1)], dim=1)
            token_lp = torch.cat([token_lp[idx], logp[idx, toks].unsqueeze(-1)], dim=1)
            scores = torch.tensor(keep_scores, device=device)
            state = select_state(state, idx)
            if clock is not None:
                clock = clock.select(idx)
                clock.update(toks)
        else:  # the budget ran out with hypotheses still alive: they count too
            for r in range(history.size(0)):
                ids = history[r, start:].tolist()
                finished.append((rank(float(scores[r]), len(ids)), Sample(
                    ids=ids, logprob=float(scores[r]), token_logprobs=token_lp[r].tolist(), stop_reason="max_tokens")))
        finished.sort(key=lambda f: f[0], reverse=True)
        return [s for _, s in finished[:beam_size]]


def _draw(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row from ``softmax(scores)`` by inverting the CDF with one uniform draw per row.

    (``torch.multinomial`` draws a number per vocabulary entry: half the cost
    of a model step at batch 64.) A token of probability 0 is never drawn. The
    uniforms come from ``generator`` (torch's global one if None) on the CPU,
    then go to the device of ``scores``: one seed, the same draws everywhere.
    """
    probs = scores.softmax(-1)
    cum = probs.cumsum(-1)
    u = torch.rand(cum.shape[0], 1, generator=generator, device="cpu").to(cum.device) * cum[:, -1:]
    nxt = torch.searchsorted(cum, u, right=True).clamp_max_(cum.shape[1] - 1).squeeze(-1)
    ok = probs.gather(-1, nxt.unsqueeze(-1)).squeeze(-1) > 0
    return torch.where(ok, nxt, probs.argmax(-1))  # float edge at the very top of the CDF


def select_state(state, idx: torch.Tensor):
    """Reorder a recurrent state ``(layers, batch, hidden)`` (or an LSTM pair) along the batch.

    A state object with a ``select(idx)`` method reorders itself (e.g. a
    seq2seq decoder state, which carries the encoder memory with ``(h, c)``).
    """
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s[:, idx] for s in state)
    if isinstance(state, torch.Tensor):  # (a tensor has a select() of its own, with another meaning)
        return state[:, idx]
    return state.select(idx)


def feed(model, logp: torch.Tensor, state, seqs: list[list[int]]):
    """Feed each row its own token list with ``model.step``; a row whose list has ended keeps its state.

    What both transcription priors branch with: ``logp`` ``(rows, vocab)`` holds each row's next-token
    log-probabilities, ``state`` its recurrent state (as :func:`select_state` takes it). Returns the new
    ``logp``, the new state and the summed log-probability of each row's tokens. Nothing is re-run: a row
    of ``k`` tokens costs ``k`` steps (rows are stepped together while they have tokens left).
    """
    device = logp.device
    total = torch.zeros(len(seqs), device=device)
    logp = logp.clone()
    state = map_state(torch.Tensor.clone, state)
    for j in range(max((len(s) for s in seqs), default=0)):
        rows = torch.tensor([i for i, s in enumerate(seqs) if len(s) > j], device=device)
        toks = torch.tensor([seqs[i][j] for i in rows.tolist()], device=device)
        total[rows] += logp[rows, toks]
        logits, new = model.step(toks, select_state(state, rows))
        logp[rows] = logits.log_softmax(-1)
        if isinstance(state, tuple):
            for s, n in zip(state, new):
                s[:, rows] = n
        else:
            state[:, rows] = new
    return logp, state, total
