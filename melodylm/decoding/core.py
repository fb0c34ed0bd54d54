"""The decoding core: score and sample by stepping the model with a carried state.

Both walk the same recurrent state: scoring feeds a whole sequence in one
call, sampling feeds one token per step and carries ``(h, c)``; neither ever
re-runs a prefix. The log-probabilities recorded while sampling are the raw
model's (before temperature or any processor), so ``score(sample)`` equals
``sample.logprob``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from melodylm.decoding import processors as P


@dataclass
class Sample:
    """One generated sequence. ``ids`` excludes BOS/EOS; ``logprob`` is in nats."""

    ids: list[int]
    logprob: float
    token_logprobs: list[float] = field(repr=False)
    ended: bool  # True when the model emitted EOS, False when the budget ran out


class Decoder:
    """Wraps a language model ``forward(ids, state) -> (logits, state)``.

    ``bos``, ``eos``, ``pad`` are the special token ids of its tokenizer.
    """

    def __init__(self, model: torch.nn.Module, bos: int, eos: int, pad: int):
        self.model, self.bos, self.eos, self.pad = model.eval(), bos, eos, pad

    @torch.inference_mode()
    def token_logprobs(self, sequences: list[list[int]]) -> list[torch.Tensor]:
        """Log-probability (nats) of every token of ``[*seq, EOS]`` given ``[BOS, *seq]``.

        Returns one tensor of ``len(seq) + 1`` values per sequence.
        """
        if not sequences:
            return []
        width = max(len(s) for s in sequences) + 1
        x = torch.full((len(sequences), width), self.pad, dtype=torch.long)
        y = torch.full((len(sequences), width), self.pad, dtype=torch.long)
        for i, s in enumerate(sequences):
            x[i, : len(s) + 1] = torch.tensor([self.bos, *s])
            y[i, : len(s) + 1] = torch.tensor([*s, self.eos])
        logits, _ = self.model(x)
        logp = logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return [logp[i, : len(s) + 1].clone() for i, s in enumerate(sequences)]

    @torch.inference_mode()
    def sample(
        self,
        num: int,
        max_tokens: int,
        processors: list = (),
        seed: int | None = None,
        greedy: bool = False,
    ) -> list[Sample]:
        """Ancestral sampling of ``num`` sequences in one batch, at most ``max_tokens`` each.

        ``greedy`` takes the arg-max instead of sampling (its own mode, not a
        temperature). ``seed`` makes the output identical across runs.
        """
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        history = torch.full((num, 1), self.bos, dtype=torch.long)
        state = None
        done = torch.zeros(num, dtype=torch.bool)
        logprobs = torch.zeros(num, 0)
        for _ in range(max_tokens):
            logits, state = self.model.step(history[:, -1], state)
            scores = P.apply(processors, history, logits)
            if greedy:
                nxt = scores.argmax(-1)
            else:
                nxt = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)
            nxt = nxt.masked_fill(done, self.pad)
            step_logp = logits.log_softmax(-1).gather(-1, nxt.unsqueeze(-1)).squeeze(-1).masked_fill(done, 0.0)
            history = torch.cat([history, nxt.unsqueeze(-1)], dim=1)
            logprobs = torch.cat([logprobs, step_logp.unsqueeze(-1)], dim=1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        return [self._finish(history[i, 1:], logprobs[i]) for i in range(num)]

    def _finish(self, ids: torch.Tensor, logprobs: torch.Tensor) -> Sample:
        ids = ids.tolist()
        ended = self.eos in ids
        n = ids.index(self.eos) + 1 if ended else len(ids)
        lp = logprobs[:n].tolist()
        return Sample(ids=ids[: n - 1] if ended else ids, logprob=float(sum(lp)), token_logprobs=lp, ended=ended)
