#!/usr/bin/python3
"""Independent reference forward pass of LlavaForConditionalGeneration, and golden fixtures.

Written from the published architectures (Hugging Face transformers' LLaVA, CLIP, SigLIP, Llama and
Qwen2 model files), module by module, as plain functions over a dict of tensors whose names are the
Hugging Face names. It needs only PyTorch (1.13 is enough) and numpy; it has its own safetensors
reader and writer.

    /usr/bin/python3 tools/reference/llava_reference.py --out tests/VlaBias.Tests/Fixtures/golden

Conventions that the C# model must match are listed in tools/reference/README.md.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# safetensors (own implementation; the `safetensors` package is not installed here)
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {  # safetensors name -> (torch dtype, element size)
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
}
_TORCH_TO_ST = {v[0]: k for k, v in _ST_DTYPES.items()}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    np_dtype = {torch.float32: "<f4", torch.float16: "<f2", torch.int64: "<i8", torch.int32: "<i4"}[t.dtype]
    return t.numpy().astype(np_dtype).tobytes()


def save_safetensors(path, tensors, metadata=None):
    """Write {name: tensor} as safetensors; header padded with spaces to a multiple of 8."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    """Read a safetensors file into {name: tensor} (with the format checks a reader must make)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > 100_000_000 or 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} is not sane")

    def no_dupes(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"{path}: duplicate names in header")
        return dict(pairs)

    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=no_dupes)
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        dtype, size = _ST_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"])) if info["shape"] else 1
        if end - begin != count * size or not (0 <= begin <= end <= len(data)):
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin},{end}")
        spans.append((begin, end))
        buf = bytearray(data[begin:end])
        if dtype == torch.bfloat16:
            t = torch.frombuffer(buf, dtype=torch.int16).view(torch.bfloat16) if count else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(buf, dtype=dtype) if count else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    pos = 0
    for begin, end in sorted(spans):
        if begin != pos:
            raise ValueError(f"{path}: data not contiguous at byte {pos}")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: file length is not exact ({len(data) - pos} trailing bytes)")
    return out


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------

def act_fn(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":  # exact (erf) GELU
        return lambda x: F.gelu(x)
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):  # tanh approximation
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "silu":
        return F.silu
    raise ValueError(f"unknown activation {name}")


def linear(w, prefix, x):
    """y = x W^T + b, b only if the checkpoint has `<prefix>.bias`."""
    return F.linear(x, w[prefix + ".weight"], w.get(prefix + ".bias"))


def layer_norm(w, prefix, x, eps):
    weight, bias = w[prefix + ".weight"], w[prefix + ".bias"]
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def rms_norm(w, prefix, x, eps):
    """Llama/Qwen2 RMSNorm: normalise in float32, cast back to the input dtype, THEN multiply by weight."""
    in_dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w[prefix + ".weight"] * h.to(in_dtype)


def attention_core(q, k, v, scale, additive_mask=None):
    """q [B,H,Tq,D], k/v [B,H,Tk,D]; softmax in float32, cast back to the compute dtype."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if additive_mask is not None:
        scores = scores + additive_mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return torch.matmul(probs, v)


def split_heads(x, n_heads):
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)  # [B,H,T,D]


def merge_heads(x):
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


# --------------------------------------------------------------------------------------------
# vision towers (CLIP ViT, SigLIP ViT)
# --------------------------------------------------------------------------------------------

def vit_encoder_layer(w, p, x, vc):
    """Pre-LN transformer block shared by CLIP and SigLIP encoders."""
    eps = vc["layer_norm_eps"]
    heads = vc["num_attention_heads"]
    head_dim = vc["hidden_size"] // heads
    h = layer_norm(w, p + ".layer_norm1", x, eps)
    q = split_heads(linear(w, p + ".self_attn.q_proj", h), heads)
    k = split_heads(linear(w, p + ".self_attn.k_proj", h), heads)
    v = split_heads(linear(w, p + ".self_attn.v_proj", h), heads)
    a = merge_heads(attention_core(q, k, v, head_dim ** -0.5))  # no mask: every patch sees every patch
    x = x + linear(w, p + ".self_attn.out_proj", a)
    h = layer_norm(w, p + ".layer_norm2", x, eps)
    h = linear(w, p + ".mlp.fc2", act_fn(vc["hidden_act"])(linear(w, p + ".mlp.fc1", h)))
    return x + h


def vision_tower(w, vc, pixel_values):
    """Returns hidden_states: [embedding output, layer 1 output, ..., layer N output].

    CLIP: hidden_states[0] is AFTER pre_layrnorm. SigLIP: no class token, no pre-norm.
    post_layernorm (both) and SigLIP's pooling head are NOT part of any hidden_states entry.
    """
    p = "vision_tower.vision_model"
    kind = vc["model_type"]
    dtype = w[p + ".embeddings.patch_embedding.weight"].dtype
    x = pixel_values.to(dtype)
    patches = F.conv2d(x, w[p + ".embeddings.patch_embedding.weight"],
                       w.get(p + ".embeddings.patch_embedding.bias"), stride=vc["patch_size"])
    patches = patches.flatten(2).transpose(1, 2)  # [B, (H/p)*(W/p) row-major, C]
    if kind == "clip_vision_model":
        cls = w[p + ".embeddings.class_embedding"].view(1, 1, -1).expand(patches.shape[0], 1, -1)
        x = torch.cat([cls, patches], dim=1)
        x = x + w[p + ".embeddings.position_embedding.weight"].unsqueeze(0)
        x = layer_norm(w, p + ".pre_layrnorm", x, vc["layer_norm_eps"])
    elif kind == "siglip_vision_model":
        x = patches + w[p + ".embeddings.position_embedding.weight"].unsqueeze(0)
    else:
        raise ValueError(kind)
    hidden_states = [x]
    for i in range(vc["num_hidden_layers"]):
        x = vit_encoder_layer(w, f"{p}.encoder.layers.{i}", x, vc)
        hidden_states.append(x)
    return hidden_states


def image_features(w, cfg, pixel_values):
    vc = cfg["vision_config"]
    hs = vision_tower(w, vc, pixel_values)
    selected = hs[cfg["vision_feature_layer"]]
    feats = selected[:, 1:] if cfg["vision_feature_select_strategy"] == "default" else selected
    h = linear(w, "multi_modal_projector.linear_1", feats)
    h = act_fn(cfg["projector_hidden_act"])(h)
    h = linear(w, "multi_modal_projector.linear_2", h)
    return h, hs, selected


# --------------------------------------------------------------------------------------------
# language model (Llama; Qwen2 = Llama + q/k/v biases)
# --------------------------------------------------------------------------------------------

def rope_cos_sin(position_ids, head_dim, theta, dtype):
    """cos/sin [B,T,head_dim], computed in float32 then cast to the compute dtype."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = position_ids.float()[:, :, None] * inv_freq[None, None, :]  # [B,T,head_dim/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def repeat_kv(x, n_rep):
    """[B,KV,T,D] -> [B,KV*n_rep,T,D]; kv head g serves query heads g*n_rep .. g*n_rep+n_rep-1."""
    return x.repeat_interleave(n_rep, dim=1)


def apply_rope(x, cos, sin):  # x [B,H,T,D], cos/sin [B,T,D]
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


def build_lm_mask(attention_mask, dtype):
    """Additive mask [B,1,T,T]: 0 where query i may see key j (j <= i and key not padding), else finfo.min."""
    b, t = attention_mask.shape
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    allowed = causal[None, :, :] & attention_mask.bool()[:, None, :]
    mask = torch.zeros(b, 1, t, t, dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def lm_decoder_layer(w, p, x, tc, cos, sin, mask):
    heads, kv_heads = tc["num_attention_heads"], tc["num_key_value_heads"]
    head_dim = tc.get("head_dim") or tc["hidden_size"] // heads
    eps = tc["rms_norm_eps"]
    h = rms_norm(w, p + ".input_layernorm", x, eps)
    q = split_heads(linear(w, p + ".self_attn.q_proj", h), heads)
    k = split_heads(linear(w, p + ".self_attn.k_proj", h), kv_heads)
    v = split_heads(linear(w, p + ".self_attn.v_proj", h), kv_heads)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    n_rep = heads // kv_heads  # grouped-query attention
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    a = merge_heads(attention_core(q, k, v, head_dim ** -0.5, mask))
    x = x + linear(w, p + ".self_attn.o_proj", a)
    h = rms_norm(w, p + ".post_attention_layernorm", x, eps)
    act = act_fn(tc["hidden_act"])
    h = linear(w, p + ".mlp.down_proj",
               act(linear(w, p + ".mlp.gate_proj", h)) * linear(w, p + ".mlp.up_proj", h))
    return x + h


def language_model(w, tc, inputs_embeds, attention_mask, position_ids):
    p = "language_model.model"
    head_dim = tc.get("head_dim") or tc["hidden_size"] // tc["num_attention_heads"]
    dtype = inputs_embeds.dtype
    cos, sin = rope_cos_sin(position_ids, head_dim, tc["rope_theta"], dtype)
    mask = build_lm_mask(attention_mask, dtype)
    x = inputs_embeds
    for i in range(tc["num_hidden_layers"]):
        x = lm_decoder_layer(w, f"{p}.layers.{i}", x, tc, cos, sin, mask)
    x = rms_norm(w, p + ".norm", x, tc["rms_norm_eps"])
    head = w.get("language_model.lm_head.weight")
    if head is None:
        if not tc.get("tie_word_embeddings", False):
            raise KeyError("language_model.lm_head.weight missing and embeddings not tied")
        head = w[p + ".embed_tokens.weight"]
    return F.linear(x, head), x


def llava_forward(w, cfg, input_ids, pixel_values, attention_mask, position_ids):
    """Returns a dict of outputs: logits plus intermediate tensors for debugging."""
    tc = cfg["text_config"]
    embeds = F.embedding(input_ids, w["language_model.model.embed_tokens.weight"])
    feats, vision_hs, selected = image_features(w, cfg, pixel_values)
    image_mask = input_ids == cfg["image_token_index"]
    if int(image_mask.sum()) != feats.shape[0] * feats.shape[1]:
        raise ValueError("image tokens and image features do not match")
    # masked_scatter: the k-th image-token position (row-major over batch, then sequence)
    # receives the k-th feature vector of image_features.reshape(-1, hidden)
    embeds = embeds.clone()
    embeds[image_mask] = feats.reshape(-1, feats.shape[-1]).to(embeds.dtype)
    logits, last_hidden = language_model(w, tc, embeds, attention_mask, position_ids)
    return {
        "logits": logits,
        "image_features": feats,
        "vision_selected_hidden_state": selected,
        "inputs_embeds": embeds,
        "last_hidden_state": last_hidden,
        **{f"vision_hidden_states.{i}": h for i, h in enumerate(vision_hs)},
    }


def generate_position_ids(attention_mask):
    """As HF generate(): cumsum(mask) - 1, and padding positions filled with 1."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


# --------------------------------------------------------------------------------------------
# random weights with HF names
# --------------------------------------------------------------------------------------------

def weight_shapes(cfg):
    """{name: (shape, kind)}; kind picks the random distribution."""
    vc, tc = cfg["vision_config"], cfg["text_config"]
    s = {}
    d, inter, pt, ch = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"], vc["num_channels"]
    n_patches = (vc["image_size"] // pt) ** 2
    v = "vision_tower.vision_model"
    clip = vc["model_type"] == "clip_vision_model"
    s[f"{v}.embeddings.patch_embedding.weight"] = ((d, ch, pt, pt), "linear")
    if clip:
        s[f"{v}.embeddings.class_embedding"] = ((d,), "embed")
        s[f"{v}.embeddings.position_embedding.weight"] = ((n_patches + 1, d), "embed")
        s[f"{v}.pre_layrnorm.weight"] = ((d,), "norm")
        s[f"{v}.pre_layrnorm.bias"] = ((d,), "bias")
    else:
        s[f"{v}.embeddings.patch_embedding.bias"] = ((d,), "bias")
        s[f"{v}.embeddings.position_embedding.weight"] = ((n_patches, d), "embed")
    for i in range(vc["num_hidden_layers"]):
        p = f"{v}.encoder.layers.{i}"
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[f"{p}.self_attn.{n}.weight"] = ((d, d), "linear")
            s[f"{p}.self_attn.{n}.bias"] = ((d,), "bias")
        for n in ("layer_norm1", "layer_norm2"):
            s[f"{p}.{n}.weight"] = ((d,), "norm")
            s[f"{p}.{n}.bias"] = ((d,), "bias")
        s[f"{p}.mlp.fc1.weight"] = ((inter, d), "linear")
        s[f"{p}.mlp.fc1.bias"] = ((inter,), "bias")
        s[f"{p}.mlp.fc2.weight"] = ((d, inter), "linear")
        s[f"{p}.mlp.fc2.bias"] = ((d,), "bias")
    s[f"{v}.post_layernorm.weight"] = ((d,), "norm")  # in real checkpoints, unused by LLaVA
    s[f"{v}.post_layernorm.bias"] = ((d,), "bias")
    # (SigLIP with vision_use_head=false, as llava-interleave: no `head.*` tensors)

    h = tc["hidden_size"]
    s["multi_modal_projector.linear_1.weight"] = ((h, d), "linear")
    s["multi_modal_projector.linear_1.bias"] = ((h,), "bias")
    s["multi_modal_projector.linear_2.weight"] = ((h, h), "linear")
    s["multi_modal_projector.linear_2.bias"] = ((h,), "bias")

    heads, kvh = tc["num_attention_heads"], tc["num_key_value_heads"]
    hd = tc.get("head_dim") or h // heads
    qkv_bias = tc["model_type"] == "qwen2"
    m = "language_model.model"
    s[f"{m}.embed_tokens.weight"] = ((tc["vocab_size"], h), "embed")
    for i in range(tc["num_hidden_layers"]):
        p = f"{m}.layers.{i}"
        s[f"{p}.self_attn.q_proj.weight"] = ((heads * hd, h), "linear")
        s[f"{p}.self_attn.k_proj.weight"] = ((kvh * hd, h), "linear")
        s[f"{p}.self_attn.v_proj.weight"] = ((kvh * hd, h), "linear")
        if qkv_bias:
            s[f"{p}.self_attn.q_proj.bias"] = ((heads * hd,), "bias")
            s[f"{p}.self_attn.k_proj.bias"] = ((kvh * hd,), "bias")
            s[f"{p}.self_attn.v_proj.bias"] = ((kvh * hd,), "bias")
        s[f"{p}.self_attn.o_proj.weight"] = ((h, heads * hd), "linear")
        s[f"{p}.mlp.gate_proj.weight"] = ((tc["intermediate_size"], h), "linear")
        s[f"{p}.mlp.up_proj.weight"] = ((tc["intermediate_size"], h), "linear")
        s[f"{p}.mlp.down_proj.weight"] = ((h, tc["intermediate_size"]), "linear")
        s[f"{p}.input_layernorm.weight"] = ((h,), "norm")
        s[f"{p}.post_attention_layernorm.weight"] = ((h,), "norm")
    s[f"{m}.norm.weight"] = ((h,), "norm")
    if not tc.get("tie_word_embeddings", False):
        s["language_model.lm_head.weight"] = ((tc["vocab_size"], h), "linear")
    return s


def random_weights(cfg, gen):
    """Scales chosen so every part matters: linears N(0, 1/fan_in) (unit-variance outputs, so attention
    is far from uniform and rotary phases change scores), norm weights 1 + 0.1 N, biases 0.1 N,
    embeddings 0.5 N."""
    w = {}
    for name, (shape, kind) in weight_shapes(cfg).items():
        r = torch.randn(*shape, generator=gen)
        if kind == "linear":
            fan_in = int(np.prod(shape[1:]))
            w[name] = r / math.sqrt(fan_in)
        elif kind == "norm":
            w[name] = 1.0 + 0.1 * r
        elif kind == "bias":
            w[name] = 0.1 * r
        else:
            w[name] = 0.5 * r
    return w


# --------------------------------------------------------------------------------------------
# configurations and inputs of the fixtures
# --------------------------------------------------------------------------------------------

def clip_llama_config():
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": 99,
        "image_seq_length": 16,
        "pad_token_id": 0,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "num_channels": 3,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "projection_dim": 16,
        },
        "text_config": {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 100,
            "max_position_embeddings": 128,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    }


def siglip_qwen2_config():
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": 99,
        "image_seq_length": 16,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "vision_use_head": False,
        },
        "text_config": {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 100,
            "max_position_embeddings": 128,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "hidden_act": "silu",
            "use_sliding_window": False,
            "sliding_window": 128,
            "max_window_layers": 2,
            "tie_word_embeddings": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
    }


def make_inputs(cfg, gen):
    """Two rows of equal length T = 27. Row 0 unpadded, row 1 LEFT-padded by 3 (pad id 0).
    row 0: [1, 10, 11, 12, 13] + 16 x <image> + [20, 21, 22, 23, 24, 25]       positions 5..20 are image
    row 1: [0, 0, 0] + [1, 30, 31, 32] + 16 x <image> + [40, 41, 42, 43]     positions 7..22 are image
    """
    img = cfg["image_token_index"]
    vc = cfg["vision_config"]
    n = (vc["image_size"] // vc["patch_size"]) ** 2
    row0 = [1, 10, 11, 12, 13] + [img] * n + [20, 21, 22, 23, 24, 25]
    row1 = [0, 0, 0] + [1, 30, 31, 32] + [img] * n + [40, 41, 42, 43]
    assert len(row0) == len(row1)
    input_ids = torch.tensor([row0, row1], dtype=torch.int64)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = 0
    pixel_values = torch.randn(2, vc["num_channels"], vc["image_size"], vc["image_size"], generator=gen)
    return {
        "pixel_values": pixel_values,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": generate_position_ids(attention_mask),
    }


# --------------------------------------------------------------------------------------------
# self-checks: the reference against independent formulations
# --------------------------------------------------------------------------------------------

def check(name, ok, detail=""):
    print(f"  self-check {'ok  ' if ok else 'FAIL'} {name} {detail}")
    if not ok:
        raise SystemExit(f"self-check failed: {name}")


def self_checks(w, cfg, inputs, out, tmpdir):
    tc, vc = cfg["text_config"], cfg["vision_config"]
    torch.manual_seed(0)

    # 1. vision attention against torch.nn.MultiheadAttention (PyTorch's own implementation)
    d, heads = vc["hidden_size"], vc["num_attention_heads"]
    p = "vision_tower.vision_model.encoder.layers.0.self_attn"
    mha = torch.nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([w[f"{p}.{n}_proj.weight"] for n in "qkv"]))
        mha.in_proj_bias.copy_(torch.cat([w[f"{p}.{n}_proj.bias"] for n in "qkv"]))
        mha.out_proj.weight.copy_(w[f"{p}.out_proj.weight"])
        mha.out_proj.bias.copy_(w[f"{p}.out_proj.bias"])
    x = torch.randn(2, 7, d)
    ref, _ = mha(x, x, x, need_weights=False)
    q = split_heads(linear(w, f"{p}.q_proj", x), heads)
    k = split_heads(linear(w, f"{p}.k_proj", x), heads)
    v = split_heads(linear(w, f"{p}.v_proj", x), heads)
    mine = linear(w, f"{p}.out_proj", merge_heads(attention_core(q, k, v, (d // heads) ** -0.5)))
    err = (mine - ref).abs().max().item()
    check("vision attention == nn.MultiheadAttention", err < 1e-5, f"max|diff|={err:.2e}")

    # 2. LayerNorm / RMSNorm against explicit formulas in float64
    x = torch.randn(3, 5, d, dtype=torch.float64)
    wt, bs = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    ref = (x - mu) / torch.sqrt(var + 1e-5) * wt + bs
    err = (layer_norm({"n.weight": wt, "n.bias": bs}, "n", x, 1e-5) - ref).abs().max().item()
    check("layer_norm formula", err < 1e-10, f"max|diff|={err:.2e}")
    xr = torch.randn(3, 5, 64)
    wr = torch.randn(64)
    ref = (xr.double() / torch.sqrt((xr.double() ** 2).mean(-1, keepdim=True) + 1e-5)) * wr.double()
    err = (rms_norm({"n.weight": wr}, "n", xr, 1e-5).double() - ref).abs().max().item()
    check("rms_norm formula", err < 1e-5, f"max|diff|={err:.2e}")

    # 3. rotary (rotate_half form) against a complex-number rotation of pairs (i, i + D/2)
    hd = tc["hidden_size"] // tc["num_attention_heads"]
    pos = inputs["position_ids"]
    cos, sin = rope_cos_sin(pos, hd, tc["rope_theta"], torch.float64)
    xq = torch.randn(2, 3, pos.shape[1], hd, dtype=torch.float64)
    mine = apply_rope(xq, cos, sin)
    half = hd // 2
    zc = torch.complex(xq[..., :half], xq[..., half:])
    ang = pos.double()[:, None, :, None] * (1.0 / tc["rope_theta"] ** (torch.arange(half, dtype=torch.float64) * 2 / hd))
    zr = zc * torch.exp(1j * ang)
    ref = torch.cat([zr.real, zr.imag], dim=-1)
    err = (mine - ref).abs().max().item()
    check("rope == complex rotation of (i, i+D/2) pairs", err < 1e-5, f"max|diff|={err:.2e}")

    # 4. LM attention (GQA + causal + padding + rope) against a naive per-query loop
    p = "language_model.model.layers.0.self_attn"
    heads, kvh = tc["num_attention_heads"], tc["num_key_value_heads"]
    am = inputs["attention_mask"]
    bsz, t = am.shape
    xh = torch.randn(bsz, t, tc["hidden_size"])
    cos, sin = rope_cos_sin(pos, hd, tc["rope_theta"], torch.float32)
    q = apply_rope(split_heads(linear(w, f"{p}.q_proj", xh), heads), cos, sin)
    k = apply_rope(split_heads(linear(w, f"{p}.k_proj", xh), kvh), cos, sin)
    v = split_heads(linear(w, f"{p}.v_proj", xh), kvh)
    mine = attention_core(q, repeat_kv(k, heads // kvh), repeat_kv(v, heads // kvh),
                          hd ** -0.5, build_lm_mask(am, torch.float32))
    worst = 0.0
    for b in range(bsz):
        for hh in range(heads):
            g = hh // (heads // kvh)
            for i in range(t):
                if am[b, i] == 0:
                    continue  # padded queries see nothing; their outputs are not meaningful
                keys = [j for j in range(i + 1) if am[b, j] == 1]
                sc = torch.stack([(q[b, hh, i] * k[b, g, j]).sum() / math.sqrt(hd) for j in keys])
                pr = torch.softmax(sc, 0)
                o = sum(pr[n] * v[b, g, j] for n, j in enumerate(keys))
                worst = max(worst, (o - mine[b, hh, i]).abs().max().item())
    check("LM GQA attention == naive loop", worst < 1e-5, f"max|diff|={worst:.2e}")

    # 5. left padding: row 1 alone, unpadded (positions 0..), must give the same logits at real tokens
    real = am[1] == 1
    solo = llava_forward(w, cfg, inputs["input_ids"][1:2, real], inputs["pixel_values"][1:2],
                         torch.ones(1, int(real.sum()), dtype=torch.int64),
                         torch.arange(int(real.sum()))[None])
    err = (solo["logits"][0] - out["logits"][1, real]).abs().max().item()
    check("left-padded row == same row unpadded", err < 1e-4, f"max|diff|={err:.2e}")

    # 6. batch independence: row 0 alone gives row 0's logits
    solo = llava_forward(w, cfg, inputs["input_ids"][:1], inputs["pixel_values"][:1],
                         inputs["attention_mask"][:1], inputs["position_ids"][:1])
    err = (solo["logits"][0] - out["logits"][0]).abs().max().item()
    check("row 0 alone == row 0 in batch", err < 1e-4, f"max|diff|={err:.2e}")

    # 7. splice order: image features appear at image-token positions in order
    img_pos = (inputs["input_ids"] == cfg["image_token_index"])
    err = (out["inputs_embeds"][img_pos] - out["image_features"].reshape(-1, tc["hidden_size"])).abs().max().item()
    check("image features spliced in order", err == 0.0)

    # 8. safetensors round trip (bf16 included)
    probe = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2, 2).bfloat16(), "d": torch.zeros(0)}
    path = os.path.join(tmpdir, "roundtrip.safetensors.check")
    save_safetensors(path, probe, {"format": "pt"})
    back = load_safetensors(path)
    os.remove(path)
    same = all(torch.equal(probe[k], back[k]) and probe[k].dtype == back[k].dtype for k in probe)
    check("safetensors round trip", same)


def discrimination(w, cfg, inputs, out):
    """The fixture must tell common mistakes apart: each wrong variant must move valid logits visibly."""
    global rotate_half, repeat_kv
    valid = inputs["attention_mask"].bool()

    def run(c=cfg, am=None, pos=None):
        r = llava_forward(w, c, inputs["input_ids"], inputs["pixel_values"],
                          inputs["attention_mask"] if am is None else am,
                          inputs["position_ids"] if pos is None else pos)
        return (r["logits"] - out["logits"])[valid].abs().max().item()

    def with_cfg(path, value):
        c = json.loads(json.dumps(cfg))
        node = c
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return c

    results = {}
    t = inputs["input_ids"].shape[1]
    # Not a mistake that logits can show: rotary scores depend only on position DIFFERENCES, so shifting a
    # whole row (0..T-1 instead of cumsum-1) changes valid logits only by rounding. Printed, not checked.
    shift = run(pos=torch.arange(t)[None].expand(2, t))
    print(f"  info: position_ids 0..T-1 instead of cumsum-1 moves valid logits by {shift:.2e} (RoPE is relative)")
    results["padding keys not masked"] = run(am=torch.ones_like(inputs["attention_mask"]))
    layer = cfg["vision_feature_layer"]
    results[f"vision_feature_layer {layer - 1} instead of {layer}"] = run(with_cfg(["vision_feature_layer"], layer - 1))
    other = "gelu" if cfg["vision_config"]["hidden_act"] != "gelu" else "quick_gelu"
    results[f"vision act {other}"] = run(with_cfg(["vision_config", "hidden_act"], other))
    results["projector act gelu tanh approx"] = run(with_cfg(["projector_hidden_act"], "gelu_pytorch_tanh"))
    results["rope_theta 1e6"] = run(with_cfg(["text_config", "rope_theta"], 1e6))
    good_rot, good_rep = rotate_half, repeat_kv
    try:
        rotate_half = lambda x: torch.stack([-x[..., 1::2], x[..., ::2]], -1).flatten(-2)  # GPT-J pairs
        results["rope on interleaved pairs (2i, 2i+1)"] = run()
    finally:
        rotate_half = good_rot
    try:
        repeat_kv = lambda x, n: x.repeat(1, n, 1, 1)  # tiled instead of interleaved kv heads
        results["GQA kv heads tiled (repeat) not interleaved"] = run()
    finally:
        repeat_kv = good_rep
    for k, v in results.items():
        check(f"detects: {k}", v > 1e-3, f"max|diff| valid logits={v:.3f}")


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------

def write_fixture(folder, cfg, seed, bf16):
    os.makedirs(folder, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    w = random_weights(cfg, gen)
    inputs = make_inputs(cfg, gen)
    print(f"{folder}:")
    with torch.no_grad():
        out = llava_forward(w, cfg, inputs["input_ids"], inputs["pixel_values"],
                            inputs["attention_mask"], inputs["position_ids"])
        self_checks(w, cfg, inputs, out, folder)
        discrimination(w, cfg, inputs, out)

    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    save_safetensors(os.path.join(folder, "model.safetensors"), w, {"format": "pt"})
    save_safetensors(os.path.join(folder, "inputs.safetensors"), inputs,
                     {"position_ids": "cumsum(attention_mask)-1, padding positions set to 1 (HF generate)",
                      "padding_side": "left", "pad_token_id": "0"})
    note = ("logits at padding positions (attention_mask==0) are not meaningful: compare only where "
            "attention_mask==1. vision_hidden_states.0 is the embedding output (after pre_layrnorm for CLIP); "
            "vision_hidden_states.i the output of encoder layer i; vision_selected_hidden_state is "
            "vision_hidden_states[vision_feature_layer] before CLS removal.")
    save_safetensors(os.path.join(folder, "expected.safetensors"), out, {"note": note, "dtype": "float32"})

    # reload what was written and recompute: the files alone reproduce the expected logits
    w2 = load_safetensors(os.path.join(folder, "model.safetensors"))
    i2 = load_safetensors(os.path.join(folder, "inputs.safetensors"))
    with torch.no_grad():
        re = llava_forward(w2, cfg, i2["input_ids"], i2["pixel_values"], i2["attention_mask"], i2["position_ids"])
    check("files reproduce expected logits", torch.equal(re["logits"], out["logits"]))

    if bf16:
        wb = {k: v.to(torch.bfloat16) for k, v in w.items()}
        with torch.no_grad():
            ob = llava_forward(wb, cfg, inputs["input_ids"], inputs["pixel_values"],
                               inputs["attention_mask"], inputs["position_ids"])
        valid = inputs["attention_mask"].bool()
        diff = (ob["logits"].float() - out["logits"])[valid].abs()
        scale = out["logits"][valid].abs().max().item()
        print(f"  bf16 vs f32 logits (valid positions): max|diff|={diff.max().item():.4f} "
              f"mean|diff|={diff.mean().item():.4f} (max|logit|={scale:.2f})")
        exp_bf16 = {
            "logits": ob["logits"],  # BF16, as computed
            "image_features": ob["image_features"],
            "last_hidden_state": ob["last_hidden_state"],
        }
        save_safetensors(os.path.join(folder, "expected_bf16.safetensors"), exp_bf16,
                         {"note": "weights cast F32->BF16 (round to nearest even), pixel_values cast to BF16, "
                                  "all compute in BF16 except: RMSNorm statistics, softmax, rope cos/sin in F32. "
                                  "Compare with a bf16 tolerance; padding positions not meaningful.",
                          "max_abs_diff_vs_f32": f"{diff.max().item():.6f}",
                          "mean_abs_diff_vs_f32": f"{diff.mean().item():.6f}"})
    for fn in sorted(os.listdir(folder)):
        print(f"  {fn}: {os.path.getsize(os.path.join(folder, fn))} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/VlaBias.Tests/Fixtures/golden")
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic reductions
    write_fixture(os.path.join(args.out, "clip-llama-gqa"), clip_llama_config(), seed=1234, bf16=True)
    write_fixture(os.path.join(args.out, "siglip-qwen2"), siglip_qwen2_config(), seed=5678, bf16=False)
    print("done")


if __name__ == "__main__":
    sys.exit(main())
