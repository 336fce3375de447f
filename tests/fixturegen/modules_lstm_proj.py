"""nn.LSTM with projections (proj_size): h_t = W_hr (o_t * tanh(c_t)), so h0, h_n and the
output have proj_size features (2 * proj_size bidirectional) and c has hidden_size.

Sizes are chosen so that no two of them coincide: input_size 3, hidden_size 5,
proj_size 2, L=4, N=2 (a layer after the first takes D * 2 = 2 or 4 features, neither 3
nor 5). The C side is tests/test_lstm_proj.c."""

import torch
from torch import nn

from .common import fixture, meta_str, module_case, randn, state_dict_tensors

IN, HID, PROJ, L, N = 3, 5, 2, 4, 2

_VARIANTS = {
    # suffix: (num_layers, bidirectional, batch_first, give h0/c0, bias, batched)
    "l1": (1, False, False, False, True, True),
    "l1_h0": (1, False, False, True, True, True),
    "l2_h0": (2, False, False, True, True, True),
    "bidir_l1": (1, True, False, False, True, True),
    "bidir_l2_h0": (2, True, False, True, True, True),
    "batch_first_bidir_l2": (2, True, True, False, True, True),
    "nobias_l2_h0": (2, False, False, True, False, True),
    "unbatched_bidir_l2_h0": (2, True, False, True, True, False),
}


def _case(layers, bidir, bf, h0, bias, batched):
    def make():
        m = nn.LSTM(IN, HID, num_layers=layers, bias=bias, batch_first=bf, bidirectional=bidir,
                    proj_size=PROJ)
        d = 2 if bidir else 1
        lead = (N,) if batched else ()
        x = randn(N, L, IN) if bf and batched else randn(L, *lead, IN)
        inputs = {"x": x}
        if h0:
            inputs["h0"] = randn(d * layers, *lead, PROJ, std=0.5)
            inputs["c0"] = randn(d * layers, *lead, HID, std=0.5)

        def fn(m, x, h0=None, c0=None):
            out, (h_n, c_n) = m(x, (h0, c0)) if h0 is not None else m(x)
            return {"output": out, "h_n": h_n, "c_n": c_n}

        meta = meta_str(module="LSTM", input_size=IN, hidden_size=HID, proj_size=PROJ,
                        num_layers=layers, bidirectional=bidir, batch_first=bf, bias=bias,
                        h0=h0, batched=batched, seq_len=L, batch=N if batched else 0)
        return module_case(m, fn, inputs, meta)
    return make


for _suffix, _v in _VARIANTS.items():
    fixture(f"mod_lstm_proj_{_suffix}")(_case(*_v))


@fixture("init_lstm_proj_4_6_p3_bidir_l2", seed=0)
def _init():
    """PyTorch's default init after manual_seed(0): every parameter U(+-1/sqrt(6)), drawn in
    registration order (weight_hr_l<k> after each layer's and direction's biases)."""
    torch.manual_seed(0)
    m = nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)
    tensors, keys = state_dict_tensors(m)
    return tensors, meta_str(module="nn.LSTM(4, 6, num_layers=2, bidirectional=True, "
                                    "proj_size=3)", keys=keys, init_seed=0)


@fixture("state_dict_lstm_proj", seed=0)
def _state_dict():
    """A plain state_dict (PyTorch's keys, no prefixes), as torch.save would hold it."""
    m = nn.LSTM(IN, HID, num_layers=2, bidirectional=True, proj_size=PROJ)
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    return sd, {"state_dict": "1", "keys": ",".join(sd), "format": "pt",
                "module": f"nn.LSTM({IN}, {HID}, num_layers=2, bidirectional=True, "
                          f"proj_size={PROJ})"}
