"""Recurrent modules and the small layers: nn.GRU / nn.LSTM / nn.RNN, the three cells,
nn.Linear, nn.Embedding(padding_idx), nn.LayerNorm, nn.CrossEntropyLoss.

Every module is built right after the case's torch.manual_seed (PyTorch default init),
then the inputs are drawn. Recurrent sizes: input_size 3, hidden_size 4, L=5, N=2."""

import torch
from torch import nn

from .common import fixture, meta_str, module_case, randint, randn

IN, HID, L, N = 3, 4, 5, 2

# ---------------------------------------------------------------------------------------
# nn.GRU / nn.LSTM / nn.RNN

_VARIANTS = {
    # suffix: (num_layers, bidirectional, batch_first, give h0/c0)
    "l1": (1, False, False, False),
    "l1_h0": (1, False, False, True),
    "l2": (2, False, False, False),
    "l2_h0": (2, False, False, True),
    "bidir_l1": (1, True, False, False),
    "bidir_l2_h0": (2, True, False, True),
    "batch_first_l1_h0": (1, False, True, True),
    "batch_first_bidir_l2": (2, True, True, False),
}


def _rnn_case(kind, layers, bidir, bf, h0):
    def make():
        cls = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn_tanh": nn.RNN}[kind]
        m = cls(IN, HID, num_layers=layers, bidirectional=bidir, batch_first=bf)
        d = 2 if bidir else 1
        inputs = {"x": randn(N, L, IN) if bf else randn(L, N, IN)}
        if h0:
            inputs["h0"] = randn(d * layers, N, HID, std=0.5)
            if kind == "lstm":
                inputs["c0"] = randn(d * layers, N, HID, std=0.5)

        def fn(m, x, h0=None, c0=None):
            if kind == "lstm":
                out, (h_n, c_n) = m(x, (h0, c0)) if h0 is not None else m(x)
                return {"output": out, "h_n": h_n, "c_n": c_n}
            out, h_n = m(x, h0) if h0 is not None else m(x)
            return {"output": out, "h_n": h_n}

        meta = meta_str(module=cls.__name__, input_size=IN, hidden_size=HID, num_layers=layers,
                        bidirectional=bidir, batch_first=bf, h0=h0, seq_len=L, batch=N)
        if kind == "rnn_tanh":
            meta["nonlinearity"] = "tanh"
        return module_case(m, fn, inputs, meta)
    return make


for _kind in ("gru", "lstm"):
    for _suffix, _v in _VARIANTS.items():
        fixture(f"mod_{_kind}_{_suffix}")(_rnn_case(_kind, *_v))
for _suffix in ("l1", "l1_h0", "bidir_l2_h0"):
    fixture(f"mod_rnn_tanh_{_suffix}")(_rnn_case("rnn_tanh", *_VARIANTS[_suffix]))

# ---------------------------------------------------------------------------------------
# cells: one step, with and without hx; and a 3-step unroll of GRUCell (shared weights)


def _cell_case(kind, give_h):
    def make():
        cls = {"gru": nn.GRUCell, "lstm": nn.LSTMCell, "rnn_tanh": nn.RNNCell}[kind]
        m = cls(IN, HID)
        inputs = {"x": randn(N, IN)}
        if give_h:
            inputs["h0"] = randn(N, HID, std=0.5)
            if kind == "lstm":
                inputs["c0"] = randn(N, HID, std=0.5)

        def fn(m, x, h0=None, c0=None):
            if kind == "lstm":
                h, c = m(x, (h0, c0)) if h0 is not None else m(x)
                return {"h": h, "c": c}
            return m(x, h0) if h0 is not None else m(x)

        return module_case(m, fn, inputs,
                           meta_str(module=cls.__name__, input_size=IN, hidden_size=HID,
                                    h0=give_h, batch=N))
    return make


for _kind in ("gru", "lstm", "rnn_tanh"):
    fixture(f"mod_{_kind}cell")(_cell_case(_kind, False))
    fixture(f"mod_{_kind}cell_h0")(_cell_case(_kind, True))


@fixture("mod_grucell_unroll3")
def _gru_unroll():
    m = nn.GRUCell(IN, HID)

    def fn(m, x, h0):
        h, hs = h0, []
        for t in range(x.shape[0]):
            h = m(x[t], h)
            hs.append(h)
        return torch.stack(hs)
    return module_case(m, fn, {"x": randn(3, N, IN), "h0": randn(N, HID, std=0.5)},
                       meta_str(module="GRUCell", input_size=IN, hidden_size=HID, steps=3,
                                formula="h_t = cell(x[t], h_{t-1}); out = stack(h_1..h_3)"))

# ---------------------------------------------------------------------------------------
# Linear, Embedding, LayerNorm, CrossEntropyLoss


@fixture("mod_linear")
def _linear():
    return module_case(nn.Linear(5, 3), lambda m, x: m(x), {"x": randn(4, 5)},
                       meta_str(module="Linear", in_features=5, out_features=3))


@fixture("mod_linear_3d")
def _linear3():
    return module_case(nn.Linear(5, 3), lambda m, x: m(x), {"x": randn(2, 3, 5)},
                       meta_str(module="Linear", in_features=5, out_features=3))


@fixture("mod_embedding_pad1")
def _emb():
    m = nn.Embedding(10, 4, padding_idx=1)
    ids = torch.tensor([[1, 5, 5, 2], [7, 1, 0, 5]])
    return module_case(m, lambda m, ids: m(ids), {"ids": ids},
                       meta_str(module="Embedding", num_embeddings=10, embedding_dim=4,
                                padding_idx=1))


@fixture("mod_layernorm")
def _ln():
    return module_case(nn.LayerNorm(6), lambda m, x: m(x), {"x": randn(2, 3, 6, std=2.0)},
                       meta_str(module="LayerNorm", normalized_shape=6, eps=1e-5,
                                note="default init: weight 1, bias 0"))


@fixture("mod_layernorm_affine")
def _ln_affine():
    m = nn.LayerNorm(6)
    with torch.no_grad():
        m.weight.copy_(randn(6))
        m.bias.copy_(randn(6))
    return module_case(m, lambda m, x: m(x), {"x": randn(2, 3, 6, std=2.0)},
                       meta_str(module="LayerNorm", normalized_shape=6, eps=1e-5,
                                note="weight and bias set to random values"))


@fixture("mod_cross_entropy_ignore_ls")
def _ce():
    m = nn.CrossEntropyLoss(ignore_index=3, label_smoothing=0.1)
    t = randint(5, 8)
    t[2] = 3
    t[6] = 3
    return module_case(m, lambda m, logits, target: m(logits, target),
                       {"logits": randn(8, 5, std=1.5), "target": t},
                       meta_str(module="CrossEntropyLoss", ignore_index=3, label_smoothing=0.1,
                                reduction="mean", note="classes 0..4; class 3 is ignored"))
