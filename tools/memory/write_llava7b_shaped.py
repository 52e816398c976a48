#!/usr/bin/python3
"""Writes a randomly initialised checkpoint with the exact shapes of llava-hf/llava-1.5-7b-hf
(CLIP ViT-L/14-336 + Vicuna-7B, 7.06 B parameters) in BF16 safetensors shards plus its config.json,
tokenizer files and preprocessor_config.json are left to the caller. Used only to measure the peak
memory of `LlavaModel.FromPretrained` (docs/real-checkpoints.md); the weights are meaningless.

usage: /usr/bin/python3 tools/memory/write_llava7b_shaped.py OUT_DIR [--shard-gb 5]
Needs PyTorch (Debian's python3-torch 1.13 is enough). Writes ~14 GB; one shard is in memory at a time.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
import torch  # noqa: E402
from llava_reference import save_safetensors, weight_shapes  # noqa: E402

CONFIG = {
    "architectures": ["LlavaForConditionalGeneration"],
    "model_type": "llava",
    "ignore_index": -100,
    "image_token_index": 32000,
    "pad_token_id": 32001,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vision_config": {
        "model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
        "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
        "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 768,
    },
    "text_config": {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
        "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "pad_token_id": 32001, "bos_token_id": 1, "eos_token_id": 2,
    },
}


def main():
    out = sys.argv[1]
    shard_bytes = int(float(sys.argv[sys.argv.index("--shard-gb") + 1]) * 1e9) if "--shard-gb" in sys.argv else 5_000_000_000
    os.makedirs(out, exist_ok=True)
    shapes = weight_shapes(CONFIG)
    shards, current, size = [], [], 0
    for name, (shape, _) in shapes.items():
        n = 2 * int(torch.Size(shape).numel())
        if current and size + n > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(name)
        size += n
    shards.append(current)
    gen = torch.Generator().manual_seed(0)
    weight_map, total = {}, 0
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in names:
            shape = shapes[name][0]
            tensors[name] = (torch.rand(*shape, generator=gen) * 0.04 - 0.02).to(torch.bfloat16)
            weight_map[name] = fname
            total += tensors[name].numel() * 2
        save_safetensors(os.path.join(out, fname), tensors, {"format": "pt"})
        del tensors
        print(f"wrote {fname}", flush=True)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    print(f"{total / 1e9:.2f} GB in {len(shards)} shards, {total // 2 / 1e9:.3f} B parameters")


if __name__ == "__main__":
    main()
