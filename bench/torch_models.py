#!/usr/bin/python3
"""bench/torch_models.py — the PyTorch twins of tapegrad's benchmark programs.

    /usr/bin/python3 bench/torch_models.py --config NAME [--threads N] [--quick]
        [--warmup N] [--rounds N] [--round-s S] [--seed N]

One config per process (peak RSS is the process's), the same sizes, the same data (the
LCG of bench_common.c), the same initialisation (torch.manual_seed(seed); tapegrad draws
its parameters as PyTorch does), the same step (forward, cross entropy, backward,
Adam.step, zero_grad; or the forward alone under torch.no_grad() for *_infer; forward +
backward for the *_layer configs) and the same timing loop as bench_common.c, printing the
same "result key=value ..." line.

Threads: this script only calls torch.set_num_threads(--torch-threads, default --threads).
The OpenBLAS pool and OpenMP's wait policy are fixed when the libraries load, so the
caller (scripts/bench.sh via bench/run_bench.py) sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS
and OMP_WAIT_POLICY in the environment and, at 2 threads, runs both of PyTorch's good
settings and keeps the better.

Configs: gru_cls, lstm_cls, gru_lm, char_lm, seq2seq_attn, transformer, tiny_cell,
gru_cls_infer, gru_lm_infer, gru_cls_layer, lstm_cls_layer, gru_lm_layer0, gru_lm_layer1.
"""
import argparse
import os
import resource
import statistics
import sys
import time


def peak_rss_kb():
    """VmHWM, this process's own peak (ru_maxrss carries the parent's across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


MASK = (1 << 64) - 1


class LCG:
    """bench_common.c's bench_lcg, bit for bit."""

    def __init__(self, seed):
        self.state = (seed * 0x9E3779B97F4A7C15 + 12345) & MASK

    def below(self, n):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & MASK
        return (self.state >> 33) % n


def rand_index(torch, g, n, *shape):
    count = 1
    for s in shape:
        count *= s
    return torch.tensor([g.below(n) for _ in range(count)], dtype=torch.int64).reshape(*shape)


def rand_tensor(torch, g, *shape):
    count = 1
    for s in shape:
        count *= s
    vals = [g.below(1 << 21) / float(1 << 20) - 1.0 for _ in range(count)]
    return torch.tensor(vals, dtype=torch.float32).reshape(*shape)


NBATCH = 4


def build(torch, name, seed, shard=None, wrap=None):
    """Returns step() -> loss (a float) for config `name`, with the model as step.model.

    Data parallelism (bench/torch_ddp.py; gru_cls, char_lm and transformer): shard=(r, N)
    keeps rank r's contiguous B/N of each batch of the same global data (the batch dimension:
    rows of (B, T) tokens, columns of sequence-first (T, B)); wrap(model) returns the module
    the forward goes through (a DistributedDataParallel)."""
    from torch import nn
    import torch.nn.functional as F

    torch.manual_seed(seed)
    g = LCG(seed)
    rank, world = shard if shard else (0, 1)

    def rows(t):
        """Rank `rank`'s share of the first (batch) dimension."""
        n = t.shape[0] // world
        return t[rank * n:(rank + 1) * n].contiguous()

    def cols(t, steps):
        """Rank `rank`'s share of the batch dimension of sequence-first (steps, B) data, given
        as (steps, B) or flattened (steps·B)."""
        m = t.reshape(steps, -1)
        n = m.shape[1] // world
        part = m[:, rank * n:(rank + 1) * n].contiguous()
        return part.reshape(-1) if t.dim() == 1 else part

    def training(model, forward_loss):
        opt = torch.optim.Adam(model.parameters())
        state = {"i": 0}

        def step():
            b = state["i"] % NBATCH
            state["i"] += 1
            opt.zero_grad()
            loss = forward_loss(b)
            loss.backward()
            opt.step()
            return loss.item()
        step.model = model
        return step

    def inference(forward_loss):
        state = {"i": 0}

        def step():
            b = state["i"] % NBATCH
            state["i"] += 1
            with torch.no_grad():
                return forward_loss(b).item()
        return step

    base = name[:-len("_infer")] if name.endswith("_infer") else name
    infer = name.endswith("_infer")

    if base in ("gru_cls", "lstm_cls"):
        V, E, H, C, B, T = 5000, 128, 256, 10, 64, 50

        class GRUModel004(nn.Module):
            def __init__(self):
                super().__init__()
                gru_layer = nn.GRU(E, H, batch_first=True)  # the tutorial builds it first
                self.embedding = nn.Embedding(V, E)
                self.gru = gru_layer
                self.fc = nn.Linear(H, C)

            def forward(self, x):
                x = self.embedding(x)
                x, _ = self.gru(x)
                return self.fc(x[:, -1, :])

        class LSTMModel004(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(V, E)
                self.lstm = nn.LSTM(E, H, batch_first=True)
                self.fc = nn.Linear(H, C)

            def forward(self, x):
                x = self.embedding(x)
                x, _ = self.lstm(x)
                return self.fc(x[:, -1, :])

        model = GRUModel004() if base == "gru_cls" else LSTMModel004()
        net = wrap(model) if wrap else model
        tokens, labels = [], []
        for _ in range(NBATCH):
            tokens.append(rows(rand_index(torch, g, V, B, T)))
            labels.append(rows(rand_index(torch, g, C, B)))

        def fl(b):
            return F.cross_entropy(net(tokens[b]), labels[b])
        return inference(fl) if infer else training(model, fl)

    if base in ("gru_lm", "char_lm"):
        if base == "gru_lm":
            V, E, H, L, B, T = 10000, 300, 512, 2, 32, 35
        else:
            V, E, H, L, B, T = 65, 64, 256, 2, 32, 64

        class GRU003(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(V, E)
                self.gru = nn.GRU(E, H, L)
                self.fc = nn.Linear(H, V)

            def forward(self, x, hidden):
                output, hidden = self.gru(self.embedding(x), hidden)
                return self.fc(output), hidden

        model = GRU003()
        net = wrap(model) if wrap else model
        xs, ys = [], []
        for _ in range(NBATCH):
            xs.append(cols(rand_index(torch, g, V, T, B), T))
            ys.append(cols(rand_index(torch, g, V, T * B), T))
        hid = {"h": torch.zeros(L, B // world, H)}

        def fl(b):
            logits, hidden = net(xs[b], hid["h"])
            hid["h"] = hidden.detach()
            return F.cross_entropy(logits.reshape(-1, V), ys[b])
        return inference(fl) if infer else training(model, fl)

    if base == "seq2seq_attn":
        V, E, H, A, S, T, N = 1000, 128, 256, 256, 20, 20, 64

        class AdditiveAttention(nn.Module):
            def __init__(self):
                super().__init__()
                self.W_a = nn.Linear(H, A)
                self.U_a = nn.Linear(H, A, bias=False)
                self.v = nn.Linear(A, 1, bias=False)

            def forward(self, h, h_proj, s):
                # h_proj = W_a(h), computed once per sequence (as tapegrad does)
                e = self.v(torch.tanh(h_proj + self.U_a(s).unsqueeze(1))).squeeze(2)
                alpha = torch.softmax(e, dim=1)
                context = torch.bmm(alpha.unsqueeze(1), h).squeeze(1)
                return context, alpha

        class GRUAttention(nn.Module):
            def __init__(self):
                super().__init__()
                self.src_embedding = nn.Embedding(V, E)
                self.encoder = nn.GRU(E, H, batch_first=True)
                self.tgt_embedding = nn.Embedding(V, E)
                self.attention = AdditiveAttention()
                self.decoder = nn.GRUCell(E + H, H)
                self.fc = nn.Linear(2 * H, V)

            def forward(self, src, tgt_in):
                enc, h = self.encoder(self.src_embedding(src))
                enc_proj = self.attention.W_a(enc)
                s = h[0]
                y = self.tgt_embedding(tgt_in)
                logits, weights = [], []
                for i in range(tgt_in.size(1)):
                    context, alpha = self.attention(enc, enc_proj, s)
                    s = self.decoder(torch.cat([y[:, i], context], dim=1), s)
                    logits.append(self.fc(torch.cat([s, context], dim=1)))
                    weights.append(alpha)
                return torch.stack(logits, 1), torch.stack(weights, 1)

        model = GRUAttention()
        srcs, tins, touts = [], [], []
        for _ in range(NBATCH):
            srcs.append(rand_index(torch, g, V, N, S))
            tins.append(rand_index(torch, g, V, N, T))
            touts.append(rand_index(torch, g, V, N * T))

        def fl(b):
            logits, _ = model(srcs[b], tins[b])
            return F.cross_entropy(logits.reshape(-1, V), touts[b])
        return training(model, fl)

    if base == "transformer":
        V, D, NH, FF, LE, LD, S, T, N = 1000, 128, 4, 512, 2, 2, 32, 32, 32

        class TransformerModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = nn.TransformerEncoder(
                    nn.TransformerEncoderLayer(D, NH, FF, 0.1), LE)
                self.decoder = nn.TransformerDecoder(
                    nn.TransformerDecoderLayer(D, NH, FF, 0.1), LD)
                self.embedding = nn.Embedding(V, D)
                self.linear = nn.Linear(D, V)

            def forward(self, src, tgt):
                tgt_mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(0))
                src = self.encoder(self.embedding(src))
                tgt = self.decoder(self.embedding(tgt), src, tgt_mask=tgt_mask)
                return self.linear(tgt)

        model = TransformerModel()
        net = wrap(model) if wrap else model
        srcs, tins, touts = [], [], []
        for _ in range(NBATCH):
            srcs.append(cols(rand_index(torch, g, V, S, N), S))
            tins.append(cols(rand_index(torch, g, V, T, N), T))
            touts.append(cols(rand_index(torch, g, V, T * N), T))

        def fl(b):
            return F.cross_entropy(net(srcs[b], tins[b]).reshape(-1, V), touts[b])
        return training(model, fl)

    if base == "tiny_cell":
        I, H, C, T = 16, 32, 10, 20

        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = nn.GRUCell(I, H)
                self.fc = nn.Linear(H, C)

            def forward(self, x):
                h = None
                for i in range(x.size(0)):
                    h = self.cell(x[i], h)
                return self.fc(h)

        model = Tiny()
        xs, labels = [], []
        for _ in range(NBATCH):
            xs.append(rand_tensor(torch, g, T, 1, I))
            labels.append(rand_index(torch, g, C, 1))

        def fl(b):
            return F.cross_entropy(model(xs[b]), labels[b])
        return training(model, fl)

    layers = {"gru_cls_layer": ("gru", 128, 256, 64, 50), "lstm_cls_layer": ("lstm", 128, 256, 64, 50),
              "gru_lm_layer0": ("gru", 300, 512, 32, 35), "gru_lm_layer1": ("gru", 512, 512, 32, 35)}
    if base in layers:
        kind, I, H, B, T = layers[base]
        layer = nn.GRU(I, H) if kind == "gru" else nn.LSTM(I, H)
        x = rand_tensor(torch, g, T, B, I).requires_grad_(True)
        dy = rand_tensor(torch, g, T, B, H)

        def step():
            layer.zero_grad()
            x.grad = None
            out, _ = layer(x)
            out.backward(dy)
            return out[-1, -1, -1].item() + x.grad.view(-1)[0].item()
        return step

    raise SystemExit(f"torch_models.py: unknown config '{name}'")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads (default: --threads)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--round-s", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setting", default="", help="a label for the thread setting (printed)")
    args = ap.parse_args()
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 3)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    round_s = args.round_s if args.round_s is not None else (0.2 if args.quick else 1.0)
    warmup = max(2, warmup)

    import torch
    torch.set_num_threads(args.torch_threads if args.torch_threads is not None else args.threads)
    step = build(torch, args.config, args.seed)

    loss0 = step()
    last = 0.0
    for _ in range(1, warmup):
        t0 = time.perf_counter()
        step()
        last = time.perf_counter() - t0
    per_round = max(1, int(-(-round_s // max(last, 1e-9))))
    ms, cpu = [], []
    loss = loss0
    for _ in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(per_round):
            loss = step()
        ms.append(1e3 * (time.perf_counter() - t0) / per_round)
        cpu.append(1e3 * (time.process_time() - c0) / per_round)
    ms.sort()
    cpu.sort()
    rss = peak_rss_kb()
    print(f"# torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, {per_round} steps per round")
    print(f"result config={args.config} impl=torch threads={args.threads} ms={ms[0]:.4f} "
          f"ms_median={statistics.median(ms):.4f} cpu_ms={cpu[0]:.4f} steps={per_round * rounds} "
          f"setting={args.setting or '-'} peak_rss_kb={rss} loss0={loss0:.6f} loss={loss:.6f}",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
