#!/usr/bin/python3
"""PyTorch .bin fixtures (torch.save pickles), made with Debian's python3-torch 1.13.

Writes tests/VlaBias.Tests/Fixtures/pytorch_bin/:
  clip-llama-gqa/            pytorch_model.bin: the golden clip-llama-gqa checkpoint's weights, torch.save'd (twin of
                             Fixtures/golden/clip-llama-gqa/model.safetensors), with its config.json
  siglip-qwen2-sharded/      the golden siglip-qwen2 weights in two shards, pytorch_model-0000{1,2}-of-00002.bin +
                             pytorch_model.bin.index.json, as transformers' save_pretrained(safe_serialization=False)
  adapter/                   a PEFT LoRA adapter for clip-llama-gqa (r 2 on q_proj, v_proj) as adapter_model.bin and,
                             bit-identical, adapter_model.safetensors, with adapter_config.json
  dtypes.bin                 one tensor per dtype (f32 f16 bf16 f64 i64 i32 i16 i8 u8 bool), values arange(6) % 2 for
                             bool and arange(6) - 2 otherwise, shape [2, 3]
  hostile/                   pickles that are not plain state dicts: os_system.bin and builtins_eval.bin (a reduce that
                             would run code and create MARKER_PATH), parameter.bin (nn.Parameter values),
                             non_tensor.bin (an int next to the tensors), legacy.bin (torch.save's pre-1.6 format)
Run: apt-get install -y python3-torch python3-numpy libopenblas0-pthread
     /usr/bin/python3 tools/reference/pytorch_bin_reference.py
"""
import builtins
import collections
import json
import os
import struct
import sys

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "VlaBias.Tests", "Fixtures")
OUT = os.path.join(ROOT, "pytorch_bin")
MARKER_PATH = "/tmp/vlatune-hostile-pickle-ran"

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64, "I64": torch.int64,
          "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
NP = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "I16": np.int16,
      "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """A plain safetensors reader (the format is a JSON header and raw little-endian bytes)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = collections.OrderedDict()
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "BF16":
            t = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=NP[e["dtype"]]).copy())
        out[name] = t.reshape(e["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    names = sorted(tensors)
    header, offset, blobs = {}, 0, []
    for name in names:
        t = tensors[name].contiguous()
        dtype = [k for k, v in DTYPES.items() if v == t.dtype][0]
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


class SystemCall:
    def __reduce__(self):
        import os as _os
        return (_os.system, ("touch " + MARKER_PATH,))


class EvalCall:
    def __reduce__(self):
        return (builtins.eval, ("__import__('os').system('touch " + MARKER_PATH + "')",))


def main():
    torch.manual_seed(0)
    golden = os.path.join(ROOT, "golden")

    d = os.path.join(OUT, "clip-llama-gqa")
    os.makedirs(d, exist_ok=True)
    sd = read_safetensors(os.path.join(golden, "clip-llama-gqa", "model.safetensors"))
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    with open(os.path.join(golden, "clip-llama-gqa", "config.json")) as f:
        config = f.read()
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config)

    d = os.path.join(OUT, "siglip-qwen2-sharded")
    os.makedirs(d, exist_ok=True)
    sd = read_safetensors(os.path.join(golden, "siglip-qwen2", "model.safetensors"))
    names = list(sd)
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, part in enumerate([names[:half], names[half:]]):
        shard = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save(collections.OrderedDict((n, sd[n]) for n in part), os.path.join(d, shard))
        for n in part:
            weight_map[n] = shard
            total += sd[n].numel() * sd[n].element_size()
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(golden, "siglip-qwen2", "config.json")) as f:
        config = f.read()
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(config)

    d = os.path.join(OUT, "adapter")
    os.makedirs(d, exist_ok=True)
    cfg = json.loads(open(os.path.join(golden, "clip-llama-gqa", "config.json")).read())
    t = cfg["text_config"]
    hidden = t["hidden_size"]
    kv = t["num_key_value_heads"] * t.get("head_dim", hidden // t["num_attention_heads"])
    r = 2
    adapter = collections.OrderedDict()
    for layer in range(t["num_hidden_layers"]):
        for proj, out in (("q_proj", hidden), ("v_proj", kv)):
            p = f"base_model.model.language_model.model.layers.{layer}.self_attn.{proj}"
            adapter[p + ".lora_A.weight"] = torch.randn(r, hidden) * 0.5
            adapter[p + ".lora_B.weight"] = torch.randn(out, r) * 0.5
    torch.save(adapter, os.path.join(d, "adapter_model.bin"))
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), adapter)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 4, "lora_dropout": 0.0,
                   "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False,
                   "base_model_name_or_path": "clip-llama-gqa"}, f, indent=2)

    values = torch.arange(6).reshape(2, 3)
    dtypes = collections.OrderedDict()
    for name, dt in DTYPES.items():
        dtypes[name] = (values % 2).to(dt) if dt == torch.bool else (values - 2).to(dt)
    torch.save(dtypes, os.path.join(OUT, "dtypes.bin"))

    d = os.path.join(OUT, "hostile")
    os.makedirs(d, exist_ok=True)
    w = torch.ones(2, 2)
    torch.save({"weight": w, "payload": SystemCall()}, os.path.join(d, "os_system.bin"))
    torch.save({"weight": w, "payload": EvalCall()}, os.path.join(d, "builtins_eval.bin"))
    torch.save({"weight": torch.nn.Parameter(w)}, os.path.join(d, "parameter.bin"))
    torch.save({"weight": w, "step": 5}, os.path.join(d, "non_tensor.bin"))
    torch.save({"weight": w}, os.path.join(d, "legacy.bin"), _use_new_zipfile_serialization=False)
    for f in sorted(os.listdir(d)):
        print(f, os.path.getsize(os.path.join(d, f)))
    if os.path.exists(MARKER_PATH):
        os.remove(MARKER_PATH)


if __name__ == "__main__":
    sys.exit(main())
