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

Setup: which BLAS the process really calls and how many threads it uses decide the step time (Debian's torch on the
reference BLAS took 28.7 s per bench step, on OpenBLAS 3.2 s), so the JSON's "setup" says: the library that sgemm_
resolves to in this process (looked up with dlsym/dladdr, the path checked against /proc/self/maps), its kind
(openblas, mkl, blis, reference, unknown), OpenBLAS' own config, kernel set (core) and thread count where it is
OpenBLAS, torch's intra-/inter-op threads, the thread environment variables, the CPU's vector flags, and
torch.__config__.show() / parallel_info(). The same summary goes to stderr. --setup-only prints the setup and times
nothing.
OpenBLAS 0.3.21 (Debian 12) does not know newer CPUs (e.g. Intel family 6 model 207) and falls back to its Prescott
(SSE3) kernels, 6-9 GFLOP/s against 50-85 with its AVX-512 ones on the same 2 cores. Unless OPENBLAS_CORETYPE is set
already, the peer then restarts itself with OPENBLAS_CORETYPE naming the best kernel set the CPU's flags allow, and
the setup records that ("openblas_coretype_set"), so the peer is as fast as this torch can be.

Run with Debian's python3-torch (PyTorch 1.13, OpenBLAS): /usr/bin/python3 tools/bench/peer_step.py --mode lora
(apt-get install -y python3-torch libopenblas0-pthread; without the OpenBLAS package torch finds the reference BLAS).
"""
import argparse, ctypes, json, math, os, statistics, sys, time

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


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def blas_provider(symbol="sgemm_"):
    """The file whose `symbol` this process calls: the global lookup first (LD_PRELOAD and the executable's libraries
    come first there), else the libblas.so.3 that torch's own libraries loaded. None when no loaded library has it."""
    libc = ctypes.CDLL(None)
    libc.dlsym.restype = ctypes.c_void_p
    libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    address = libc.dlsym(None, symbol.encode())   # RTLD_DEFAULT
    if not address:
        try:
            handle = ctypes.CDLL("libblas.so.3", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            address = libc.dlsym(ctypes.c_void_p(handle._handle), symbol.encode())
        except OSError:
            address = None
    if not address:
        return None
    info = _DlInfo()
    if not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def mapped_libraries(words=("blas", "lapack", "mkl", "blis", "atlas", "omp")):
    """Shared libraries mapped into this process whose file name mentions a BLAS or OpenMP runtime (/proc/self/maps)."""
    found = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/") and any(w in os.path.basename(parts[5]).lower() for w in words):
                    found.add(parts[5])
    except OSError:
        pass
    return sorted(found)


def blas_kind(provider, blas_info):
    """openblas | mkl | blis | atlas | reference (netlib, Debian's libblas3 under .../blas/) | unknown."""
    p = (provider or "").lower()
    for kind in ("openblas", "mkl", "blis", "atlas"):
        if kind in p:
            return kind
    if provider and os.path.basename(os.path.dirname(p)) == "blas" and os.path.basename(p).startswith("libblas.so"):
        return "reference"
    if provider is None and blas_info == "mkl":
        return "mkl"   # pip wheels link MKL statically: no sgemm_ exported, BLAS_INFO says so
    return "unknown"


# OpenBLAS kernel sets without AVX: what DYNAMIC_ARCH falls back to on a CPU it does not know.
SSE_ONLY_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine", "northwood",
                  "banias", "opteron", "barcelona", "athlon", "bobcat", "generic"}


def cpu_flags(wanted=("sse3", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16", "amx_tile")):
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return sorted(set(flags) & set(wanted))


def best_openblas_core(flags):
    """The OpenBLAS 0.3.21 kernel set for these CPU flags (the one its DYNAMIC_ARCH would pick if it knew the CPU)."""
    f = set(flags)
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= f:
        return "Cooperlake" if "avx512_bf16" in f else "SkylakeX"
    if {"avx2", "fma"} <= f:
        return "Haswell"
    return None


def setup():
    """The BLAS and thread setup of this process (call after torch ran a matmul, so lazy libraries are loaded)."""
    config = torch.__config__.show()
    blas_info = next((part.split("=", 1)[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")), None)
    provider = blas_provider()
    kind = blas_kind(provider, blas_info)
    blas = {"kind": kind, "sgemm_from": provider, "blas_info": blas_info, "mapped": mapped_libraries()}
    if kind == "openblas" and provider:
        try:
            lib = ctypes.CDLL(provider)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            blas["openblas_config"] = lib.openblas_get_config().decode()
            blas["openblas_core"] = lib.openblas_get_corename().decode()
            blas["openblas_threads"] = lib.openblas_get_num_threads()
        except (OSError, AttributeError):
            pass
    if os.environ.get("VLATUNE_PEER_CORETYPE_SET"):
        blas["openblas_coretype_set"] = os.environ["VLATUNE_PEER_CORETYPE_SET"]
    return {
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_NUM_THREADS",
                                               "LD_PRELOAD", "LD_LIBRARY_PATH")},
        "cpu_flags": cpu_flags(), "blas": blas, "config": config, "parallel_info": torch.__config__.parallel_info(),
    }


def describe(s):
    b = s["blas"]
    extra = f", {b['openblas_config']}, core {b['openblas_core']}, {b['openblas_threads']} OpenBLAS threads" if "openblas_config" in b else ""
    if "openblas_coretype_set" in b:
        extra += f"; {b['openblas_coretype_set']}"
    return (f"peer: torch {s['torch']}, {s['torch_threads']} intra-op / {s['torch_interop_threads']} inter-op threads; "
            f"BLAS {b['kind']} (sgemm_ from {b['sgemm_from']}{extra}; BLAS_INFO={b['blas_info']})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["lora", "full"], default="lora")
    for name, default in [("vocab", 1000), ("hidden", 512), ("layers", 8), ("heads", 8), ("kv-heads", 4), ("intermediate", 1408),
                          ("batch", 8), ("seq", 128), ("rank", 8), ("threads", 2), ("warmup", 2), ("repeats", 5), ("seed", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--setup-only", action="store_true", help="print the BLAS and thread setup as JSON and time nothing")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    probe = torch.randn(64, 64)
    (probe @ probe).sum().item()   # loads and initialises the BLAS before it is inspected
    s = setup()
    core = s["blas"].get("openblas_core", "")
    best = best_openblas_core(s["cpu_flags"])
    if core.lower() in SSE_ONLY_CORES and best and "OPENBLAS_CORETYPE" not in os.environ:
        # OpenBLAS picks its kernels when it loads: only a fresh process can take another set.
        why = (f"OPENBLAS_CORETYPE={best} set by the peer: OpenBLAS chose its {core} kernels (no AVX) on a CPU with "
               f"{' '.join(f for f in s['cpu_flags'] if f.startswith('avx'))}")
        print(f"peer: {why}; restarting", file=sys.stderr)
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "OPENBLAS_CORETYPE": best, "VLATUNE_PEER_CORETYPE_SET": why})
    print(describe(s), file=sys.stderr)
    if a.setup_only:
        print(json.dumps({"setup": s}))
        return
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
        "blas": s["blas"]["sgemm_from"], "setup": s,
        "step_ms": summary(steps), "steps_per_s": round(1000 / med, 4), "samples_per_s": round(a.batch * 1000 / med, 4),
        "profile_ms": {k: summary(v) for k, v in parts.items()},
        "trainable_params": sum(w.numel() for w in trainable), "final_loss": round(loss_value, 4),
    }))


if __name__ == "__main__":
    main()
