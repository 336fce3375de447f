"""The small framework shared by every fixture module.

- `fixture(name, seed=None)`: decorator that registers a case. The decorated function
  takes no arguments and returns `(tensors, meta)`; before it runs, the runner calls
  `torch.manual_seed(seed)` (default: a stable hash of the name), so every case is
  reproducible on its own, whatever else runs.
- `op_case(fn, inputs, meta)` / `module_case(module, fn, inputs, meta)`: run a forward
  pass, back-propagate a fixed random upstream gradient into every output, and collect
  the tensors under the naming convention of tests/README.md.
- `case(name, tensors, meta, out_dir)`: checks the names and writes one safetensors file.
- `write_safetensors` / `read_safetensors`: the format with struct + json only
  (8-byte header length, JSON header, raw data); there is no safetensors package here.
  Every file written is read back with the strict pure-Python reader and compared.
"""

import json
import re
import struct
import zlib

import torch

# ---------------------------------------------------------------------------------------
# registry

_REGISTRY = []  # (name, seed, fn, module name), in registration order
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def fixture(name, seed=None):
    """Registers `fn` as the case `name` (file tests/fixtures/<name>.safetensors)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"bad case name {name!r}: use [a-z0-9_.-]")

    def deco(fn):
        if any(n == name for n, _, _, _ in _REGISTRY):
            raise ValueError(f"duplicate case name {name!r}")
        s = stable_seed(name) if seed is None else seed
        _REGISTRY.append((name, s, fn, fn.__module__))
        return fn

    return deco


def registry():
    return list(_REGISTRY)


def stable_seed(name):
    """A seed that depends only on the case name (not on Python's hash randomisation)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------
# random inputs (all drawn from torch's global generator, seeded per case)


def randn(*shape, std=1.0):
    return torch.randn(*shape) * std


def uniform(*shape, lo=-1.0, hi=1.0):
    return torch.empty(*shape).uniform_(lo, hi)


def away_from_zero(*shape, lo=0.2, hi=2.0):
    """Magnitudes in [lo, hi) with random signs: no zeros, no kinks (relu, div)."""
    mag = torch.empty(*shape).uniform_(lo, hi)
    sign = torch.randint(0, 2, shape).float() * 2 - 1
    return mag * sign


def positive(*shape, lo=0.2, hi=2.0):
    return torch.empty(*shape).uniform_(lo, hi)


def distinct(*shape, spacing=0.05):
    """Values with no ties anywhere (a random permutation of an even grid, plus noise)."""
    n = 1
    for d in shape:
        n *= d
    grid = (torch.arange(n, dtype=torch.float32) - n / 2) * spacing * 4
    perm = torch.randperm(n)
    return (grid[perm] + torch.empty(n).uniform_(-spacing, spacing)).reshape(*shape)


def randint(high, *shape, low=0):
    return torch.randint(low, high, shape, dtype=torch.int64)


# ---------------------------------------------------------------------------------------
# forward + backward


def _outputs_dict(result):
    """A Tensor -> {"out": t}; a dict {k: t} -> {"out.k": t} (None values dropped)."""
    if isinstance(result, torch.Tensor):
        return {"out": result}
    if isinstance(result, dict):
        return {f"out.{k}": v for k, v in result.items() if v is not None}
    raise TypeError("a case function must return a Tensor or a dict of Tensors")


def _backward(outs):
    """Draws a random upstream gradient for every differentiable output (in name order),
    back-propagates all of them at once, and returns {"gout[.k]": g}."""
    gouts, targets, grads = {}, [], []
    for key in sorted(outs):
        o = outs[key]
        if not (o.is_floating_point() and o.requires_grad):
            continue
        g = torch.randn(o.shape, dtype=o.dtype)
        gouts["g" + key] = g
        targets.append(o)
        grads.append(g)
    if targets:
        torch.autograd.backward(targets, grads)
    return gouts


def _store_inputs(inputs, tensors, meta):
    bools = []
    for k, v in inputs.items():
        if v.dtype == torch.bool:
            bools.append(f"in.{k}")
        tensors[f"in.{k}"] = v.detach().clone()
    if bools:
        meta["bool"] = ",".join(bools)


def _leaves(inputs, const):
    leaves = {}
    for k, v in inputs.items():
        v = v.detach().clone()
        if v.is_floating_point() and k not in const:
            v.requires_grad_(True)
        leaves[k] = v
    return leaves


def op_case(fn, inputs, meta, const=()):
    """Runs `fn(**inputs)`; every floating input not named in `const` requires grad.

    Returns (tensors, meta) with in.*, out[.*], gout[.*] and grad.* entries."""
    meta = dict(meta)
    tensors = {}
    _store_inputs(inputs, tensors, meta)
    leaves = _leaves(inputs, const)
    outs = _outputs_dict(fn(**leaves))
    tensors.update({k: v.detach() for k, v in outs.items()})
    tensors.update(_backward(outs))
    for k, v in leaves.items():
        if v.requires_grad:
            tensors[f"grad.{k}"] = v.grad if v.grad is not None else torch.zeros_like(v)
    return tensors, meta


def state_dict_tensors(module, prefix="param."):
    """{prefix + name: value} in state_dict order, and the comma-joined keys."""
    sd = module.state_dict()
    return {prefix + k: v.detach().clone() for k, v in sd.items()}, ",".join(sd.keys())


def module_case(module, fn, inputs, meta, const=()):
    """Runs `fn(module, **inputs)`; adds param.<state_dict name> (values before the
    forward pass), grad.param.<name> for every parameter, and meta "keys"."""
    meta = dict(meta)
    tensors = {}
    params, keys = state_dict_tensors(module)
    meta["keys"] = keys
    _store_inputs(inputs, tensors, meta)
    tensors.update(params)
    module.zero_grad(set_to_none=True)
    leaves = _leaves(inputs, const)
    outs = _outputs_dict(fn(module, **leaves))
    tensors.update({k: v.detach() for k, v in outs.items()})
    tensors.update(_backward(outs))
    for k, v in leaves.items():
        if v.requires_grad:
            tensors[f"grad.{k}"] = v.grad if v.grad is not None else torch.zeros_like(v)
    for name, p in module.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        tensors[f"grad.param.{name}"] = g.detach().clone()
    return tensors, meta


def meta_str(**kw):
    """Metadata values must be strings: bools become "1"/"0", the rest str()."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, bool):
            out[k] = "1" if v else "0"
        elif isinstance(v, (list, tuple)):
            out[k] = ",".join(str(x) for x in v)
        else:
            out[k] = str(v)
    return out


# ---------------------------------------------------------------------------------------
# safetensors (struct + json)

# dtype string, item size; the order is the reference writer's sort order (largest
# alignment first), used to lay out the data buffer.
_DTYPES = {
    torch.int64: ("I64", 8),
    torch.float64: ("F64", 8),
    torch.float32: ("F32", 4),
    torch.int32: ("I32", 4),
    torch.bfloat16: ("BF16", 2),
    torch.float16: ("F16", 2),
    torch.int16: ("I16", 2),
    torch.int8: ("I8", 1),
    torch.uint8: ("U8", 1),
    torch.bool: ("BOOL", 1),
}
_ORDER = ["U64", "I64", "F64", "F32", "U32", "I32", "BF16", "F16", "U16", "I16", "I8", "U8",
          "BOOL"]
_ITEMSIZE = {"U64": 8, "I64": 8, "F64": 8, "F32": 4, "U32": 4, "I32": 4, "BF16": 2, "F16": 2,
             "U16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()


def safetensors_bytes(tensors, meta=None):
    """The exact bytes the reference writer produces for {name: tensor} and metadata."""
    entries = []
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise TypeError(f"{name}: dtype {t.dtype} not supported")
        dt, _ = _DTYPES[t.dtype]
        entries.append((_ORDER.index(dt), name, dt, list(t.shape), _tensor_bytes(t)))
    entries.sort(key=lambda e: (e[0], e[1]))
    header, blobs, off = {}, [], 0
    if meta:
        for k, v in meta.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"__metadata__ must map str to str: {k!r}: {v!r}")
        header["__metadata__"] = dict(meta)
    for _, name, dt, shape, data in entries:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write_safetensors(path, tensors, meta=None):
    data = safetensors_bytes(tensors, meta)
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


_STRUCT = {"I64": "q", "F64": "d", "F32": "f", "I32": "i", "F16": "e", "I16": "h", "I8": "b",
           "U8": "B", "BOOL": "?", "U64": "Q", "U32": "I", "U16": "H"}


def read_safetensors(path):
    """A strict pure-Python reader (struct + json; the safetensors rules).
    Returns ({name: (dtype, shape, flat list of Python numbers)}, metadata)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > 100_000_000 or 8 + n > len(raw):
        raise ValueError("bad header length")
    text = raw[8:8 + n].decode("utf-8")
    if not text.startswith("{"):
        raise ValueError("header must start with '{'")

    def no_dups(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError(f"duplicate key {k!r}")
            d[k] = v
        return d

    header = json.loads(text.rstrip(" "), object_pairs_hook=no_dups)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("non-string metadata")
    buf = raw[8 + n:]
    spans, out = [], {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{name}: bad entry {info!r}")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _STRUCT:
            raise ValueError(f"{name}: unsupported dtype {dt!r}")
        if len(offs) != 2 or not all(isinstance(o, int) and o >= 0 for o in offs):
            raise ValueError(f"{name}: bad data_offsets {offs}")
        numel = 1
        for d in shape:
            if not isinstance(d, int) or d < 0:
                raise ValueError(f"{name}: bad shape {shape}")
            numel *= d
        b, e = offs
        if e < b or e - b != numel * _ITEMSIZE[dt]:
            raise ValueError(f"{name}: offsets {b},{e} do not fit shape {shape} {dt}")
        spans.append((b, e))
        values = list(struct.unpack(f"<{numel}{_STRUCT[dt]}", buf[b:e]))
        out[name] = (dt, list(shape), values)
    pos = 0
    for b, e in sorted(spans):
        if b != pos:
            raise ValueError("hole or overlap in the data buffer")
        pos = e
    if pos != len(buf):
        raise ValueError("data buffer size does not match the header")
    return out, meta


def _same(a, b):
    return a == b or (a != a and b != b)  # NaN equals NaN


def verify_file(path, tensors, meta):
    """Re-reads a written file with the pure-Python reader and checks it holds exactly
    `tensors` (after the bool/int32 -> I64 conversion) and `meta`."""
    got, got_meta = read_safetensors(path)
    if got_meta != meta or set(got) != set(tensors):
        raise AssertionError(f"{path}: names or metadata differ after re-reading")
    for k, t in tensors.items():
        dt, shape, values = got[k]
        want = t.detach().contiguous().reshape(-1).tolist()
        if (dt != _DTYPES[t.dtype][0] or shape != list(t.shape) or len(values) != len(want)
                or not all(_same(x, y) for x, y in zip(values, want))):
            raise AssertionError(f"{path}: tensor {k} differs after re-reading")


# ---------------------------------------------------------------------------------------
# one case -> one file

_PREFIXES = ("in.", "out", "gout", "grad.", "param.", "after", "state", "mt.")


def case(name, tensors, meta, out_dir):
    """Checks the naming convention, converts bool tensors to I64 0/1, writes
    <out_dir>/<name>.safetensors and returns (path, size in bytes)."""
    fixed = {}
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name}: {k} is not a tensor")
        if meta.get("state_dict") != "1" and not k.startswith(_PREFIXES):
            raise ValueError(f"{name}: tensor name {k!r} breaks the naming convention")
        v = v.detach()
        if v.dtype == torch.bool:
            v = v.to(torch.int64)
        elif v.dtype == torch.int32:
            v = v.to(torch.int64)
        fixed[k] = v
    for k, v in meta.items():
        if not isinstance(v, str):
            raise TypeError(f"{name}: metadata {k!r} must be a string, got {v!r}")
    path = f"{out_dir}/{name}.safetensors"
    size = write_safetensors(path, fixed, meta)
    verify_file(path, fixed, meta)
    return path, size
