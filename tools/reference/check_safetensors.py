#!/usr/bin/python3
"""Validate a safetensors file and list its tensors, with the Python standard library only.

    python3 tools/reference/check_safetensors.py FILE [FILE ...] [--stats] [--compare OTHER]

Independent of llava_reference.py's reader (no torch, no numpy), so it can judge files written by the
C# code. Checks: header length sane and within the file, header is UTF-8 JSON object, no duplicate
names, `__metadata__` (if any) maps strings to strings, every dtype known, every shape a list of
non-negative ints, data_offsets [begin, end) with end - begin == element count x element size,
offsets contiguous from 0 without gaps or overlaps, and the data buffer ends exactly at the last
tensor. Also notes (does not fail on) a header not padded to a multiple of 8.

--stats prints min / max / mean of each floating tensor; --compare prints max |a - b| per common
tensor between FILE and OTHER (float and int dtypes; BF16/F16 decoded by hand).
Exit code 0 if every file is valid, 1 otherwise.
"""

import json
import math
import struct
import sys

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
              "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
STRUCT_CODE = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B",
               "U16": "H", "U32": "I", "U64": "Q", "F16": "e", "BOOL": "?"}


class Invalid(Exception):
    pass


def parse(path):
    """Returns (header dict without metadata, metadata, data bytes, notes)."""
    with open(path, "rb") as f:
        raw = f.read()
    notes = []
    if len(raw) < 8:
        raise Invalid(f"file is {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n == 0 or n > 100 * 1024 * 1024:
        raise Invalid(f"header length {n} is not sane")
    if 8 + n > len(raw):
        raise Invalid(f"header length {n} runs past the end of the file ({len(raw)} bytes)")
    if n % 8:
        notes.append(f"header length {n} is not a multiple of 8 (allowed, but the writer should pad)")
    try:
        text = raw[8:8 + n].decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"header is not UTF-8: {e}")

    def pairs_hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise Invalid(f"duplicate name in header: {k!r}")
            seen.add(k)
        return dict(pairs)

    try:
        header = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as e:
        raise Invalid(f"header is not JSON: {e}")
    if not isinstance(header, dict):
        raise Invalid("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is not None:
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise Invalid("__metadata__ must map strings to strings")
    data = raw[8 + n:]
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise Invalid(f"tensor {name}: entry is not an object")
        dt, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dt not in DTYPE_SIZE:
            raise Invalid(f"tensor {name}: unknown dtype {dt!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise Invalid(f"tensor {name}: bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)):
            raise Invalid(f"tensor {name}: bad data_offsets {offs!r}")
        begin, end = offs
        if begin < 0 or end < begin:
            raise Invalid(f"tensor {name}: data_offsets [{begin}, {end}) invalid")
        if end > len(data):
            raise Invalid(f"tensor {name}: data_offsets end {end} beyond data buffer of {len(data)} bytes")
        count = math.prod(shape)
        if end - begin != count * DTYPE_SIZE[dt]:
            raise Invalid(f"tensor {name}: {end - begin} bytes for {count} x {dt} ({count * DTYPE_SIZE[dt]} expected)")
        spans.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            raise Invalid(f"tensor {name}: starts at {begin}, expected {pos} (gap or overlap)")
        pos = end
    if pos != len(data):
        raise Invalid(f"data buffer is {len(data)} bytes but tensors cover {pos} (file length not exact)")
    return header, meta, data, notes


def bf16_values(buf):
    """Decode little-endian bfloat16 by widening each value to float32 bits."""
    halves = struct.unpack(f"<{len(buf) // 2}H", buf)
    return struct.unpack(f"<{len(halves)}f", struct.pack(f"<{len(halves)}I", *[h << 16 for h in halves]))


def values(info, data):
    begin, end = info["data_offsets"]
    buf = data[begin:end]
    dt = info["dtype"]
    if dt == "BF16":
        return bf16_values(buf)
    if dt not in STRUCT_CODE:
        return None
    code = STRUCT_CODE[dt]
    return struct.unpack(f"<{len(buf) // DTYPE_SIZE[dt]}{code}", buf)


def main(argv):
    args = list(argv)
    stats = "--stats" in args
    if stats:
        args.remove("--stats")
    other = None
    if "--compare" in args:
        i = args.index("--compare")
        other = args[i + 1]
        del args[i:i + 2]
    if not args:
        print(__doc__)
        return 2
    ok = True
    parsed = {}
    for path in args + ([other] if other else []):
        try:
            header, meta, data, notes = parse(path)
        except (Invalid, OSError) as e:
            print(f"{path}: INVALID: {e}")
            ok = False
            continue
        parsed[path] = (header, data)
        if path == other:
            continue
        total = sum(math.prod(i["shape"]) for i in header.values())
        print(f"{path}: valid, {len(header)} tensors, {total} elements")
        for note in notes:
            print(f"  note: {note}")
        if meta:
            for k, v in meta.items():
                print(f"  __metadata__ {k} = {v}")
        for name in sorted(header):
            info = header[name]
            line = f"  {name:<72} {info['dtype']:<5} {info['shape']}"
            if stats and info["dtype"] in ("F32", "F64", "F16", "BF16") and math.prod(info["shape"]):
                vals = values(info, data)
                line += f"  min={min(vals):.6g} max={max(vals):.6g} mean={sum(vals) / len(vals):.6g}"
            print(line)
    if other and ok:
        (ha, da), (hb, db) = parsed[args[0]], parsed[other]
        print(f"compare {args[0]} vs {other}:")
        for name in sorted(set(ha) | set(hb)):
            if name not in ha or name not in hb:
                print(f"  {name:<72} only in {'first' if name in ha else 'second'}")
                continue
            if ha[name]["shape"] != hb[name]["shape"]:
                print(f"  {name:<72} shape {ha[name]['shape']} vs {hb[name]['shape']}")
                continue
            va, vb = values(ha[name], da), values(hb[name], db)
            if va is None or vb is None:
                print(f"  {name:<72} dtype not comparable")
                continue
            diff = max((abs(a - b) for a, b in zip(va, vb)), default=0.0)
            print(f"  {name:<72} max|diff|={diff:.3g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
