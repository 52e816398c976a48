#!/usr/bin/python3
"""Image preprocessing fixtures: what Hugging Face's image processors give a model, made with Debian's python3-pil.

Follows transformers' CLIPImageProcessor, LlavaImageProcessor (do_pad, LLaVA-1.5) and SiglipImageProcessor step by
step (image_processing_clip.py, image_processing_llava.py, image_processing_siglip.py, image_transforms.py):
  convert("RGB") -> np.array (uint8, HWC)
  -> [do_pad] pad_to_square: a max(H, W) square filled with tuple(int(m * 255) for m in image_mean), the image at
     (max - H) // 2 rows or (max - W) // 2 columns
  -> resize with PIL: Image.fromarray(a).resize((w, h), resample=BICUBIC) (reducing_gap None), where
     shortest_edge s: short -> s, long -> int(s * long / short); {height, width}: exactly that size
  -> [do_center_crop] a[(H - ch) // 2 : ... + ch, (W - cw) // 2 : ... + cw]
  -> rescale: a.astype(float64) * rescale_factor -> float32;  normalize: (x - mean) / std in float32.

Inputs are the photos Debian ships (matplotlib's grace_hopper.jpg, scikit-learn's china.jpg and flower.jpg, CC BY 2.0,
see Fixtures/images/README.md) and re-encodings of them made here: smaller sizes, odd sizes, PNG (RGB, RGBA, grey,
palette), lossy and lossless WebP, so every decoder path and up- and downscaling are covered.

Writes tests/VlaBias.Tests/Fixtures/images/: inputs/*, expected/<case>.png (uint8 pixels after resize and crop, before
rescale), expected/<case>.center.f32 (the float32 values of the centre 32 x 32 window, C x 32 x 32, little-endian),
and cases.json. Run: apt-get install -y python3-pil python3-numpy python-matplotlib-data python3-sklearn
                     /usr/bin/python3 tools/reference/image_preprocessing_reference.py
"""
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "VlaBias.Tests", "Fixtures", "images")
GRACE = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
SKLEARN = "/usr/lib/python3/dist-packages/sklearn/datasets/images"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def clip(size, crop, pad=False):
    """preprocessor_config.json of openai/clip-vit-large-patch14-336 (llava-hf/llava-1.5-7b-hf with do_pad)."""
    cfg = {"image_processor_type": "LlavaImageProcessor" if pad else "CLIPImageProcessor", "do_resize": True,
           "size": {"shortest_edge": size}, "resample": 3, "do_center_crop": True,
           "crop_size": {"height": crop, "width": crop}, "do_rescale": True, "rescale_factor": 1 / 255,
           "do_normalize": True, "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True}
    if pad:
        cfg["do_pad"] = True
    return cfg


def siglip(size):
    """preprocessor_config.json of google/siglip-*-patch16-<size>."""
    return {"image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": size, "width": size},
            "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


def make_inputs(d):
    """Copies the Debian photos and writes re-encodings of them; returns {file name: mode of the saved image}."""
    os.makedirs(d, exist_ok=True)
    shutil.copy(GRACE, os.path.join(d, "grace_hopper.jpg"))                      # 512 x 600
    shutil.copy(os.path.join(SKLEARN, "china.jpg"), os.path.join(d, "china.jpg"))    # 640 x 427
    shutil.copy(os.path.join(SKLEARN, "flower.jpg"), os.path.join(d, "flower.jpg"))  # 640 x 427
    grace = Image.open(GRACE).convert("RGB")
    china = Image.open(os.path.join(SKLEARN, "china.jpg")).convert("RGB")
    flower = Image.open(os.path.join(SKLEARN, "flower.jpg")).convert("RGB")
    flower.resize((320, 213), Image.LANCZOS).save(os.path.join(d, "flower_320x213.png"))
    grace.resize((256, 300), Image.LANCZOS).save(os.path.join(d, "grace_256x300_q85.webp"), quality=85)
    china.resize((300, 200), Image.LANCZOS).save(os.path.join(d, "china_300x200_lossless.webp"), lossless=True)
    rgba = flower.resize((240, 160), Image.LANCZOS).convert("RGBA")
    alpha = np.tile(np.linspace(40, 255, 240, dtype=np.float64).astype(np.uint8), (160, 1))
    rgba.putalpha(Image.fromarray(alpha, "L"))
    rgba.save(os.path.join(d, "flower_240x160_rgba.png"))
    grace.resize((171, 200), Image.LANCZOS).convert("L").save(os.path.join(d, "grace_171x200_grey.png"))
    china.resize((333, 221), Image.LANCZOS).save(os.path.join(d, "china_333x221.png"))
    grace.resize((200, 234), Image.LANCZOS).quantize(colors=128).save(os.path.join(d, "grace_200x234_palette.png"))
    china.resize((448, 299), Image.LANCZOS).save(os.path.join(d, "china_448x299_q90.jpg"), quality=90)


CASES = [
    # name, input, preprocessor config
    ("grace_clip336", "grace_hopper.jpg", clip(336, 336)),
    ("china_clip336", "china.jpg", clip(336, 336)),
    ("flower_clip336", "flower.jpg", clip(336, 336)),
    ("grace_llava15pad336", "grace_hopper.jpg", clip(336, 336, pad=True)),
    ("china_llava15pad336", "china.jpg", clip(336, 336, pad=True)),
    ("flower_llava15pad336", "flower.jpg", clip(336, 336, pad=True)),
    ("china_siglip224", "china.jpg", siglip(224)),
    ("flower320png_clip336", "flower_320x213.png", clip(336, 336)),
    ("grace256webp_siglip224", "grace_256x300_q85.webp", siglip(224)),
    ("china300webplossless_clip224", "china_300x200_lossless.webp", clip(224, 224)),
    ("flower240rgba_clip224", "flower_240x160_rgba.png", clip(224, 224)),
    ("grace171grey_siglip224", "grace_171x200_grey.png", siglip(224)),
    ("china333odd_clip224", "china_333x221.png", clip(224, 224)),
    ("grace200palette_llava15pad224", "grace_200x234_palette.png", clip(224, 224, pad=True)),
    ("china448jpg_siglip224", "china_448x299_q90.jpg", siglip(224)),
]


def preprocess(path, cfg):
    """Returns (uint8 HWC after resize and crop, float32 CHW after rescale and normalize)."""
    image = Image.open(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    a = np.array(image)                                        # to_numpy_array
    if cfg.get("do_pad"):                                      # LlavaImageProcessor.pad_to_square
        h, w = a.shape[:2]
        if h != w:
            m = max(h, w)
            out = np.zeros((m, m, 3), dtype=a.dtype)
            for i, c in enumerate(tuple(int(x * 255) for x in cfg["image_mean"])):
                out[:, :, i] = c
            if w > h:
                s = (m - h) // 2
                out[s:s + h, :, :] = a
            else:
                s = (m - w) // 2
                out[:, s:s + w, :] = a
            a = out
    if cfg["do_resize"]:
        h, w = a.shape[:2]
        size = cfg["size"]
        if "shortest_edge" in size:                            # get_resize_output_image_size(default_to_square=False)
            s = size["shortest_edge"]
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = s, int(s * long / short)
            oh, ow = (new_long, new_short) if w <= h else (new_short, new_long)
        else:
            oh, ow = size["height"], size["width"]
        a = np.array(Image.fromarray(a).resize((ow, oh), resample=Image.BICUBIC, reducing_gap=None))
    if cfg.get("do_center_crop"):                              # image_transforms.center_crop (fits here)
        h, w = a.shape[:2]
        ch, cw = cfg["crop_size"]["height"], cfg["crop_size"]["width"]
        top, left = (h - ch) // 2, (w - cw) // 2
        assert top >= 0 and left >= 0
        a = a[top:top + ch, left:left + cw]
    x = a.astype(np.float64) * cfg["rescale_factor"]         # rescale
    x = x.astype(np.float32)
    mean = np.array(cfg["image_mean"], dtype=np.float32)     # normalize, channels last
    std = np.array(cfg["image_std"], dtype=np.float32)
    x = (x - mean) / std
    return a, np.ascontiguousarray(x.transpose(2, 0, 1))


def main():
    inputs = os.path.join(ROOT, "inputs")
    expected = os.path.join(ROOT, "expected")
    if os.path.isdir(expected):
        shutil.rmtree(expected)
    os.makedirs(expected)
    make_inputs(inputs)
    cases = []
    for name, file, cfg in CASES:
        src = Image.open(os.path.join(inputs, file))
        pixels, floats = preprocess(os.path.join(inputs, file), cfg)
        Image.fromarray(pixels, "RGB").save(os.path.join(expected, name + ".png"), optimize=True)
        c, h, w = floats.shape
        y0, x0 = (h - 32) // 2, (w - 32) // 2
        floats[:, y0:y0 + 32, x0:x0 + 32].astype("<f4").tofile(os.path.join(expected, name + ".center.f32"))
        cases.append({"name": name, "input": "inputs/" + file, "input_format": src.format, "input_mode": src.mode,
                      "input_size": [src.width, src.height], "preprocessor_config": cfg,
                      "expected": "expected/" + name + ".png", "output_size": [w, h],
                      "center": {"file": "expected/" + name + ".center.f32", "x0": x0, "y0": y0, "size": 32}})
        print(f"{name:32s} {file:30s} {src.format:5s} {src.mode:4s} {src.width}x{src.height} -> {w}x{h}")
    with open(os.path.join(ROOT, "cases.json"), "w") as f:
        json.dump({"generator": "tools/reference/image_preprocessing_reference.py", "pillow": Image.__version__,
                   "numpy": np.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
