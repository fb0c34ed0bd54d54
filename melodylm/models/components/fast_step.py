"""The decoding fast path of :class:`RecurrentLM.step`: cells written out over cached weights.

Only used in eval mode with autograd off; ``forward`` (training, scoring)
stays on nn.LSTM / nn.GRU / nn.RNN. Measured in ``bench/decode_speed.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from melodylm.models.components.rnn_lm import RecurrentLM, State

# Above this many entries (32 MiB in float32) the first layer keeps its input
# matrix instead of a precomputed (vocab_size, gates * hidden_size) table.
FOLD_EMBEDDING_MAX_ENTRIES = 1 << 23

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
ONEDNN_MIN_BATCH = 2  # from this batch size on, float32 products on CPU go through oneDNN


class _Affine:
    """``x @ weight.T + bias`` for a fixed ``weight (out, in)``, laid out for the fastest CPU kernel.

    Batch 1 multiplies a pre-transposed copy with ``torch.addmm`` (MKL: about
    1 µs of overhead per call, and one thread, so a busy neighbour core does
    not stall it). From ``ONEDNN_MIN_BATCH`` on, in float32 on CPU, a copy
    pre-packed for oneDNN (the library inside nn.LSTM) is made on first use:
    measured on this project's 2-core AMD machine, 2-4x faster than MKL from
    batch 2 to 64. At batch 1 oneDNN costs ~10 µs per call; with 2 idle
    threads it won 1.5x on 1M-entry matrices, but took milliseconds per call
    when another process held the second core.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.t = weight.detach().t().contiguous()  # (in, out)
        self.bias = None if bias is None else bias.detach().contiguous()
        self.onednn = _ONEDNN and weight.device.type == "cpu" and weight.dtype == torch.float32
        self.packed: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, plus: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, in)`` -> ``(batch, out)``; ``plus`` ``(batch, out)`` is added (only when there is no bias)."""
        if self.onednn and x.shape[0] >= ONEDNN_MIN_BATCH:
            if self.packed is None:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(self.t.t().contiguous())
            y = torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
            return y if plus is None else y.add_(plus)
        if plus is not None:
            return torch.addmm(plus, x, self.t)
        return torch.mm(x, self.t) if self.bias is None else torch.addmm(self.bias, x, self.t)


class FastStep:
    """``RecurrentLM.step`` in eval mode: the recurrent cells written out over cached weights.

    Per layer the input part of the gates comes from ``x_proj`` (for the first
    layer, a row of a precomputed ``embedding @ W_ih.T + bias`` table when it
    is small enough) and the recurrent part from ``h_proj``; the state layout
    stays exactly nn.LSTM's / nn.GRU's / nn.RNN's.

    No ``torch.tanh``: on CPU it goes through MKL's vector math, which starts
    its thread pool even for a few hundred values, so at batch 1 it kept the
    second core spinning and took milliseconds per call whenever another
    process held that core. The cells use ``tanh(x) = 1 - 2 * sigmoid(-2x)``
    instead, with the factor -2 folded into the weight rows of the pre-tanh
    gates (LSTM g, GRU n, all of RNN's), which scales them exactly.
    """

    def __init__(self, model: RecurrentLM, key: tuple):
        self.key, self.cell, rnn = key, model.cell, model.rnn
        n = self.hidden = rnn.hidden_size
        gates = {"lstm": 4, "gru": 3, "rnn": 1}[model.cell]
        if getattr(rnn, "nonlinearity", "tanh") != "tanh":
            raise ValueError("the fast step implements tanh RNNs only")
        scale = torch.full((gates * n, 1), -2.0, dtype=rnn.weight_hh_l0.dtype, device=rnn.weight_hh_l0.device)
        if model.cell != "rnn":  # only the g (LSTM) / n (GRU) block feeds a tanh
            scale[: 2 * n] = scale[3 * n :] = 1.0
        emb = model.embedding.weight.detach()
        self.table = self.embedding = self.bar_table = self.bar_embedding = None
        self.bar_counts = model.bar_counts if model.bar_clock else None  # the bar clock's counts
        self.layers = []
        for l in range(rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{name}_l{l}").detach()
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            w_ih, w_hh, b_ih, b_hh = w_ih * scale, w_hh * scale, b_ih * scale[:, 0], b_hh * scale[:, 0]
            # GRU needs b_hn inside r * (W_hn h + b_hn); for LSTM and RNN the two biases simply add up.
            x_bias, h_bias = (b_ih, b_hh) if model.cell == "gru" else (b_ih + b_hh, None)
            if l == 0 and emb.shape[0] * gates * n <= FOLD_EMBEDDING_MAX_ENTRIES:
                self.table, x_proj = torch.addmm(x_bias, emb, w_ih.t()).contiguous(), None
                if model.bar_clock:  # the clock's embedding goes through the same first-layer product
                    self.bar_table = (model.bar_embedding.weight.detach() @ w_ih.t()).contiguous()
            else:
                x_proj = _Affine(w_ih, x_bias)
                if l == 0:
                    self.embedding = emb
                    if model.bar_clock:
                        self.bar_embedding = model.bar_embedding.weight.detach()
            self.layers.append((x_proj, _Affine(w_hh, h_bias)))
        w, b = model.head.weight.detach(), model.head.bias.detach()
        if model.projection is not None:  # head(projection(y)) as one matrix
            b = torch.addmv(b, w, model.projection.bias.detach())
            w = w @ model.projection.weight.detach()
        self.head = _Affine(w, b)

    def step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h, c = state[:2] if self.cell == "lstm" else (state, None)
        bars = None
        if self.bar_counts is not None:
            counts, bars = self.bar_counts(ids[:, None], state[2])
            counts = counts[:, 0]
        if self.table is not None:
            gi = torch.index_select(self.table, 0, ids)
            if bars is not None:
                gi = gi + torch.index_select(self.bar_table, 0, counts)
        else:
            x = torch.index_select(self.embedding, 0, ids)
            if bars is not None:
                x = x + torch.index_select(self.bar_embedding, 0, counts)
            gi = self.layers[0][0](x)
        hs, cs = [], []
        for l, (x_proj, h_proj) in enumerate(self.layers):
            if l > 0:
                gi = x_proj(x)
            if self.cell == "lstm":
                x, c_new = self._lstm(gi, h[l], c[l], h_proj)
                cs.append(c_new)
            elif self.cell == "gru":
                x = self._gru(gi, h[l], h_proj)
            else:  # tanh(a) = 1 - 2 sigmoid(-2a), the -2 already in the weights
                x = h_proj(h[l], plus=gi).sigmoid_().mul_(-2.0).add_(1.0)
            hs.append(x)
        logits = self.head(x)
        if self.cell != "lstm":
            return logits, torch.stack(hs)
        return logits, (torch.stack(hs), torch.stack(cs)) + (() if bars is None else (bars,))

    @staticmethod
    def _lstm(gi, h, c, h_proj):
        i, f, g, o = h_proj(h, plus=gi).sigmoid_().chunk(4, 1)  # g holds sigmoid(-2 g)
        c_new = torch.addcmul((f * c).add_(i), i, g, value=-2.0)  # f c + i tanh(g)
        return torch.addcmul(o, o, (c_new * -2.0).sigmoid_(), value=-2.0), c_new  # o tanh(c)

    def _gru(self, gi, h, h_proj):
        n, gh = self.hidden, h_proj(h)  # gh has b_hh; the n blocks of gi and gh carry the factor -2
        r, z = (gi[:, : 2 * n] + gh[:, : 2 * n]).sigmoid_().chunk(2, 1)
        cand = torch.addcmul(gi[:, 2 * n :], r, gh[:, 2 * n :]).sigmoid_().mul_(-2.0).add_(1.0)  # tanh(i_n + r h_n)
        return torch.lerp(cand, h, z)  # (1 - z) * n + z * h
