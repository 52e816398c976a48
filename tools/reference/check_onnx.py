#!/usr/bin/python3
"""Runs the ONNX checker (full_check: schema, types and shape inference) on every .onnx file under a folder.

Use Debian's interpreter, which has python3-onnx (ONNX 1.12: opset <= 17, IR <= 8, what vlatune exports):

    /usr/bin/python3 tools/reference/check_onnx.py tests/VlaBias.Tests/Fixtures/onnx

Prints one line per file (IR version, opsets, node and initializer counts, inputs and outputs with their
symbolic shapes) and exits 1 if any file fails the checker. External data (<file>.data) is checked through
the model's path, so it must sit beside the .onnx file.
"""
import pathlib
import shutil
import sys
import tempfile

import onnx


def dims(value_info):
    shape = value_info.type.tensor_type.shape
    return "[" + ", ".join(d.dim_param or str(d.dim_value) for d in shape.dim) + "]"


def check_copy(path: pathlib.Path, model) -> None:
    """Checks by path (so external data and models near 2 GB work) on a copy: ONNX 1.12's check_model(path,
    full_check=True) writes the inferred shapes back into the file it checks."""
    locations = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [path.name, *locations]:
            shutil.copy(path.parent / name, pathlib.Path(tmp) / name)
        onnx.checker.check_model(str(pathlib.Path(tmp) / path.name), full_check=True)


def check(path: pathlib.Path) -> bool:
    try:
        model = onnx.load(str(path), load_external_data=False)
        check_copy(path, model)
    except Exception as e:  # the checker raises several exception types
        print(f"FAIL {path}: {type(e).__name__}: {e}")
        return False
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    g = model.graph
    print(f"ok   {path}: IR {model.ir_version}, opset {opsets}, {len(g.node)} nodes, {len(g.initializer)} initializers")
    print("       inputs:  " + "; ".join(f"{i.name} {dims(i)}" for i in g.input))
    print("       outputs: " + "; ".join(f"{o.name} {dims(o)}" for o in g.output))
    return True


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    root = pathlib.Path(sys.argv[1])
    files = sorted(root.rglob("*.onnx")) if root.is_dir() else [root]
    if not files:
        print(f"no .onnx files under {root}")
        return 2
    results = [check(f) for f in files]
    print(f"{sum(results)}/{len(results)} passed the ONNX {onnx.__version__} checker (full_check)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
