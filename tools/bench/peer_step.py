#!/usr/bin/env python3
"""The PyTorch peer of `vlatune bench`: one training step of the same language model, timed the same way.

Architecture (as src/VlaBias/Model/LanguageModel.cs): Llama decoder layers with pre-RMSNorm (computed in fp32),
rotary embeddings (rotate-half), grouped-query attention (K/V heads repeated to the query heads), SwiGLU MLP,
final RMSNorm, lm_head. Input: random inputs_embeds [B, T, C] (standing in for spliced image features and token
embeddings, as the C# side does), labels random tokens, cross-entropy over every position.
Step: forward + loss, backward, clip_grad_norm_(1.0), AdamW(lr 1e-4, betas .9/.999, eps 1e-8, wd 0.01), zero_grad.
--mode lora: base frozen, LoRA (r, alpha) on q/k/v/o/gate/up/down of every layer (A kaiming-uniform, B zeros);
--mode full: every weight but the (unused) embedding trainable.
Timing: --warmup steps discarded, then the median of --repeats steps (wall clock). Prints one JSON object.

Run with Debian's python3-torch (PyTorch 1.13, OpenBLAS): /usr/bin/python3 tools/bench/peer_step.py --mode lora
"""
import argparse, json, math, os, statistics, time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class LoraLinear(nn.Module):
    """PEFT's LoRA: base(x) + lora_B(lora_A(x)) * alpha / r, base frozen."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        bound = 1.0 / math.sqrt(base.in_features)
        nn.init.uniform_(self.lora_A.weight, -bound, bound)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * self.scaling


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, c, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, c // heads
        d = self.head_dim
        self.q_proj = nn.Linear(c, heads * d, bias=False)
        self.k_proj = nn.Linear(c, kv_heads * d, bias=False)
        self.v_proj = nn.Linear(c, kv_heads * d, bias=False)
        self.o_proj = nn.Linear(heads * d, c, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)      # (B, H, T, D)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)   # (B, kvH, T, D)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = self.heads // self.kv_heads
        if g > 1:  # Hugging Face's repeat_kv: expand + reshape
            k = k[:, :, None].expand(b, self.kv_heads, g, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
            v = v[:, :, None].expand(b, self.kv_heads, g, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        # PyTorch 1.13 has no scaled_dot_product_attention: the eager attention of transformers at the time
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim) + mask
        o = att.softmax(-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        self.gate_proj = nn.Linear(c, i, bias=False)
        self.up_proj = nn.Linear(c, i, bias=False)
        self.down_proj = nn.Linear(i, c, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm = RMSNorm(a.hidden)
        self.self_attn = Attention(a.hidden, a.heads, a.kv_heads)
        self.post_attention_layernorm = RMSNorm(a.hidden)
        self.mlp = Mlp(a.hidden, a.intermediate)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class CausalLm(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab, a.hidden)
        self.layers = nn.ModuleList([Layer(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.hidden)
        self.lm_head = nn.Linear(a.hidden, a.vocab, bias=False)
        d = a.hidden // a.heads
        self.inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float64) / d)).float()

    def forward(self, embeds):
        b, t, _ = embeds.shape
        pos = torch.arange(t, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), -1)[None, None]                               # (1, 1, T, D)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)                              # causal
        x = embeds
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["lora", "full"], default="lora")
    for name, default in [("vocab", 1000), ("hidden", 512), ("layers", 8), ("heads", 8), ("kv-heads", 4), ("intermediate", 1408),
                          ("batch", 8), ("seq", 128), ("rank", 8), ("threads", 2), ("warmup", 2), ("repeats", 5), ("seed", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--alpha", type=float, default=16.0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = CausalLm(a)
    with torch.no_grad():
        for name, w in model.named_parameters():
            if not name.endswith("norm.weight"):
                w.normal_(0, 0.02)
    model.train()
    if a.mode == "lora":
        for w in model.parameters():
            w.requires_grad_(False)
        for layer in model.layers:
            for parent, names in ((layer.self_attn, ["q_proj", "k_proj", "v_proj", "o_proj"]), (layer.mlp, ["gate_proj", "up_proj", "down_proj"])):
                for n in names:
                    setattr(parent, n, LoraLinear(getattr(parent, n), a.rank, a.alpha))
    else:
        model.embed_tokens.weight.requires_grad_(False)   # inputs_embeds: the table gets no gradient
    trainable = [w for w in model.parameters() if w.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    g = torch.Generator().manual_seed(a.seed + 1)
    embeds = torch.randn(a.batch, a.seq, a.hidden, generator=g) * 0.02
    labels = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)

    parts = {"forward_and_loss": [], "backward": [], "clip_adamw_zero_grad": []}
    steps = []
    loss_value = float("nan")
    for i in range(a.warmup + a.repeats):
        t0 = time.perf_counter()
        logits = model(embeds)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab).float(), labels.reshape(-1))
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        opt.zero_grad()
        t3 = time.perf_counter()
        loss_value = loss.item()
        if i >= a.warmup:
            steps.append((t3 - t0) * 1e3)
            parts["forward_and_loss"].append((t1 - t0) * 1e3)
            parts["backward"].append((t2 - t1) * 1e3)
            parts["clip_adamw_zero_grad"].append((t3 - t2) * 1e3)

    def summary(xs):
        m = statistics.median(xs)
        return {"median": round(m, 4), "min": round(min(xs), 4), "max": round(max(xs), 4),
                "noise": round((max(xs) - min(xs)) / m, 4) if m > 0 else 0, "samples": [round(x, 4) for x in xs]}

    med = statistics.median(steps)
    print(json.dumps({
        "mode": a.mode, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "blas": os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3"),
        "step_ms": summary(steps), "steps_per_s": round(1000 / med, 4), "samples_per_s": round(a.batch * 1000 / med, 4),
        "profile_ms": {k: summary(v) for k, v in parts.items()},
        "trainable_params": sum(w.numel() for w in trainable), "final_loss": round(loss_value, 4),
    }))


if __name__ == "__main__":
    main()
