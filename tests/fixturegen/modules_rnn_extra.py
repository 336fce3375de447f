"""Recurrent cases beyond modules_rnn.py: the Cho-2014 GRU (reset before the hidden matmul,
written out with torch ops on an nn.GRU's parameters), RNN with relu, bias=False, and
unbatched inputs. Sizes as in modules_rnn.py: input_size 3, hidden_size 4, L=5, N=2."""

import torch
from torch import nn

from .common import fixture, meta_str, module_case, randn

IN, HID, L, N = 3, 4, 5, 2


def _cho_step(x, h, w_ih, w_hh, b_ih, b_hh):
    """Cho et al. 2014 / Keras reset_after=False, with PyTorch's parameter layout:
    n = tanh(x·W_inᵀ + b_in + (r⊙h)·W_hnᵀ + b_hn); b_hn added outside the reset product."""
    H = h.shape[-1]
    gi = x @ w_ih.t() + b_ih
    grz = h @ w_hh[: 2 * H].t() + b_hh[: 2 * H]
    r = torch.sigmoid(gi[..., :H] + grz[..., :H])
    z = torch.sigmoid(gi[..., H:2 * H] + grz[..., H:])
    n = torch.tanh(gi[..., 2 * H:] + (r * h) @ w_hh[2 * H:].t() + b_hh[2 * H:])
    return n + z * (h - n)


def _cho_gru(m, x, h0):
    """A multi-layer, optionally bidirectional Cho GRU over x (L, N, in), seq-first."""
    d = 2 if m.bidirectional else 1
    layer_in, h_n = x, []
    for layer in range(m.num_layers):
        outs = []
        for direction in range(d):
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            w = [getattr(m, p + sfx) for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h = h0[layer * d + direction]
            steps = range(x.shape[0] - 1, -1, -1) if direction else range(x.shape[0])
            seq = [None] * x.shape[0]
            for t in steps:
                h = _cho_step(layer_in[t], h, *w)
                seq[t] = h
            outs.append(torch.stack(seq))
            h_n.append(h)
        layer_in = torch.cat(outs, dim=2)
    return {"output": layer_in, "h_n": torch.stack(h_n)}


def _cho_case(layers, bidir):
    def make():
        m = nn.GRU(IN, HID, num_layers=layers, bidirectional=bidir)
        d = 2 if bidir else 1
        inputs = {"x": randn(L, N, IN), "h0": randn(d * layers, N, HID, std=0.5)}
        return module_case(m, _cho_gru, inputs,
                           meta_str(module="GRU", reset_after=False, input_size=IN,
                                    hidden_size=HID, num_layers=layers, bidirectional=bidir,
                                    batch_first=False, h0=True, seq_len=L, batch=N,
                                    formula="n = tanh(x W_in^T + b_in + (r*h) W_hn^T + b_hn)"))
    return make


fixture("mod_gru_cho_l1_h0")(_cho_case(1, False))
fixture("mod_gru_cho_bidir_l2_h0")(_cho_case(2, True))


@fixture("mod_grucell_cho_h0")
def _cho_cell():
    m = nn.GRUCell(IN, HID)
    return module_case(
        m, lambda m, x, h0: _cho_step(x, h0, m.weight_ih, m.weight_hh, m.bias_ih, m.bias_hh),
        {"x": randn(N, IN), "h0": randn(N, HID, std=0.5)},
        meta_str(module="GRUCell", reset_after=False, input_size=IN, hidden_size=HID, h0=True,
                 batch=N))


def _seq_fn(kind):
    def fn(m, x, h0=None, c0=None):
        if kind == "lstm":
            out, (h_n, c_n) = m(x, (h0, c0)) if h0 is not None else m(x)
            return {"output": out, "h_n": h_n, "c_n": c_n}
        out, h_n = m(x, h0) if h0 is not None else m(x)
        return {"output": out, "h_n": h_n}
    return fn


@fixture("mod_rnn_relu_l2_h0")
def _rnn_relu():
    m = nn.RNN(IN, HID, num_layers=2, nonlinearity="relu")
    return module_case(m, _seq_fn("rnn"),
                       {"x": randn(L, N, IN), "h0": randn(2, N, HID, std=0.5)},
                       meta_str(module="RNN", nonlinearity="relu", input_size=IN,
                                hidden_size=HID, num_layers=2, h0=True, seq_len=L, batch=N))


@fixture("mod_lstm_nobias_bidir_l1")
def _lstm_nobias():
    m = nn.LSTM(IN, HID, bias=False, bidirectional=True)
    return module_case(m, _seq_fn("lstm"), {"x": randn(L, N, IN)},
                       meta_str(module="LSTM", bias=False, input_size=IN, hidden_size=HID,
                                num_layers=1, bidirectional=True, seq_len=L, batch=N))


@fixture("mod_gru_unbatched_bidir_l2_h0")
def _gru_unbatched():
    m = nn.GRU(IN, HID, num_layers=2, bidirectional=True)
    return module_case(m, _seq_fn("gru"),
                       {"x": randn(L, IN), "h0": randn(4, HID, std=0.5)},
                       meta_str(module="GRU", unbatched=True, input_size=IN, hidden_size=HID,
                                num_layers=2, bidirectional=True, h0=True, seq_len=L))


@fixture("mod_lstmcell_unbatched_h0")
def _lstmcell_unbatched():
    m = nn.LSTMCell(IN, HID)

    def fn(m, x, h0, c0):
        h, c = m(x, (h0, c0))
        return {"h": h, "c": c}
    return module_case(m, fn,
                       {"x": randn(IN), "h0": randn(HID, std=0.5), "c0": randn(HID, std=0.5)},
                       meta_str(module="LSTMCell", unbatched=True, input_size=IN,
                                hidden_size=HID, h0=True))


@fixture("mod_rnn_relucell_h0")
def _rnn_relucell():
    m = nn.RNNCell(IN, HID, nonlinearity="relu")
    return module_case(m, lambda m, x, h0: m(x, h0),
                       {"x": randn(N, IN), "h0": randn(N, HID, std=0.5)},
                       meta_str(module="RNNCell", nonlinearity="relu", input_size=IN,
                                hidden_size=HID, h0=True, batch=N))
