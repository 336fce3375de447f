"""A plain PyTorch state_dict saved as safetensors, keys as PyTorch names them (no
naming-convention prefixes: meta state_dict=1). The C side loads it with tg_params_load
into a model built from tapegrad modules (tests/test_params.c)."""

import torch
from torch import nn

from fixturegen.common import fixture


class GRUClassifier(nn.Module):
    def __init__(self, vocab, emb, hidden, classes):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.gru = nn.GRU(emb, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)


@fixture("state_dict_gru_classifier", seed=0)
def _gru_classifier():
    model = GRUClassifier(11, 4, 5, 3)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return sd, {"state_dict": "1", "keys": ",".join(sd), "format": "pt"}
