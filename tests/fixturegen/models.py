"""The tutorial models (models/*.c): the PyTorch classes of the tutorials the project started
from, written out with the tutorials' attribute names, at tiny sizes.

Every case runs right after torch.manual_seed(0) and builds its model first, so `param.*`
is PyTorch's default initialisation after manual_seed(0): the C tests check their
constructors against it (uniform draws bit for bit, the normal Embedding draws to 1e-6)
before the parity run. Inputs are drawn after the model; token ids are I64.
Dropout is 0 (the Transformer's), so train mode is deterministic.

Where a tutorial leaves something open, the choice is written next to the class:
- classification GRU: the tutorial builds `gru_layer` at module level, *before* the model, and indexes
  x[:, -1, :]: the GRU is batch_first here, and it is drawn before the Embedding (the
  tutorial's RNG order) while state_dict keeps the attribute order (embedding, gru, fc).
- classification LSTM: the tutorial's Keras Sequential(Embedding, LSTM, Dense) as the PyTorch twin of its
  GRUModel; the Dense softmax is left to the loss (logits out, like the GRU model).
- attention: the tutorial gives the attention formula and Keras snippets; this is the seq2seq it
  describes (GRU encoder, additive attention, GRU decoder with teacher forcing).
- Transformer: the tutorial's forward, plus the causal target mask (a decoder trained
  with teacher forcing needs it); no positional encoding, as in the tutorial.
"""

import torch
from torch import nn

from .common import fixture, meta_str, module_case, randint, randn

# ---------------------------------------------------------------------------------------
# the GRU and Transformer tutorials: GRUModel (sequence-first) and TransformerModel


class GRUSeqModel(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(GRUSeqModel, self).__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        # x shape: (seq_len, batch_size, input_size)
        output, _ = self.gru(x)
        # output shape: (seq_len, batch_size, hidden_size)
        output = self.fc(output[-1])
        # output shape: (batch_size, output_size)
        return output


class TransformerModel(nn.Module):
    def __init__(self, vocab_size, d_model, nhead, num_encoder_layers, num_decoder_layers,
                 dim_feedforward=2048, dropout=0.1):
        super(TransformerModel, self).__init__()
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout),
            num_encoder_layers)
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout),
            num_decoder_layers)
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.linear = nn.Linear(d_model, vocab_size)

    def forward(self, src, tgt):
        # src shape: (src_seq_len, batch_size)
        # tgt shape: (tgt_seq_len, batch_size)
        tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(0))
        src = self.embedding(src)
        tgt = self.embedding(tgt)
        src = self.encoder(src)
        tgt = self.decoder(tgt, src, tgt_mask=tgt_mask)
        output = self.linear(tgt)
        return output


@fixture("model_gru_seq_classifier", seed=0)
def _gru_seq_classifier():
    model = GRUSeqModel(3, 5, 4)
    inputs = {"x": randn(6, 2, 3)}
    return module_case(model, lambda m, x: m(x), inputs, meta_str(
        module="GRUModel (GRU sequence classifier)", input_size=3, hidden_size=5, output_size=4, seq_len=6,
        batch=2, layout="x (seq_len, batch, input_size)"))


def _transformer(perturb):
    def make():
        model = TransformerModel(7, 8, 2, 2, 2, dim_feedforward=16, dropout=0.0)
        if perturb:  # the stacks deep-copy their layer: make every parameter differ
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(randn(*p.shape, std=0.05))
        inputs = {"src": randint(7, 5, 2), "tgt": randint(7, 4, 2)}
        return module_case(model, lambda m, src, tgt: m(src, tgt), inputs, meta_str(
            module="TransformerModel (Transformer encoder-decoder)", vocab_size=7, d_model=8, nhead=2,
            num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16, dropout=0.0,
            tgt_mask="causal (generate_square_subsequent_mask)",
            params="perturbed by N(0, 0.05) after init" if perturb else "default init",
            layout="src (S, N), tgt (T, N) sequence-first"))
    return make


fixture("model_transformer", seed=0)(_transformer(False))
fixture("model_transformer_perturbed", seed=0)(_transformer(True))

# ---------------------------------------------------------------------------------------
# the step-by-step GRU tutorial: one GRU step per call, LogSoftmax, initHidden


class GRUStepwise(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(GRUStepwise, self).__init__()
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)
        self.softmax = nn.LogSoftmax(dim=1)

    def forward(self, input, hidden):
        # the tutorial's view(1, 1, -1), for a batch of N rows: (1, N, input_size)
        n = input.size(0) if input.dim() > 1 else 1
        output, hidden = self.gru(input.view(1, n, -1), hidden)
        output = self.fc(output.view(n, -1))
        output = self.softmax(output)
        return output, hidden

    def initHidden(self, batch=1):
        return torch.zeros(1, batch, self.hidden_size)


def _stepwise(batch, give_h0):
    def make():
        model = GRUStepwise(4, 5, 3)
        inputs = {"x": randn(3, batch, 4)}  # three steps, each input (batch, input_size)
        if give_h0:
            inputs["h0"] = randn(1, batch, 5, std=0.5)

        def fn(m, x, h0=None):
            hidden = h0 if h0 is not None else m.initHidden(batch)
            outs = []
            for i in range(x.size(0)):
                output, hidden = m(x[i], hidden)
                outs.append(output)
            return {"output": torch.stack(outs), "hidden": hidden}

        return module_case(model, fn, inputs, meta_str(
            module="GRU (one step per call, LogSoftmax)", input_size=4, hidden_size=5, output_size=3, steps=3,
            batch=batch, h0="in.h0" if give_h0 else "initHidden()",
            note="out.output[i] = log-probabilities of step i; out.hidden after the last step"))
    return make


fixture("model_gru_stepwise", seed=0)(_stepwise(1, False))
fixture("model_gru_stepwise_batch2_h0", seed=0)(_stepwise(2, True))

# ---------------------------------------------------------------------------------------
# the attention tutorial: GRU encoder, additive attention, GRU decoder (seq2seq)


class AdditiveAttention(nn.Module):
    """e_t = v^T tanh(W_a h_t + U_a s_{t-1} + b_a), alpha = softmax(e), c = sum alpha_t h_t"""

    def __init__(self, enc_dim, dec_dim, attn_dim):
        super(AdditiveAttention, self).__init__()
        self.W_a = nn.Linear(enc_dim, attn_dim)
        self.U_a = nn.Linear(dec_dim, attn_dim, bias=False)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def forward(self, h, s):
        e = self.v(torch.tanh(self.W_a(h) + self.U_a(s).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, dim=1)
        context = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)
        return context, alpha


class GRUAttention(nn.Module):
    def __init__(self, src_vocab, tgt_vocab, embedding_dim, hidden_size, attn_dim):
        super(GRUAttention, self).__init__()
        self.src_embedding = nn.Embedding(src_vocab, embedding_dim)
        self.encoder = nn.GRU(embedding_dim, hidden_size, batch_first=True)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embedding_dim)
        self.attention = AdditiveAttention(hidden_size, hidden_size, attn_dim)
        self.decoder = nn.GRUCell(embedding_dim + hidden_size, hidden_size)
        self.fc = nn.Linear(2 * hidden_size, tgt_vocab)

    def step(self, y, s, enc):
        context, alpha = self.attention(enc, s)
        s = self.decoder(torch.cat([y, context], dim=1), s)
        return self.fc(torch.cat([s, context], dim=1)), s, alpha

    def forward(self, src, tgt_in):
        enc, h = self.encoder(self.src_embedding(src))   # (N, S, H), (1, N, H)
        s = h[0]
        y = self.tgt_embedding(tgt_in)                    # (N, T, E): teacher forcing
        logits, weights = [], []
        for i in range(tgt_in.size(1)):
            out, s, alpha = self.step(y[:, i], s, enc)
            logits.append(out)
            weights.append(alpha)
        return torch.stack(logits, 1), torch.stack(weights, 1)

    @torch.no_grad()
    def greedy(self, src, bos, max_len):
        enc, h = self.encoder(self.src_embedding(src))
        s = h[0]
        y = torch.full((src.size(0),), bos, dtype=torch.int64)
        tokens = []
        for _ in range(max_len):
            out, s, _ = self.step(self.tgt_embedding(y), s, enc)
            y = out.argmax(dim=1)
            tokens.append(y)
        return torch.stack(tokens, 1)


@fixture("model_gru_attention", seed=0)
def _gru_attention():
    model = GRUAttention(9, 7, 4, 5, 6)
    inputs = {"src": randint(9, 2, 6), "tgt_in": randint(7, 2, 4)}

    def fn(m, src, tgt_in):
        logits, weights = m(src, tgt_in)
        return {"logits": logits, "weights": weights, "greedy": m.greedy(src, 0, 5)}

    return module_case(model, fn, inputs, meta_str(
        module="GRUAttention (GRU encoder, additive attention, GRU decoder)", src_vocab=9, tgt_vocab=7, embedding_dim=4,
        hidden_size=5, attn_dim=6, bos=0, greedy_max_len=5,
        layout="src (N, S), tgt_in (N, T) batch-first; logits (N, T, V), weights (N, T, S)",
        decoder="context = attention(enc, s), s = GRUCell([emb(y); context], s), "
                "logits = fc([s; context]); s_0 = encoder h_n"))

# ---------------------------------------------------------------------------------------
# the language-model tutorial: GRU language model, hidden carried across batches


class GRULanguageModel(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_dim, num_layers):
        super(GRULanguageModel, self).__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.gru = nn.GRU(embedding_dim, hidden_dim, num_layers)
        self.fc = nn.Linear(hidden_dim, vocab_size)

    def forward(self, x, hidden):
        embedded = self.embedding(x)
        output, hidden = self.gru(embedded, hidden)
        output = self.fc(output)
        return output, hidden


@fixture("model_gru_lm", seed=0)
def _gru_lm():
    model = GRULanguageModel(7, 4, 5, 2)
    inputs = {"x1": randint(7, 5, 2), "x2": randint(7, 5, 2), "h0": randn(2, 2, 5, std=0.5)}

    def fn(m, x1, x2, h0):
        logits1, hidden1 = m(x1, h0)
        logits2, hidden2 = m(x2, hidden1.detach())  # truncated BPTT: batch 2 stops here
        return {"logits1": logits1, "hidden1": hidden1, "logits2": logits2, "hidden2": hidden2}

    return module_case(model, fn, inputs, meta_str(
        module="GRU language model", vocab_size=7, embedding_dim=4, hidden_dim=5,
        num_layers=2, seq_len=5, batch=2,
        note="two batches; the second starts from hidden1.detach(), so grad.h0 comes from "
             "batch 1 only and the parameter grads from both"))

# ---------------------------------------------------------------------------------------
# the classification tutorial: GRU and LSTM classifiers (Embedding + RNN batch_first + Linear on the last step)


class GRUClassifier(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_size, num_classes):
        super(GRUClassifier, self).__init__()
        # the tutorial's `gru_layer = nn.GRU(...)` comes before the model: drawn first
        gru_layer = nn.GRU(input_size=embedding_dim, hidden_size=hidden_size, batch_first=True)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.gru = gru_layer
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        x = self.embedding(x)
        x, _ = self.gru(x)
        x = self.fc(x[:, -1, :])
        return x


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_size, num_classes):
        super(LSTMClassifier, self).__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        x = self.embedding(x)
        x, _ = self.lstm(x)
        x = self.fc(x[:, -1, :])
        return x


def _classifier(cls, desc):
    def make():
        model = cls(11, 4, 5, 3)
        inputs = {"x": randint(11, 2, 6)}
        return module_case(model, lambda m, x: m(x), inputs, meta_str(
            module=desc, vocab_size=11, embedding_dim=4, hidden_size=5, num_classes=3,
            batch=2, seq_len=6, layout="x (batch, seq_len) token ids, batch_first"))
    return make


fixture("model_gru_classifier", seed=0)(_classifier(GRUClassifier, "GRUModel (GRU text classifier)"))
fixture("model_lstm_classifier", seed=0)(_classifier(LSTMClassifier, "LSTM text classifier"))
