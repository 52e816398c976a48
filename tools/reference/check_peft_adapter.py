#!/usr/bin/python3
"""Check a PEFT LoRA adapter folder against PEFT's documented format and print a JSON summary.
Standard library only (no torch, no peft, no safetensors package).

    /usr/bin/python3 tools/reference/check_peft_adapter.py ADAPTER_DIR [--base MODEL_DIR]

What PEFT writes (huggingface/peft: utils/constants.py, peft_model.py save_pretrained, tuners/lora/layer.py,
docs/source/developer_guides/checkpoint.md):
  adapter_config.json        json.dumps(config, indent=2, sort_keys=True); peft_type "LORA", r, lora_alpha,
                             target_modules, ... ; inference_mode true on save
  adapter_model.safetensors  __metadata__ {"format": "pt"}; keys base_model.model.<module path>.lora_A.weight
                             with shape [r, in_features] and .lora_B.weight with shape [out_features, r]
                             (adapter name "default" stripped)
With --base, each module path is also looked up in MODEL_DIR's safetensors (both LLaVA key layouts) and the
shapes checked against <path>.weight [out, in].
Exit 0 if the folder conforms, 1 otherwise (problems listed in the summary).
"""

import glob
import json
import os
import struct
import sys

PREFIX = "base_model.model."
DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4,
              "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def read_header(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(100_000_000, size - 8):
            raise ValueError(f"header length {n} does not fit in the file ({size} bytes)")
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", None)
    end = 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e_ = e["data_offsets"]
        count = 1
        for d in e["shape"]:
            count *= d
        if b != end:
            raise ValueError(f"{name}: data not contiguous (begins at {b}, expected {end})")
        if e_ - b != count * DTYPE_SIZE[e["dtype"]]:
            raise ValueError(f"{name}: {e_ - b} bytes for shape {e['shape']} {e['dtype']}")
        end = e_
    if 8 + n + end != size:
        raise ValueError(f"data ends at {8 + n + end}, file has {size} bytes")
    return header, meta


def canonical(path):
    """Module path in the older LLaVA layout (language_model.model.layers...), like LlavaModel.CanonicalName."""
    if path.startswith("model.language_model."):
        return "language_model.model." + path[len("model.language_model."):]
    if path.startswith("model.vision_tower.") or path.startswith("model.multi_modal_projector."):
        return path[len("model."):]
    return path


def base_shapes(model_dir):
    shapes = {}
    for f in glob.glob(os.path.join(model_dir, "*.safetensors")):
        h, _ = read_header(f)
        for k, e in h.items():
            shapes[canonical(k)] = e["shape"]
    return shapes


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--base"):
        print(__doc__)
        return 2
    d = argv[1]
    problems = []
    cfg_path, w_path = os.path.join(d, "adapter_config.json"), os.path.join(d, "adapter_model.safetensors")
    text = open(cfg_path, encoding="utf-8").read()
    cfg = json.loads(text)
    if text != json.dumps(cfg, indent=2, sort_keys=True):
        problems.append("adapter_config.json is not json.dumps(indent=2, sort_keys=True) of its content")
    for key, want in [("peft_type", "LORA"), ("bias", "none"), ("fan_in_fan_out", False), ("inference_mode", True)]:
        if cfg.get(key) != want:
            problems.append(f"adapter_config.json: {key} is {cfg.get(key)!r}, expected {want!r}")
    for key in ["r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "task_type", "base_model_name_or_path"]:
        if key not in cfg:
            problems.append(f"adapter_config.json: missing {key}")
    r = cfg.get("r")

    header, meta = read_header(w_path)
    if meta != {"format": "pt"}:
        problems.append(f"adapter_model.safetensors: __metadata__ is {meta!r}, expected {{'format': 'pt'}}")
    modules = {}
    for k, e in header.items():
        if not k.startswith(PREFIX):
            problems.append(f"{k}: lacks the '{PREFIX}' prefix")
            continue
        for part in ("lora_A", "lora_B"):
            if k.endswith(f".{part}.weight"):
                modules.setdefault(k[len(PREFIX):-len(f".{part}.weight")], {})[part] = e
                break
        else:
            problems.append(f"{k}: neither lora_A.weight nor lora_B.weight")
    shapes = base_shapes(argv[3]) if len(argv) == 4 else None
    for path, parts in sorted(modules.items()):
        a, b = parts.get("lora_A"), parts.get("lora_B")
        if a is None or b is None:
            problems.append(f"{path}: lora_A and lora_B must come in pairs")
            continue
        if a["shape"][0] != r or b["shape"][1] != r or len(a["shape"]) != 2 or len(b["shape"]) != 2:
            problems.append(f"{path}: lora_A {a['shape']} / lora_B {b['shape']} are not [r, in] / [out, r] with r = {r}")
        targets = cfg.get("target_modules")
        if isinstance(targets, list) and not any(path == t or path.endswith("." + t) for t in targets):
            problems.append(f"{path}: not named by target_modules {targets}")
        if shapes is not None:
            w = shapes.get(canonical(path) + ".weight")
            if w is None:
                problems.append(f"{path}: no such Linear in the base model")
            elif [w[0], w[1]] != [b["shape"][0], a["shape"][1]]:
                problems.append(f"{path}: base weight {w} vs adapter [out={b['shape'][0]}, in={a['shape'][1]}]")
    summary = {
        "peft_type": cfg.get("peft_type"), "r": r, "lora_alpha": cfg.get("lora_alpha"),
        "lora_dropout": cfg.get("lora_dropout"), "use_rslora": cfg.get("use_rslora"),
        "scaling": (cfg["lora_alpha"] / (r ** 0.5 if cfg.get("use_rslora") else r)) if r else None,
        "target_modules": cfg.get("target_modules"), "task_type": cfg.get("task_type"),
        "metadata": meta, "tensors": len(header), "modules": len(modules),
        "dtypes": sorted({e["dtype"] for e in header.values()}),
        "parameters": sum(e["shape"][0] * e["shape"][1] for e in header.values()),
        "example": {k: header[k]["shape"] for k in sorted(header)[:2]},
        "checked_against_base": shapes is not None,
        "problems": problems,
    }
    print(json.dumps(summary, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
