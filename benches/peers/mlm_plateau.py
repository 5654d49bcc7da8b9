"""A PyTorch reference for the unigram plateau: does a tiny post-LN BERT MLM (1 layer,
HIDDEN wide, 2 heads) learn context on a cocolm shard set within STEPS steps?

Usage: python mlm_plateau.py SHARDS/ [HIDDEN=64] [STEPS=800]

Batch 16 × the shards' seq_len, 15 % masked with [MASK] (id 3), AdamW lr 3e-3 (β 0.9/0.98,
ε 1e-6, decay 0.01), 50 warm-up steps then linear decay, clipping at 1. Prints step, MLM
loss and accuracy of the batch every 100 steps. Used to tell a plateau of the method (this
reference stays there too) from a defect of cocolm's trainer (BENCHMARKS.md, the CLINC150
experiment).
"""

import glob
import json
import sys

import torch
import torch.nn as nn
from datasets import Dataset, concatenate_datasets


def main():
    shards = sys.argv[1]
    hidden = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 800
    torch.manual_seed(0)
    torch.set_num_threads(2)
    manifest = json.load(open(f"{shards}/manifest.json"))
    vocab = manifest["tokenizer"]["vocab_size"]
    files = sorted(glob.glob(f"{shards}/shard-*.arrow"))
    ds = concatenate_datasets([Dataset.from_file(f) for f in files]).select_columns(["input_ids"])
    ids = torch.tensor(ds["input_ids"][:20000], dtype=torch.long)
    seq, batch, mask_id = ids.shape[1], 16, 3

    class Mlm(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, hidden)
            self.pos = nn.Embedding(seq, hidden)
            self.ln = nn.LayerNorm(hidden)
            layer = nn.TransformerEncoderLayer(
                hidden, 2, 4 * hidden, 0.0, activation="gelu", batch_first=True
            )
            self.enc = nn.TransformerEncoder(layer, 1)
            self.dense = nn.Linear(hidden, hidden)
            self.ln2 = nn.LayerNorm(hidden)
            self.bias = nn.Parameter(torch.zeros(vocab))
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.normal_(p, std=0.02)

        def forward(self, x, masked):
            h = self.ln(self.tok(x) + self.pos.weight[None, : x.shape[1]])
            h = self.enc(h)[masked]
            h = self.ln2(nn.functional.gelu(self.dense(h)))
            return h @ self.tok.weight.T + self.bias

    model = Mlm()
    opt = torch.optim.AdamW(
        model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / 50, (steps - s) / (steps - 50))
    )
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = ids[torch.randint(0, ids.shape[0], (batch,), generator=g)]
        masked = torch.rand(x.shape, generator=g) < 0.15
        masked[:, 0] = False
        inp = x.clone()
        inp[masked] = mask_id
        logits = model(inp, masked)
        loss = nn.functional.cross_entropy(logits, x[masked])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            accuracy = (logits.argmax(-1) == x[masked]).float().mean().item()
            print(step + 1, round(loss.item(), 3), round(accuracy, 3), flush=True)


if __name__ == "__main__":
    main()
