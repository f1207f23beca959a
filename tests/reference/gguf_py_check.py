#!/usr/bin/env python3
"""Reads a GGUF written by kiln with gguf-py (PyPI `gguf`) and compares it with the JSON
manifest kiln wrote beside it: metadata keys in order, value types, values, tensor names,
shapes (ne order), types, offsets and bytes.

Usage: gguf_py_check.py FILE.gguf MANIFEST.json
Exit status 0 when everything matches; 1 with a list of differences otherwise.

Manifest format:
  {"alignment": int,
   "kv": [{"key": str, "types": [gguf-py GGUFValueType names], "contents": value,
           "elem_type": element type id of an array value, else null}],
   "tensors": [{"name": str, "shape": [ne0, ne1, ...], "type": str, "n_bytes": int, "hex": str}]}
"contents" is what ReaderField.contents() returns: gguf-py flattens nested arrays to a list
of their leaves, so kiln's manifest does too; its `types` lists only what the first element
shows (just ARRAY for an empty array), so `elem_type` is checked against the raw parts.
"""
import json
import sys

try:
    import gguf
    from gguf import GGUFReader
except ImportError as e:  # the Rust test reports this as a failure, not a skip
    print(f"cannot import gguf: {e}; install it with `pip install gguf numpy`", file=sys.stderr)
    sys.exit(2)


def same(a, b):
    """Exact equality, with int and float values compared by value (json gives ints for
    whole-number floats) and lists element by element."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return a == b


def main(path, manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    reader = GGUFReader(path)
    errors = []

    if reader.alignment != manifest["alignment"]:
        errors.append(f"alignment: gguf-py {reader.alignment}, kiln {manifest['alignment']}")

    fields = [(k, v) for k, v in reader.fields.items() if not k.startswith("GGUF.")]
    got_keys = [k for k, _ in fields]
    want_keys = [kv["key"] for kv in manifest["kv"]]
    if got_keys != want_keys:
        errors.append(f"keys: gguf-py {got_keys}, kiln {want_keys}")
    for kv in manifest["kv"]:
        field = reader.fields.get(kv["key"])
        if field is None:
            errors.append(f"{kv['key']}: missing")
            continue
        types = [t.name for t in field.types]
        if types != kv["types"]:
            errors.append(f"{kv['key']}: types gguf-py {types}, kiln {kv['types']}")
        if kv.get("elem_type") is not None:
            # parts: key length, key bytes, value type, element type, count, elements...
            elem = int(field.parts[3][0])
            if elem != kv["elem_type"]:
                errors.append(f"{kv['key']}: element type gguf-py {elem}, kiln {kv['elem_type']}")
        contents = field.contents()
        if not same(contents, kv["contents"]):
            errors.append(f"{kv['key']}: value gguf-py {contents!r}, kiln {kv['contents']!r}")

    if len(reader.tensors) != len(manifest["tensors"]):
        errors.append(f"tensor count: gguf-py {len(reader.tensors)}, kiln {len(manifest['tensors'])}")
    for t, want in zip(reader.tensors, manifest["tensors"]):
        name = want["name"]
        if t.name != name:
            errors.append(f"tensor name: gguf-py {t.name!r}, kiln {name!r}")
        # ReaderTensor.shape is the file's ne order (row length first), like kiln's shape().
        shape = [int(d) for d in t.shape]
        if shape != want["shape"]:
            errors.append(f"{name}: shape gguf-py {shape}, kiln {want['shape']}")
        if t.tensor_type.name != want["type"]:
            errors.append(f"{name}: type gguf-py {t.tensor_type.name}, kiln {want['type']}")
        if int(t.n_bytes) != want["n_bytes"]:
            errors.append(f"{name}: n_bytes gguf-py {t.n_bytes}, kiln {want['n_bytes']}")
        if t.data_offset % reader.alignment != 0:
            errors.append(f"{name}: data offset {t.data_offset} not aligned to {reader.alignment}")
        data = bytes(reader.data[t.data_offset : t.data_offset + t.n_bytes])
        if data.hex() != want["hex"]:
            errors.append(f"{name}: bytes differ")
        # The typed view must cover the same bytes (gguf-py's own size arithmetic).
        if t.data.nbytes != want["n_bytes"]:
            errors.append(f"{name}: gguf-py data view has {t.data.nbytes} bytes")

    version = getattr(gguf, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as pkg_version

            version = pkg_version("gguf")
        except Exception:  # noqa: BLE001 - only for the log line
            version = "unknown"
    if errors:
        print(f"gguf-py {version} disagrees with kiln on {path}:")
        for e in errors:
            print("  " + e)
        return 1
    print(
        f"gguf-py {version}: {path}: {len(manifest['kv'])} keys and "
        f"{len(manifest['tensors'])} tensors match"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
