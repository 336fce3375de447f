"""RNG streams and default initialisations.

The C side reproduces torch.manual_seed + uniform_/normal_, so
these cases store what PyTorch draws right after a seed, the raw MT19937 words, and the
default parameters of modules built right after torch.manual_seed(0).
"""

import torch
from torch import nn

from .common import fixture, meta_str, state_dict_tensors


# ---------------------------------------------------------------------------------------
# a plain MT19937 (Matsumoto & Nishimura's init_genrand / genrand_int32)


class MT19937:
    def __init__(self, seed):
        self.mt = [0] * 624
        self.mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            prev = self.mt[i - 1]
            self.mt[i] = (1812433253 * (prev ^ (prev >> 30)) + i) & 0xFFFFFFFF
        self.index = 624

    def _twist(self):
        mt = self.mt
        for i in range(624):
            y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
            mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
        self.index = 0

    def next_u32(self):
        if self.index >= 624:
            self._twist()
        y = self.mt[self.index]
        self.index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF


def mt_words(seed, n):
    g = MT19937(seed)
    return [g.next_u32() for _ in range(n)]


def _check_against_torch(seed, n=700):
    """torch's float32 uniform_(0, 1) must be (r & 0xFFFFFF) * 2^-24 of these words, one
    word per element (700 > 624 also crosses the first twist)."""
    words = mt_words(seed, n)
    torch.manual_seed(seed)
    got = torch.empty(n).uniform_(0, 1)
    want = torch.tensor([(w & 0xFFFFFF) * 2.0**-24 for w in words], dtype=torch.float64)
    if not torch.equal(got.double(), want):
        raise AssertionError(f"MT19937 words for seed {seed} do not give torch's uniform_")


@fixture("rng_mt19937", seed=0)
def _mt():
    assert mt_words(0, 1)[0] == 2357136044, "MT19937 self-test failed"
    tensors = {}
    for s in (0, 42, 5489):
        _check_against_torch(s)
        tensors[f"mt.seed{s}"] = torch.tensor(mt_words(s, 10), dtype=torch.int64)
    return tensors, meta_str(op="mt19937", count=10, seeds="0,42,5489",
                             note="first 10 genrand_int32 outputs after init_genrand(seed)")


def _draws(seed):
    """Every tensor is drawn right after torch.manual_seed(seed); the seq_* pair is drawn
    one after the other after a single manual_seed(seed)."""
    t = {}
    torch.manual_seed(seed)
    t["out.uniform_37"] = torch.empty(37).uniform_(-0.5, 1.5)
    torch.manual_seed(seed)
    t["out.uniform_5x7"] = torch.empty(5, 7).uniform_(0, 1)
    torch.manual_seed(seed)
    t["out.normal_40"] = torch.empty(40).normal_(0, 1)
    torch.manual_seed(seed)
    t["out.normal_3x16"] = torch.empty(3, 16).normal_(2, 0.5)
    torch.manual_seed(seed)
    t["out.seq_uniform_37"] = torch.empty(37).uniform_(-0.5, 1.5)
    t["out.seq_normal_3x16"] = torch.empty(3, 16).normal_(2, 0.5)
    return t


for _s in (0, 42):
    def _make(s=_s):
        return _draws(s), meta_str(
            op="manual_seed+uniform_/normal_", rng_seed=s,
            uniform_37="manual_seed(s); empty(37).uniform_(-0.5, 1.5)",
            uniform_5x7="manual_seed(s); empty(5, 7).uniform_(0, 1)",
            normal_40="manual_seed(s); empty(40).normal_(0, 1)",
            normal_3x16="manual_seed(s); empty(3, 16).normal_(2, 0.5)",
            seq="manual_seed(s); seq_uniform_37 then seq_normal_3x16 from the same stream")
    fixture(f"rng_seed{_s}", seed=_s)(_make)


# ---------------------------------------------------------------------------------------
# default initialisations after torch.manual_seed(0)


def _init_case(ctor, description):
    def make():
        torch.manual_seed(0)
        m = ctor()
        tensors, keys = state_dict_tensors(m)
        return tensors, meta_str(module=description, keys=keys, init_seed=0)
    return make


_INITS = {
    "init_linear_7_5": (lambda: nn.Linear(7, 5), "nn.Linear(7, 5)"),
    "init_gru_4_6": (lambda: nn.GRU(4, 6), "nn.GRU(4, 6)"),
    "init_lstm_4_6_l2": (lambda: nn.LSTM(4, 6, num_layers=2), "nn.LSTM(4, 6, num_layers=2)"),
    "init_mha_8_2": (lambda: nn.MultiheadAttention(8, 2), "nn.MultiheadAttention(8, 2)"),
    "init_mha_8_2_options": (lambda: nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=6, vdim=5),
                             "nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=6, vdim=5)"),
    "init_embedding_10_4": (lambda: nn.Embedding(10, 4), "nn.Embedding(10, 4)"),
    "init_embedding_10_4_pad1": (lambda: nn.Embedding(10, 4, padding_idx=1),
                                 "nn.Embedding(10, 4, padding_idx=1)"),
}
for _name, (_ctor, _desc) in _INITS.items():
    fixture(_name, seed=0)(_init_case(_ctor, _desc))
