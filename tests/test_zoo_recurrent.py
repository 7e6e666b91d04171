"""specs/bahdanau.flash (RNNsearch) against the model of Bahdanau, Cho & Bengio (2015, appendix A)
written directly in torch.nn: a bidirectional GRU encoder, s_0 = tanh(W_s <-h_1), and a loop of
additive attention with the previous state, a GRUCell fed the previous word and the context, and a
readout from (s_i, c_i, y_{i-1}). The same weights, renamed; PyTorch and onnxruntime (<= 1e-4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from zoo_reference import assert_matches_reference, numpy_state, perturb

import flashc

SPECS = Path(__file__).resolve().parent.parent / "specs"


class RNNsearch(nn.Module):
    def __init__(self, vocab: int = 40, src_vocab: int = 40, emb: int = 16, hid: int = 24, attn: int = 20) -> None:
        super().__init__()
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, emb), nn.Embedding(vocab, emb)
        self.encoder = nn.GRU(emb, hid, batch_first=True, bidirectional=True)
        self.U_a = nn.Linear(2 * hid, attn, bias=False)
        self.W_s = nn.Linear(hid, hid)
        self.W_a = nn.Linear(hid, attn, bias=False)
        self.v_a = nn.Linear(attn, 1, bias=False)
        self.cell = nn.GRUCell(emb + 2 * hid, hid)
        self.out = nn.Linear(3 * hid + emb, vocab)

    def forward(self, src: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        annotations, h_n = self.encoder(self.src_embed(src))
        keys, s = self.U_a(annotations), torch.tanh(self.W_s(h_n[1]))
        words, logits = self.tgt_embed(prev), []
        for i in range(prev.shape[1]):
            alpha = self.v_a(torch.tanh(keys + self.W_a(s)[:, None])).softmax(dim=1)  # over the source
            context = (alpha * annotations).sum(dim=1)
            s = self.cell(torch.cat([words[:, i], context], dim=-1), s)
            logits.append(self.out(torch.cat([s, context, words[:, i]], dim=-1)))
        return torch.stack(logits, dim=1)


RENAMES = {"src_embed": "embedding", "encoder": "gru", "U_a": "linear", "W_s": "linear_1", "tgt_embed": "embedding_1",
           "W_a": "decoder.linear", "v_a": "decoder.linear_1", "cell": "decoder.gru_cell", "out": "decoder.linear_2"}


def test_bahdanau_matches_rnnsearch_written_in_torch():
    torch.manual_seed(0)
    reference = perturb(RNNsearch(), seed=0, std=0.3)
    spec = flashc.load(SPECS / "bahdanau.flash")
    assert spec.parameter_count == sum(p.numel() for p in reference.parameters()) == 19_428
    weights = {RENAMES[k.split(".")[0]] + k[len(k.split(".")[0]):]: v for k, v in numpy_state(reference).items()}
    rng = np.random.default_rng(0)
    for batch, source, target in ((2, 7, 5), (1, 3, 9)):
        feeds = {"src": rng.integers(0, 40, (batch, source)), "prev": rng.integers(0, 40, (batch, target))}
        with torch.no_grad():
            want = reference(torch.from_numpy(feeds["src"]), torch.from_numpy(feeds["prev"])).numpy()
        assert_matches_reference(spec, weights, feeds, want)
