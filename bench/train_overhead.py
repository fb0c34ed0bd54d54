"""Training throughput: the LightningModule under Trainer vs a bare torch loop.

Both train the same model (the quickstart LSTM unless told otherwise) on the
same list of batches, with AdamW, the same LR schedule shape and gradient
clipping by norm; the first ``--warmup`` steps are not timed. Prints tokens/s
(non-padding targets) and Lightning's overhead.

    python bench/train_overhead.py [--data datasets/prepared/oneills1850] [--steps 150]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from bench.common import REPO, machine, table
from melodylm.data.datamodules import TokenDataModule
from melodylm.data.windows import IGNORE
from melodylm.models.components.rnn_lm import RecurrentLM
from melodylm.models.lm_module import LanguageModelModule

MODEL = dict(embedding_dim=128, hidden_size=256, num_layers=2, cell="lstm", dropout=0.1)


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    default = REPO / "datasets" / "prepared" / "oneills1850"
    if (default / "prepare.json").is_file():
        return default
    from melodylm.data.midi import CleanOptions
    from melodylm.data.prepare import PrepareSettings, prepare

    out = Path(tempfile.mkdtemp()) / "oneills"
    prepare(["music21:oneills1850"], out, PrepareSettings(clean=CleanOptions(melody=True)),
            export_root=REPO / "datasets", corpus_files=4)
    return out


def fixed_batches(root: Path, n: int, seq_len: int, batch_size: int) -> list:
    dm = TokenDataModule(str(root), seq_len=seq_len, batch_size=batch_size)
    dm.setup("fit")
    torch.manual_seed(0)
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == n:
            return batches, dm.vocab_size
    raise SystemExit(f"only {len(batches)} batches in {root}; lower --steps")


def bare_loop(batches, vocab_size: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = RecurrentLM(vocab_size, **MODEL).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    tokens, start = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            start, tokens = time.perf_counter(), 0
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1), ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += int((y != IGNORE).sum())
    return tokens / (time.perf_counter() - start)


class Clock(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.tokens, self.start = warmup, 0, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start, self.tokens = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.tokens += int((batch[1] != IGNORE).sum())
        self.end = time.perf_counter()


def lightning_loop(batches, vocab_size: int, warmup: int) -> float:
    torch.manual_seed(0)
    module = LanguageModelModule(vocab_size, **MODEL, lr=2e-3, warmup_steps=1)
    clock = Clock(warmup)
    trainer = L.Trainer(
        max_steps=len(batches), logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0, gradient_clip_algorithm="norm",
        limit_val_batches=0, callbacks=[clock], accelerator="cpu", devices=1,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return clock.tokens / (clock.end - clock.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="prepared folder (default: the demo's, else a small export)")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    batches, vocab = fixed_batches(data_dir(args.data), args.steps, args.seq_len, args.batch_size)
    bare = bare_loop(batches, vocab, args.warmup)
    lit = lightning_loop(batches, vocab, args.warmup)
    print(f"\n{machine()}; model {MODEL}, vocab {vocab}, batch {args.batch_size} x {args.seq_len}, "
          f"{args.steps - args.warmup} timed steps\n")
    print(table(["loop", "train tokens/s", "relative"], [
        ["bare torch", f"{bare:,.0f}", "1.00"],
        ["LightningModule + Trainer", f"{lit:,.0f}", f"{lit / bare:.2f}"],
    ]))
    print(f"\nLightning overhead: {100 * (bare / lit - 1):+.1f}% time per token")


if __name__ == "__main__":
    main()
