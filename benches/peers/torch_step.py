"""PyTorch peer of `cocolm bench train`: the same training step, timed the same way.

Two workloads, both batch x seq tokens, vocabulary V, AdamW (beta 0.9/0.98, eps 1e-6,
weight decay 0.01), global-norm clipping at 1.0, dropout 0.1 in the main model:

* ``coco-lm``: what `cocolm bench train` runs. A 1-layer generator (dropout 0) and the
  main model share the token table; the generator's MLM head (Dense -> GELU -> LayerNorm
  -> tied decoder + bias) runs at the masked rows only; one replacement is sampled per
  masked row from its softmax; the main model reads the corrupted input; copy BCE on all
  tokens, CLM cross-entropy at the masked rows weighted by 1 - sigmoid(copy) (detached);
  loss = MLM + 50 * BCE + CLM; one backward through both models.
  T5 relative position bias (32 buckets, max distance 128) in both stacks.
* ``bert-mlm``: the encoder alone with a BERT MLM head over every position (the shape
  Hugging Face's BertForMaskedLM computes), no relative position bias.

Prints one JSON line per workload. Usage:
    python benches/peers/torch_step.py [--threads 2] [--steps 10] [--workload coco-lm]
"""

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def relative_buckets(seq, num_buckets=32, max_distance=128):
    pos = torch.arange(seq)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    large = max_exact + (
        torch.log(n.float().clamp(min=1) / max_exact)
        / math.log(max_distance / max_exact)
        * (half - max_exact)
    ).long()
    large = large.clamp(max=half - 1)
    return bucket + torch.where(n < max_exact, n, large)


class Layer(nn.Module):
    def __init__(self, h, heads, ffn, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.qkv = nn.Linear(h, 3 * h)
        self.out = nn.Linear(h, h)
        self.ln1 = nn.LayerNorm(h, eps=1e-5)
        self.fin = nn.Linear(h, ffn)
        self.fout = nn.Linear(ffn, h)
        self.ln2 = nn.LayerNorm(h, eps=1e-5)

    def forward(self, x, bias):
        b, s, h = x.shape
        d = h // self.heads
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        scores = (q / math.sqrt(d)) @ k.transpose(-1, -2) + bias
        probs = F.dropout(scores.softmax(-1), self.p, self.training)
        ctx = (probs @ v).transpose(1, 2).reshape(b, s, h)
        x = self.ln1(x + F.dropout(self.out(ctx), self.p, self.training))
        y = self.fout(F.gelu(self.fin(x)))
        return self.ln2(x + F.dropout(y, self.p, self.training))


class Stack(nn.Module):
    def __init__(self, h, layers, heads, ffn, p, seq, relpos):
        super().__init__()
        self.pos = nn.Embedding(seq, h)
        self.ln = nn.LayerNorm(h, eps=1e-5)
        self.p = p
        self.layers = nn.ModuleList(Layer(h, heads, ffn, p) for _ in range(layers))
        self.relpos = nn.Embedding(32, heads) if relpos else None
        self.register_buffer("buckets", relative_buckets(seq))

    def forward(self, words):
        s = words.shape[1]
        x = self.ln(words + self.pos.weight[:s])
        x = F.dropout(x, self.p, self.training)
        bias = 0.0
        if self.relpos is not None:
            bias = self.relpos(self.buckets[:s, :s]).permute(2, 0, 1)[None]
        for layer in self.layers:
            x = layer(x, bias)
        return x


class Head(nn.Module):
    def __init__(self, h, vocab):
        super().__init__()
        self.dense = nn.Linear(h, h)
        self.ln = nn.LayerNorm(h, eps=1e-5)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x, table):
        return F.linear(self.ln(F.gelu(self.dense(x))), table, self.bias)


class CocoLm(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.tokens = nn.Embedding(a.vocab, a.hidden)
        self.gen = Stack(a.hidden, a.gen_layers, a.heads, a.ffn, 0.0, a.seq, True)
        self.gen_head = Head(a.hidden, a.vocab)
        self.main = Stack(a.hidden, a.layers, a.heads, a.ffn, 0.1, a.seq, True)
        self.copy = nn.Linear(a.hidden, 1)
        # COCO-LM's CLM head: the tied projection of the hidden state, no transform.
        self.clm_bias = nn.Parameter(torch.zeros(a.vocab))

    def forward(self, ids, masked_ids, masked):
        flat = lambda t: t.reshape(-1, t.shape[-1])
        table = self.tokens.weight
        g = flat(self.gen(self.tokens(masked_ids)))[masked]
        targets = ids.reshape(-1)[masked]
        logits = self.gen_head(g, table)
        mlm = F.cross_entropy(logits, targets)
        with torch.no_grad():
            samples = torch.multinomial(logits.float().softmax(-1), 1).squeeze(1)
        corrupted = ids.reshape(-1).clone()
        corrupted[masked] = samples
        labels = (corrupted == ids.reshape(-1)).float()
        h = flat(self.main(self.tokens(corrupted.view_as(ids))))
        copy_logit = self.copy(h).squeeze(1)
        bce = F.binary_cross_entropy_with_logits(copy_logit, labels)
        w = (1 - torch.sigmoid(copy_logit[masked])).detach()
        ce = F.cross_entropy(F.linear(h[masked], table, self.clm_bias), targets, reduction="none")
        return mlm + 50 * bce + (ce * w).sum() / masked.numel()


class BertMlm(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.tokens = nn.Embedding(a.vocab, a.hidden)
        self.enc = Stack(a.hidden, a.layers, a.heads, a.ffn, 0.1, a.seq, False)
        self.head = Head(a.hidden, a.vocab)

    def forward(self, ids, masked_ids, masked):
        h = self.enc(self.tokens(masked_ids))
        logits = self.head(h.reshape(-1, h.shape[-1]), self.tokens.weight)
        labels = torch.full_like(ids.reshape(-1), -100)
        labels[masked] = ids.reshape(-1)[masked]
        return F.cross_entropy(logits, labels, ignore_index=-100)


def init_bert(model):
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["coco-lm", "bert-mlm", "both"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--gen-layers", type=int, default=1)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=1024)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    workloads = ["coco-lm", "bert-mlm"] if a.workload == "both" else [a.workload]
    for name in workloads:
        torch.manual_seed(0)
        model = (CocoLm if name == "coco-lm" else BertMlm)(a)
        init_bert(model)
        model.train()
        decay = [p for n, p in model.named_parameters() if p.dim() > 1]
        rest = [p for n, p in model.named_parameters() if p.dim() <= 1]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
            lr=1e-4, betas=(0.9, 0.98), eps=1e-6,
        )
        times = []
        for step in range(a.warmup + a.steps):
            ids = torch.randint(5, a.vocab, (a.batch, a.seq))
            masked = torch.nonzero(torch.rand(a.batch * a.seq) < 0.15).squeeze(1)
            masked_ids = ids.reshape(-1).clone()
            masked_ids[masked] = 4
            masked_ids = masked_ids.view_as(ids)
            t0 = time.perf_counter()
            loss = model(ids, masked_ids, masked)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step >= a.warmup:
                times.append(time.perf_counter() - t0)
        ms = 1000 * sum(times) / len(times)
        print(json.dumps({
            "peer": "pytorch", "version": torch.__version__, "workload": name,
            "threads": a.threads, "parameters": sum(p.numel() for p in model.parameters()),
            "ms_per_step": ms, "min_ms_per_step": 1000 * min(times),
            "tokens_per_s": a.batch * a.seq / (ms / 1000), "steps": a.steps,
            "loss": loss.item(),
        }), flush=True)


if __name__ == "__main__":
    main()
