#!/usr/bin/env python3
"""Write fixtures/convert/dtypes_views.pt and its expected safetensors with real torch.

A state dict holding every dtype safetensors can store (float32/16, bfloat16, the float8
formats, integers, bool) and views saved with their storage (a transpose, a stepped slice, an
expanded row, a view at a storage offset), plus `expected.safetensors` written by
`safetensors.torch.save_file` from contiguous copies: what `ckpt convert --to safetensors` must
produce, tensor for tensor. Deterministic (fixed seed).

    /tmp/venv/bin/python scripts/make_convert_fixtures.py
"""
import os

import torch
from safetensors.torch import save_file

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "convert")
torch.manual_seed(7)
base = torch.randn(6, 10)
sd = {
    "f32": base[:3].clone(),
    "f16": torch.randn(4, 3).half(),
    "bf16": torch.randn(4, 3).bfloat16(),
    "f8_e4m3fn": torch.randn(2, 8).to(torch.float8_e4m3fn),
    "f8_e5m2": torch.randn(2, 8).to(torch.float8_e5m2),
    "f8_e8m0fnu": torch.rand(3, 4).add(0.5).to(torch.float8_e8m0fnu),
    "i8": torch.randint(-100, 100, (5,), dtype=torch.int8),
    "i32": torch.randint(-1000, 1000, (2, 2), dtype=torch.int32),
    "i64": torch.arange(7),
    "u8": torch.randint(0, 255, (6,), dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    # views of one storage, saved with it
    "base": base,
    "transposed": base.t(),
    "stepped": base[::2, 1::3],
    "row_at_offset": base[4],
    "expanded": base[1:2, :4].expand(3, 4),
    "bf16_transposed": torch.randn(5, 7).bfloat16().t(),
}
torch.save(sd, os.path.join(here, "dtypes_views.pt"))
# save_file refuses shared or non-contiguous tensors: contiguous copies, same values.
save_file({k: v.contiguous().clone() for k, v in sd.items()},
          os.path.join(here, "dtypes_views.expected.safetensors"), metadata={"format": "pt"})
print("wrote dtypes_views.pt and dtypes_views.expected.safetensors,", len(sd), "tensors")

# --dtype casts against torch's own `.to()`: float64 values just above, at and below the
# bf16/f16 rounding ties (torch rounds float64 through float32, twice), subnormals,
# overflow, signed zero, infinities, NaN, plus random float32 and float16 values.
g = torch.Generator().manual_seed(11)
ties = []
for base in (1.0, -1.5, 3.0e-3, 6.0e4):
    for tie_bits in (8, 11):  # bf16 and f16 ties relative to the value's ulp
        t = base * (1 + 2.0 ** -tie_bits)
        ties += [t, t * (1 + 2.0 ** -40), t * (1 - 2.0 ** -40)]
# (No NaN: torch's NaN bits depend on which of its loops, vectorized or scalar, handled it.)
special = [0.0, -0.0, float("inf"), float("-inf"), 1e300, -1e300, 1e-300,
           65504.0, 65520.0, 65519.99, 3.3895e38, 3.40e38, 5.9604645e-8, 2.98e-8, 1e-45]
casts = {
    "f64": torch.tensor(ties + special, dtype=torch.float64),
    "f64_random": torch.randn(257, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(-8, 8, (257,), generator=g),
    "f32": torch.randn(301, generator=g) * 10.0 ** torch.randint(-6, 6, (301,), generator=g).float(),
    "f16": torch.randn(64, generator=g).half(),
    "bf16": torch.randn(64, generator=g).bfloat16(),
}
torch.save(casts, os.path.join(here, "casts.pt"))
for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
    save_file({k: v.to(dt) for k, v in casts.items()},
              os.path.join(here, f"casts.{name}.safetensors"), metadata={"format": "pt"})
print("wrote casts.pt and casts.{bf16,fp16,fp32}.safetensors (torch .to())")

# A whole pickled nn.Module (`torch.save(model)`): ckpt flattens it as `model.state_dict()`
# names it — parameters, persistent buffers (not the non-persistent one), nested modules, a
# tied weight under both names. Expected: torch's own state_dict().
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU())
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight
        self.register_buffer("scale", torch.full((4,), 0.5))
        self.register_buffer("cache", torch.zeros(2), persistent=False)


torch.manual_seed(3)
net = Net()
net.body[1].running_mean.add_(0.25)
torch.save(net, os.path.join(here, "pickled_module.pt"))
save_file({k: v.clone().contiguous() for k, v in net.state_dict().items()},
          os.path.join(here, "pickled_module.state_dict.safetensors"), metadata={"format": "pt"})
print("wrote pickled_module.pt and its state_dict:", list(net.state_dict()))

# A BertForMaskedLM-shaped model whose output embedding is tied to the input one the way
# transformers ties it (one Parameter under two names: `cls.predictions.decoder.weight` and
# `bert.embeddings.word_embeddings.weight`; `cls.predictions.decoder.bias` is
# `cls.predictions.bias`), built from plain torch modules with transformers' names (no
# transformers needed). `bert_tied.pt` is torch.save of its state_dict() — both names view one
# storage. Expected: `safetensors.torch.save_model`, which writes each shared group once under
# the name safetensors keeps (the first in sorted order), and for BERT that is also the name
# transformers keeps (its `_tied_weights_keys` are the decoder's weight and bias).
# `bert_base/config.json` is a base folder for it.
import json


class BertEmbeddings(torch.nn.Module):
    def __init__(self, vocab, hidden, max_pos, types):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(vocab, hidden, padding_idx=0)
        self.position_embeddings = torch.nn.Embedding(max_pos, hidden)
        self.token_type_embeddings = torch.nn.Embedding(types, hidden)
        self.LayerNorm = torch.nn.LayerNorm(hidden, eps=1e-12)
        # As transformers >= 4.31 registers it: not in the state dict.
        self.register_buffer("position_ids", torch.arange(max_pos).expand((1, -1)), persistent=False)


class Dense(torch.nn.Module):
    def __init__(self, i, o, norm):
        super().__init__()
        self.dense = torch.nn.Linear(i, o)
        if norm:
            self.LayerNorm = torch.nn.LayerNorm(o, eps=1e-12)


class BertSelfAttention(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.query = torch.nn.Linear(hidden, hidden)
        self.key = torch.nn.Linear(hidden, hidden)
        self.value = torch.nn.Linear(hidden, hidden)


class BertAttention(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.self = BertSelfAttention(hidden)
        self.output = Dense(hidden, hidden, True)


class BertLayer(torch.nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.attention = BertAttention(hidden)
        self.intermediate = Dense(hidden, inter, False)
        self.output = Dense(inter, hidden, True)


class BertModel(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = BertEmbeddings(c["vocab_size"], c["hidden_size"],
                                         c["max_position_embeddings"], c["type_vocab_size"])
        self.encoder = torch.nn.Module()
        self.encoder.layer = torch.nn.ModuleList(
            BertLayer(c["hidden_size"], c["intermediate_size"]) for _ in range(c["num_hidden_layers"]))


class BertLMPredictionHead(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transform = Dense(c["hidden_size"], c["hidden_size"], True)
        self.decoder = torch.nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.bias = torch.nn.Parameter(torch.zeros(c["vocab_size"]))
        self.decoder.bias = self.bias


class BertForMaskedLM(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c)
        self.cls = torch.nn.Module()
        self.cls.predictions = BertLMPredictionHead(c)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight


bert_config = {
    "architectures": ["BertForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 8,
    "initializer_range": 0.02,
    "intermediate_size": 16,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 12,
    "model_type": "bert",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
    "tie_word_embeddings": True,
    "type_vocab_size": 2,
    "vocab_size": 30,
}
torch.manual_seed(17)
bert = BertForMaskedLM(bert_config)
with torch.no_grad():
    bert.cls.predictions.bias.copy_(torch.randn(30))  # not zeros: a copy mix-up would show
sd = bert.state_dict()
assert sd["cls.predictions.decoder.weight"].data_ptr() == sd["bert.embeddings.word_embeddings.weight"].data_ptr()
assert sd["cls.predictions.decoder.bias"].data_ptr() == sd["cls.predictions.bias"].data_ptr()
torch.save(sd, os.path.join(here, "bert_tied.pt"))
from safetensors.torch import _remove_duplicate_names, load_file, save_model  # noqa: E402

# save_model's own choice of names; written with save_file so that the file is reproducible
# (save_model also records the dropped names in the metadata, in set order).
dropped = {n for names in _remove_duplicate_names(sd).values() for n in names}
kept = {k: v.detach().clone().contiguous() for k, v in sd.items() if k not in dropped}
save_file(kept, os.path.join(here, "bert_tied.expected.safetensors"), metadata={"format": "pt"})
import tempfile  # noqa: E402

with tempfile.TemporaryDirectory() as d:
    save_model(bert, os.path.join(d, "m.safetensors"))
    by_save_model = load_file(os.path.join(d, "m.safetensors"))
assert sorted(by_save_model) == sorted(kept)
assert all(torch.equal(by_save_model[k], kept[k]) for k in kept)
assert "bert.embeddings.word_embeddings.weight" in kept and "cls.predictions.bias" in kept
assert dropped == {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
os.makedirs(os.path.join(here, "bert_base"), exist_ok=True)
with open(os.path.join(here, "bert_base", "config.json"), "w") as f:
    json.dump(bert_config, f, indent=2, sort_keys=True)
    f.write("\n")
print("wrote bert_tied.pt,", len(sd), "names,", len(kept), "tensors in bert_tied.expected.safetensors")

# An expanded view of one element claiming 2^32 elements (16 GiB as float32) from a 4-byte
# storage: torch.save keeps it as storage + stride 0; a converter that writes it out in full
# would fill the disk. `ckpt convert` refuses it before writing anything.
torch.save({"small": torch.arange(4.0), "huge": torch.zeros(1).expand(2**28, 2**4)},
           os.path.join(here, "expanded_huge.pt"))
print("wrote expanded_huge.pt")
