"""The encoder: padding invariance, SDPA against a naive attention, the sparse MLM head; loading a
checkpoint."""

import math

import pytest
import torch
import torch.nn.functional as F

import model
from configurator import InputError, MissingInput
from model import Encoder, EncoderConfig, MaskedLM

CFG = EncoderConfig(vocab_size=256, block_size=32, n_layer=2, n_head=4, n_embd=32)


def make(cls=Encoder, **kw):
    torch.manual_seed(0)
    return cls(EncoderConfig(**{**CFG.__dict__, **kw})).eval()


def test_sincos_positions_by_hand():
    """Vaswani et al.: channel 2i of position p is sin(p / 10000^(2i/d)), channel 2i + 1 its cos."""
    pe, d = model.sincos_positions(7, 8), 8
    for p, i in ((0, 0), (3, 0), (6, 1), (5, 3)):
        angle = p / 10000 ** (2 * i / d)
        assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_padding_does_not_change_real_positions():
    enc = make()
    idx = torch.randint(200, (3, 10))
    ref = enc(idx)
    for pad_value in (0, 7, 199):  # whatever sits in the padding must not matter
        padded = torch.cat([idx, torch.full((3, 6), pad_value)], 1)
        mask = torch.cat([torch.ones(3, 10, dtype=torch.bool), torch.zeros(3, 6, dtype=torch.bool)], 1)
        out = enc(padded, mask)
        torch.testing.assert_close(out[:, :10], ref, atol=1e-5, rtol=1e-5)
    # without the mask, the padding leaks into every position
    assert not torch.allclose(enc(padded)[:, :10], ref, atol=1e-3)


def test_ragged_batch_equals_one_by_one():
    enc = make()
    lengths = [5, 12, 9]
    seqs = [torch.randint(200, (n,)) for n in lengths]
    idx = torch.zeros(3, 12, dtype=torch.long)
    mask = torch.zeros(3, 12, dtype=torch.bool)
    for i, s in enumerate(seqs):
        idx[i, :len(s)], mask[i, :len(s)] = s, True
    out = enc(idx, mask)
    for i, s in enumerate(seqs):
        torch.testing.assert_close(out[i, :len(s)], enc(s[None])[0], atol=1e-5, rtol=1e-5)


def naive_encoder(enc, idx, pad_mask=None):
    """The same network written out with explicit softmax attention."""
    x = enc.wte(idx) + enc.wpe[: idx.size(1)]
    B, T, C = x.shape
    for blk in enc.blocks:
        h = blk.ln_1(x)
        q, k, v = blk.attn.qkv(h).split(C, 2)
        H = blk.attn.n_head
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        att = q @ k.transpose(-1, -2) / math.sqrt(C // H)
        if pad_mask is not None:
            att = att.masked_fill(~pad_mask[:, None, None, :], float("-inf"))
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + blk.attn.proj(y)
        x = x + blk.mlp.proj(F.gelu(blk.mlp.fc(blk.ln_2(x))))
    return enc.ln_f(x)


def test_sdpa_matches_naive_attention():
    enc = make()
    idx = torch.randint(200, (2, 16))
    torch.testing.assert_close(enc(idx), naive_encoder(enc, idx), atol=1e-5, rtol=1e-5)
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 11:] = False
    torch.testing.assert_close(enc(idx, mask), naive_encoder(enc, idx, mask), atol=1e-5, rtol=1e-5)


def test_mlm_loss_at_selected_positions_only():
    m = make(MaskedLM)
    idx = torch.randint(200, (2, 16))
    pos = torch.tensor([[1, 4, 9], [2, 3, 15]])
    labels = torch.tensor([[5, 6, -100], [7, 8, 9]])  # one unused slot
    h = m.encoder(idx)
    full = m.head(h)  # logits everywhere, as BERT computes them
    expected = torch.stack([F.cross_entropy(full[b, p][None], torch.tensor([l]))
                            for b in range(2) for p, l in zip(pos[b].tolist(), labels[b].tolist()) if l != -100]).mean()
    torch.testing.assert_close(m.mlm_loss(h, pos, labels), expected)


def test_mlm_objective_sees_the_corrupted_view_only():
    """The clean sequence enters the loss only through the labels: the encoder reads mlm_input."""
    m = make(MaskedLM)
    g = torch.Generator().manual_seed(0)
    mlm_input = torch.randint(200, (2, 16), generator=g)
    batch = {"idx": torch.randint(200, (2, 16), generator=g), "mlm_input": mlm_input,
             "mlm_pos": torch.tensor([[1, 4, 9], [2, 3, 15]]),
             "mlm_labels": torch.tensor([[5, 6, -100], [7, 8, 9]])}
    loss, _ = m(batch)
    torch.testing.assert_close(loss, m.mlm_loss(m.encoder(mlm_input), batch["mlm_pos"], batch["mlm_labels"]))
    torch.testing.assert_close(m({**batch, "idx": torch.randint(200, (2, 16), generator=g)})[0], loss)


def test_residual_projections_start_scaled_by_depth():
    """GPT-2's init: the two projections into the residual stream of each block at std 0.02 / sqrt(2 n_layer),
    every other matrix and the embeddings at 0.02, biases at 0."""
    for n_layer in (2, 8):
        enc = make(n_layer=n_layer, n_embd=128)
        for name, p in enc.named_parameters():
            if name.endswith("bias"):
                assert not p.any(), name
            elif p.dim() == 2:
                want = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                assert p.std().item() == pytest.approx(want, rel=0.05), name


def test_tied_head_shares_the_embedding_matrix():
    m = make(MaskedLM, tie_mlm_head=True)
    assert m.head.decoder.weight is m.encoder.wte.weight
    assert make(MaskedLM).head.decoder.weight is not make(MaskedLM).encoder.wte.weight


def test_rotary_positions_make_attention_depend_on_the_offset_only():
    from model import rotate
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    rq, rk = rotate(q.expand(1, 1, 12, 16)), rotate(k.expand(1, 1, 12, 16))  # the same q and k at every position
    scores = (rq[0, 0] @ rk[0, 0].T)  # (12, 12): q at position i against k at position j
    for off in (-3, 0, 2):
        d = torch.diagonal(scores, offset=off)
        torch.testing.assert_close(d, d[:1].expand_as(d), atol=1e-5, rtol=1e-5)  # i - j fixed: one value
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1).expand(1, 1, 12), atol=1e-5, rtol=1e-5)  # a rotation
    assert scores[0, 1] != scores[0, 2]


def test_rotary_positions_by_hand():
    """Su et al. 2021: the channel pair (2i, 2i + 1) at position p turns by p / 10000^(2i / hd) radians."""
    x = torch.randn(1, 1, 6, 8, generator=torch.Generator().manual_seed(0))
    r = model.rotate(x)[0, 0]
    for p, i in ((0, 0), (3, 0), (5, 1), (4, 3)):
        a, (x1, x2) = p / 10000 ** (2 * i / 8), x[0, 0, p, 2 * i:2 * i + 2].tolist()
        assert r[p, 2 * i].item() == pytest.approx(x1 * math.cos(a) - x2 * math.sin(a), abs=1e-5)
        assert r[p, 2 * i + 1].item() == pytest.approx(x1 * math.sin(a) + x2 * math.cos(a), abs=1e-5)


def test_poolings_by_hand():
    """mean and max over the real tokens only; first is the [CLS] position, 0."""
    h = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [-1.0, 4.0], [9.0, 9.0]]])  # the last token is padding
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(model.pool(h, mask, "mean"), torch.tensor([[1.0, 2 / 3]]))
    torch.testing.assert_close(model.pool(h, mask, "max"), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(model.pool(h, mask, "first"), torch.tensor([[1.0, -2.0]]))


def test_rotary_encoder_keeps_padding_invariance_and_ignores_the_sincos_table():
    enc = make(rope=True)
    idx = torch.randint(200, (3, 10))
    ref = enc(idx)
    padded = torch.cat([idx, torch.full((3, 6), 5)], 1)
    mask = torch.cat([torch.ones(3, 10, dtype=torch.bool), torch.zeros(3, 6, dtype=torch.bool)], 1)
    torch.testing.assert_close(enc(padded, mask)[:, :10], ref, atol=1e-5, rtol=1e-5)
    shifted = enc(torch.cat([idx[:, :1], idx], 1))[:, 1:]  # positions matter: one token more in front
    assert not torch.allclose(shifted, ref, atol=1e-3)
    with torch.no_grad():
        enc.wpe.normal_()  # the sin-cos table is not read with rotary positions
    torch.testing.assert_close(enc(idx), ref)


def test_peak_flops_by_the_gpus_name_with_pcie_and_nvl_cards_apart(monkeypatch):
    """MFU's denominator: the SXM H100's 989 TFLOP/s would understate a PCIe card's MFU by a quarter."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name, peak in (("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
                       ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA GeForce RTX 4090", None)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert model.peak_flops("cuda") == peak, name
    assert model.peak_flops("cpu") is None


def test_a_folder_of_runs_or_a_runs_other_file_named_as_a_checkpoint_says_what_to_name(tmp_path):
    """results/cpu/ckpt (a folder of out_dirs) or out-a/log.jsonl named where an out_dir is meant: one line
    that names what to pass, not 'train one first' or 'delete it'."""
    runs = tmp_path / "ckpt"
    for name in ("out-a", "out-b"):
        (runs / name).mkdir(parents=True)
        (runs / name / "ckpt.pt").write_bytes(b"not a checkpoint")
        (runs / name / "log.jsonl").write_text("{}\n")
    with pytest.raises(MissingInput, match=r"no checkpoint at .*ckpt/ckpt.pt, but .*ckpt holds runs: name "
                                           r"them \(.*ckpt/out-a, .*ckpt/out-b\)$"):
        model.load_checkpoint(str(runs))
    with pytest.raises(InputError, match=r"log.jsonl is not a checkpoint \(train.py writes ckpt.pt\): name "
                                         r"the run's out_dir$"):
        model.load_checkpoint(str(runs / "out-a" / "log.jsonl"))
    with pytest.raises(InputError, match=r"^checkpoint .*out-a/ckpt.pt is corrupt"):
        model.load_checkpoint(str(runs / "out-a"))


def test_the_online_and_the_target_encoder_each_load_their_own_weights():
    online, target = make(MaskedLM), make()
    with torch.no_grad():
        for p in target.parameters():
            p.add_(1.0)  # the EMA copy has moved away from the online weights
    ckpt = {"model_args": CFG.__dict__, "model": online.state_dict(), "target": target.state_dict()}
    for which, ref in (("online", online.encoder), ("target", target)):
        got = model.encoder_of(ckpt, which).state_dict()
        assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items()), which


def test_a_stripped_checkpoint_keeps_no_weights_of_any_kind(tmp_path):
    """strip_checkpoint: no model, no target encoder, no optimizer state (a paper-size one is 0.6 GB), only
    what the analysis cache's key and the report read."""
    enc = make()
    online = {"encoder." + k: v for k, v in enc.state_dict().items()}
    ckpt = {"model_args": dict(CFG.__dict__), "model": online,
            "target": enc.state_dict(), "optimizer": {"state": {0: {"exp_avg": torch.ones(1000)}}},
            "config": {"objective": "hybrid"}, "iter_num": 7, "saved": 123.0}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    model.strip_checkpoint(str(tmp_path / "ckpt.pt"), str(tmp_path / "stub.pt"))
    stub = torch.load(tmp_path / "stub.pt", weights_only=True)
    assert stub == {"model_args": ckpt["model_args"], "config": ckpt["config"], "iter_num": 7, "saved": 123.0,
                    "stripped": True}
