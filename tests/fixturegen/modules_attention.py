"""Attention modules: nn.MultiheadAttention, TransformerEncoderLayer / DecoderLayer, the
encoder and decoder stacks, nn.Transformer. E = d_model = 8, 2 heads, feed-forward 16,
dropout 0, eval mode. Sequence-first shapes unless the case says batch_first:
query/tgt L=3 or 4, key/value/src S=4 or 5, batch N=2.

Masks: float masks (additive, may hold -inf) are F32 inputs without gradient; bool masks
(True = not allowed / padded) are stored as I64 0/1 and listed in meta "bool"."""

import torch
from torch import nn

from .common import fixture, meta_str, module_case, randn

E, H, FF, N = 8, 2, 16, 2


def causal(n):
    return nn.Transformer.generate_square_subsequent_mask(n)


def kpm(n, s, padded):
    """(n, s) bool key-padding mask; padded[i] trailing positions of batch i are True."""
    m = torch.zeros(n, s, dtype=torch.bool)
    for i, p in enumerate(padded):
        if p:
            m[i, s - p:] = True
    return m


def _seq(length, bf, features=E):
    return randn(N, length, features) if bf else randn(length, N, features)


_MASKS = ("attn_mask", "key_padding_mask", "src_mask", "tgt_mask", "memory_mask",
          "src_key_padding_mask", "tgt_key_padding_mask", "memory_key_padding_mask")

# ---------------------------------------------------------------------------------------
# nn.MultiheadAttention(8, 2)


def _mha(self_attn, bf=False, attn_mask=None, key_padding=None, L=3, S=4, options=None,
         average=True):
    """options: the constructor's kdim, vdim, add_bias_kv, add_zero_attn (stored in meta, and
    then every parameter is perturbed so that the zero-initialised biases are not zero)."""
    options = options or {}

    def make():
        m = nn.MultiheadAttention(E, H, batch_first=bf, **options).eval()
        if options:
            with torch.no_grad():
                for p in m.parameters():
                    p.add_(randn(*p.shape, std=0.1))
        kdim, vdim = options.get("kdim") or E, options.get("vdim") or E
        if self_attn:
            inputs = {"x": _seq(L, bf)}
        else:
            inputs = {"query": _seq(L, bf), "key": _seq(S, bf, kdim), "value": _seq(S, bf, vdim)}
        mask_desc = "none"
        if attn_mask is not None:
            inputs["attn_mask"], mask_desc = attn_mask()
        kpm_desc = "in.key_padding_mask" if key_padding else "none"
        if callable(key_padding):
            inputs["key_padding_mask"], kpm_desc = key_padding()
        elif key_padding is not None:
            inputs["key_padding_mask"] = kpm(N, L if self_attn else S, key_padding)

        def fn(m, x=None, query=None, key=None, value=None, attn_mask=None,
               key_padding_mask=None):
            if x is not None:
                query = key = value = x
            out, w = m(query, key, value, attn_mask=attn_mask,
                       key_padding_mask=key_padding_mask, need_weights=True,
                       average_attn_weights=average)
            return {"output": out, "weights": w}

        extra = {}
        if options:
            extra = dict(kdim=kdim, vdim=vdim, add_bias_kv=options.get("add_bias_kv", False),
                         add_zero_attn=options.get("add_zero_attn", False),
                         note="every parameter perturbed by N(0, 0.1^2) after construction")
        return module_case(m, fn, inputs, meta_str(
            module="MultiheadAttention", embed_dim=E, num_heads=H, batch_first=bf,
            self_attention=self_attn, attn_mask=mask_desc,
            key_padding_mask=kpm_desc,
            need_weights=True, average_attn_weights=average,
            inputs="query=key=value=in.x" if self_attn else "in.query,in.key,in.value",
            **extra), const=_MASKS)
    return make


def _causal_mask(n):
    return lambda: (causal(n), "float causal (generate_square_subsequent_mask)")


def _bool_mask():
    m = torch.tensor([[False, True, False, False],
                      [False, False, True, True],
                      [True, False, False, False]])
    return m, "bool (L, S), True = not allowed"


def _per_head_mask():
    return randn(N * H, 3, 4), "float (N*heads, L, S), index n*heads + h, random finite"


def _per_head_bool_mask():
    m = torch.rand(N * H, 3, 4) < 0.4
    for row in m.view(-1, 4):  # keep one key of every row (an all-masked row gives NaN)
        if row.all():
            row[torch.randint(0, 4, ())] = False
    return m, "bool (N*heads, L, S), index n*heads + h, True = not allowed, random per head"


def _float_kpm():
    """(N, S) float, added to the scores of every head and query (PyTorch 1.13 adds it only
    when there is no attn_mask: with a float attn_mask it fails, with a bool one it is read
    as bool)."""
    m = randn(N, 4) * 0.5
    m[0, 3] = m[1, 1] = float("-inf")
    return m, "in.key_padding_mask float (N, S), additive, finite except two -inf"


fixture("mod_mha")(_mha(False))
fixture("mod_mha_batch_first")(_mha(False, bf=True))
fixture("mod_mha_self")(_mha(True, L=4))
fixture("mod_mha_self_causal")(_mha(True, attn_mask=_causal_mask(4), L=4))
fixture("mod_mha_key_padding")(_mha(False, key_padding=(1, 2)))
fixture("mod_mha_self_causal_kpm_batch_first")(
    _mha(True, bf=True, attn_mask=_causal_mask(4), key_padding=(0, 1), L=4))
fixture("mod_mha_bool_mask")(_mha(False, attn_mask=_bool_mask))
fixture("mod_mha_per_head_mask")(_mha(False, attn_mask=_per_head_mask))
fixture("mod_mha_per_head_bool_mask")(_mha(False, attn_mask=_per_head_bool_mask))
fixture("mod_mha_float_key_padding")(_mha(False, key_padding=_float_kpm))
# the constructor's options and per-head weights
fixture("mod_mha_kdim_vdim")(_mha(False, options=dict(kdim=6, vdim=5)))
fixture("mod_mha_per_head_weights")(_mha(False, key_padding=(1, 0), average=False))
fixture("mod_mha_bias_kv_masks")(
    _mha(False, attn_mask=_bool_mask, key_padding=(1, 2), options=dict(add_bias_kv=True)))
fixture("mod_mha_zero_attn")(
    _mha(False, attn_mask=_per_head_mask, key_padding=(0, 1), options=dict(add_zero_attn=True)))
fixture("mod_mha_all_options_batch_first")(
    _mha(False, bf=True, attn_mask=_per_head_bool_mask, key_padding=(2, 1), average=False,
         options=dict(kdim=6, vdim=5, add_bias_kv=True, add_zero_attn=True)))

# ---------------------------------------------------------------------------------------
# TransformerEncoderLayer / TransformerDecoderLayer (d_model 8, nhead 2, ff 16, dropout 0)


def _enc_layer(act, norm_first, bf=False, masks=False):
    def make():
        m = nn.TransformerEncoderLayer(E, H, dim_feedforward=FF, dropout=0.0, activation=act,
                                       batch_first=bf, norm_first=norm_first).eval()
        inputs = {"src": _seq(5, bf)}
        if masks:
            inputs["src_mask"] = causal(5)
            inputs["src_key_padding_mask"] = kpm(N, 5, (0, 2))
        return module_case(m, lambda m, src, src_mask=None, src_key_padding_mask=None:
                           m(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask),
                           inputs, meta_str(module="TransformerEncoderLayer", d_model=E,
                                            nhead=H, dim_feedforward=FF, dropout=0.0,
                                            activation=act, norm_first=norm_first,
                                            batch_first=bf, masks=masks), const=_MASKS)
    return make


def _dec_layer(act, norm_first, bf=False, mem_kpm=False):
    def make():
        m = nn.TransformerDecoderLayer(E, H, dim_feedforward=FF, dropout=0.0, activation=act,
                                       batch_first=bf, norm_first=norm_first).eval()
        inputs = {"tgt": _seq(4, bf), "memory": _seq(5, bf), "tgt_mask": causal(4)}
        if mem_kpm:
            inputs["memory_key_padding_mask"] = kpm(N, 5, (2, 0))

        def fn(m, tgt, memory, tgt_mask, memory_key_padding_mask=None):
            return m(tgt, memory, tgt_mask=tgt_mask,
                     memory_key_padding_mask=memory_key_padding_mask)
        return module_case(m, fn, inputs, meta_str(
            module="TransformerDecoderLayer", d_model=E, nhead=H, dim_feedforward=FF,
            dropout=0.0, activation=act, norm_first=norm_first, batch_first=bf,
            tgt_mask="in.tgt_mask (causal)",
            memory_key_padding_mask="in.memory_key_padding_mask" if mem_kpm else "none"),
            const=_MASKS)
    return make


for _act in ("relu", "gelu"):
    for _nf in (False, True):
        _tag = f"{_act}_{'prenorm' if _nf else 'postnorm'}"
        fixture(f"mod_encoder_layer_{_tag}")(_enc_layer(_act, _nf))
        fixture(f"mod_decoder_layer_{_tag}")(_dec_layer(_act, _nf))
fixture("mod_encoder_layer_masks_batch_first")(_enc_layer("relu", False, bf=True, masks=True))
fixture("mod_decoder_layer_mem_kpm_batch_first")(_dec_layer("gelu", True, bf=True, mem_kpm=True))

# ---------------------------------------------------------------------------------------
# stacks and the full Transformer


@fixture("mod_encoder_stack_l2_norm")
def _enc_stack():
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=FF, dropout=0.0)
    m = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(E), enable_nested_tensor=False).eval()
    with torch.no_grad():  # the deep copies start identical: make layer 1 differ
        for p in m.layers[1].parameters():
            p.add_(randn(*p.shape, std=0.05))
    return module_case(m, lambda m, src: m(src), {"src": _seq(5, False)},
                       meta_str(module="TransformerEncoder", num_layers=2, final_norm=True,
                                d_model=E, nhead=H, dim_feedforward=FF, dropout=0.0,
                                activation="relu", norm_first=False,
                                note="layer 1's parameters were perturbed after the deep copy"))


@fixture("mod_decoder_stack_l2_nonorm")
def _dec_stack():
    layer = nn.TransformerDecoderLayer(E, H, dim_feedforward=FF, dropout=0.0)
    m = nn.TransformerDecoder(layer, 2).eval()
    with torch.no_grad():
        for p in m.layers[1].parameters():
            p.add_(randn(*p.shape, std=0.05))
    return module_case(m, lambda m, tgt, memory, tgt_mask: m(tgt, memory, tgt_mask=tgt_mask),
                       {"tgt": _seq(4, False), "memory": _seq(5, False), "tgt_mask": causal(4)},
                       meta_str(module="TransformerDecoder", num_layers=2, final_norm=False,
                                d_model=E, nhead=H, dim_feedforward=FF, dropout=0.0,
                                activation="relu", norm_first=False,
                                note="layer 1's parameters were perturbed after the deep copy"),
                       const=_MASKS)


@fixture("mod_decoder_stack_l2_norm")
def _dec_stack_norm():
    layer = nn.TransformerDecoderLayer(E, H, dim_feedforward=FF, dropout=0.0, activation="gelu")
    m = nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(E)).eval()
    with torch.no_grad():  # layer 1 differs from layer 0; the final norm is not the identity
        for p in m.layers[1].parameters():
            p.add_(randn(*p.shape, std=0.05))
        for p in m.norm.parameters():
            p.add_(randn(*p.shape, std=0.1))
    return module_case(m, lambda m, tgt, memory, tgt_mask, memory_key_padding_mask:
                       m(tgt, memory, tgt_mask=tgt_mask,
                         memory_key_padding_mask=memory_key_padding_mask),
                       {"tgt": _seq(4, False), "memory": _seq(5, False), "tgt_mask": causal(4),
                        "memory_key_padding_mask": kpm(N, 5, (1, 0))},
                       meta_str(module="TransformerDecoder", num_layers=2, final_norm=True,
                                d_model=E, nhead=H, dim_feedforward=FF, dropout=0.0,
                                activation="gelu", norm_first=False,
                                tgt_mask="in.tgt_mask (causal)",
                                memory_key_padding_mask="in.memory_key_padding_mask",
                                note="layer 1's parameters and the final norm's were perturbed "
                                     "after construction"),
                       const=_MASKS)


def _transformer(act, norm_first, bf):
    def make():
        m = nn.Transformer(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2,
                           dim_feedforward=FF, dropout=0.0, activation=act, batch_first=bf,
                           norm_first=norm_first).eval()
        inputs = {"src": _seq(5, bf), "tgt": _seq(4, bf), "tgt_mask": causal(4)}
        return module_case(m, lambda m, src, tgt, tgt_mask: m(src, tgt, tgt_mask=tgt_mask),
                           inputs, meta_str(module="Transformer", d_model=E, nhead=H,
                                            num_encoder_layers=2, num_decoder_layers=2,
                                            dim_feedforward=FF, dropout=0.0, activation=act,
                                            norm_first=norm_first, batch_first=bf,
                                            tgt_mask="in.tgt_mask (causal)"), const=_MASKS)
    return make


fixture("mod_transformer")(_transformer("relu", False, False))
fixture("mod_transformer_prenorm_gelu_batch_first")(_transformer("gelu", True, True))
