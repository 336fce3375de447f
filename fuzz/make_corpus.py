#!/usr/bin/python3
"""Writes the seed corpus of fuzz/fuzz_safetensors into fuzz/corpus/.

Valid files follow the reference writer (tensors sorted by dtype alignment descending then
name, compact JSON, header padded with spaces to a multiple of 8); broken files each break
one rule a strict reader checks. Only struct and json: run it with any Python 3.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

ITEM = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}
RANK = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
PACK = {"F32": "f", "F64": "d", "I32": "i", "I64": "q", "U8": "B", "BOOL": "?", "I16": "h"}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def raw(dtype, values):
    if dtype in PACK:
        return struct.pack("<%d%s" % (len(values), PACK[dtype]), *values)
    return bytes(len(values) * ITEM[dtype])  # zeros for the types we do not pack


def header_bytes(obj, pad=True):
    text = json.dumps(obj, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return text


def file_bytes(header, data):
    return struct.pack("<Q", len(header)) + header + data


def build(tensors, metadata=None, pad=True):
    """tensors: {name: (dtype, shape, values)} -> bytes of a valid file."""
    order = sorted(tensors, key=lambda k: (-RANK.index(tensors[k][0]), k))
    obj, data = {}, b""
    if metadata is not None:
        obj["__metadata__"] = metadata
    for name in order:
        dtype, shape, values = tensors[name]
        blob = raw(dtype, values)
        assert len(blob) == numel(shape) * ITEM[dtype]
        obj[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return file_bytes(header_bytes(obj, pad), data)


def raw_file(header_text, data=b"", n=None):
    """A file from literal header text (for the broken cases)."""
    h = header_text.encode()
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def main():
    os.makedirs(OUT, exist_ok=True)
    f6 = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    cases = {
        # valid
        "ok_attn0_f32": build({"attn.0": ("F32", [1, 2, 3], f6)}),
        "ok_empty": build({}),
        "ok_empty_meta": build({}, {"framework": "pt"}),
        "ok_attn0_4d": build({"attn0": ("F32", [1, 1, 2, 3], f6)}),
        "ok_mixed": build({"w": ("F64", [2, 2], [1.5, -2.0, 3.25, 0.0]),
                           "ids": ("I64", [3], [1, -7, 2 ** 40]),
                           "b": ("F32", [2], [0.5, 0.25]),
                           "t": ("I32", [2], [4, -4]),
                           "mask": ("BOOL", [3], [True, False, True]),
                           "h": ("BF16", [2], [0, 0])}, {"format": "pt", "step": "12"}),
        "ok_scalar_and_empty": build({"s": ("F32", [], [7.0]), "e": ("F32", [0, 3], []),
                                      "z": ("I64", [2, 0], [])}),
        "ok_unpadded": build({"x": ("F32", [3], [1.0, 2.0, 3.0])}, pad=False),
        "ok_utf8_name": build({"gewicht_\u00e4\u00f6": ("F32", [1], [1.0])}),
        "ok_i64_not_int32": build({"ids": ("I64", [2], [1, 2 ** 33])}),
        # broken
        "bad_short": b"\x08\x00\x00",
        "bad_len_beyond": struct.pack("<Q", 1000) + b"{}      ",
        "bad_len_huge": struct.pack("<Q", 2 ** 64 - 1) + b"{}",
        "bad_json": raw_file('{"a":{"dtype":"F32",'),
        "bad_dtype": raw_file('{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
        "bad_size": raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4),
        "bad_overlap": raw_file('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                                '"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "bad_hole": raw_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "bad_dup": raw_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                            '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', b"\0" * 8),
        "bad_overflow": raw_file('{"a":{"dtype":"F32","shape":[4294967296,4294967296],'
                                 '"data_offsets":[0,0]}}'),
        "bad_trailing": build({"x": ("F32", [1], [1.0])}) + b"\0",
        "bad_leading_space": raw_file(' {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                                      b"\0" * 4),
        "bad_meta_number": raw_file('{"__metadata__":{"step":3}}'),
        "bad_dims": raw_file('{"a":{"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]}}',
                             b"\0" * 4),
        "bad_fraction": raw_file('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', b"\0" * 4),
        "bad_negative": raw_file('{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}', b"\0" * 4),
        "bad_big_offset": raw_file('{"a":{"dtype":"U8","shape":[0],'
                                   '"data_offsets":[18446744073709551615,18446744073709551615]}}'),
    }
    for name, blob in sorted(cases.items()):
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print("wrote %d files to %s" % (len(cases), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
