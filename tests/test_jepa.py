"""JEPA: target spans and the context view, EMA, the latent loss, the balance between the losses."""

import math

import pytest
import torch

import data
import jepa
from model import Encoder, EncoderConfig


@pytest.mark.parametrize("T", [16, 64, 128])
def test_spans_disjoint_inside_and_sized_from_the_real_length(T):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(max(T // 2, 10), T + 1, (500,))
    pos, valid = jepa.sample_target_spans(lengths, T, g, n_spans=2, min_frac=0.10, max_frac=0.25)
    max_len = math.floor(0.25 * T)
    assert pos.shape == valid.shape == (500, 2 * max_len)
    for b in range(500):
        L = lengths[b].item()
        spans = [pos[b, s * max_len:(s + 1) * max_len][valid[b, s * max_len:(s + 1) * max_len]] for s in range(2)]
        for sp in spans:
            assert math.ceil(0.10 * L) <= len(sp) <= math.floor(0.25 * L)
            assert (sp[1:] - sp[:-1] == 1).all()  # contiguous
            assert sp.min() >= 1 and sp.max() <= L - 1  # never [CLS], never past the real tokens
        assert not set(spans[0].tolist()) & set(spans[1].tolist())


def test_span_lengths_cover_the_range():
    g = torch.Generator().manual_seed(0)
    pos, valid = jepa.sample_target_spans(torch.full((2000,), 100), 100, g)
    lens = valid.view(2000, 2, -1).sum(-1).flatten()
    assert lens.min() == 10 and lens.max() == 25


def test_every_position_but_cls_can_be_a_target_and_the_slots_are_floor_max_frac_t():
    """Spans are placed uniformly in the free positions: over many draws the first and the last real token
    are targets too. T = 50: 2 x floor(0.25 x 50) = 24 slots, as train.py's check counts them."""
    g = torch.Generator().manual_seed(0)
    pos, valid = jepa.sample_target_spans(torch.full((2000,), 50), 50, g)
    assert pos.shape == (2000, 24)
    assert set(pos[valid].tolist()) == set(range(1, 50))


def test_context_never_sees_a_target_token():
    tok = data.get_tokenizer()
    g = torch.Generator().manual_seed(1)
    idx = torch.cat([torch.full((64, 1), tok.cls_id), torch.randint(tok.n_normal, (64, 127), generator=g)], 1)
    batch = jepa.add_context_view(data.mask_tokens(idx, g, tok), g, tok.mask_id)
    m, ctx = batch["tgt_mask"], batch["ctx_input"]
    assert m.sum(1).ge(2 * math.ceil(0.1 * 128)).all()
    assert (ctx[m] == tok.mask_id).all()
    assert torch.equal(ctx[~m], batch["mlm_input"][~m])  # elsewhere the context is the MLM view
    assert torch.equal(m.gather(1, batch["tgt_pos"]), batch["tgt_valid"])


def test_ema_update_is_the_hand_formula():
    torch.manual_seed(0)
    online = Encoder(EncoderConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=8))
    target = jepa.make_target_encoder(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in target.parameters()]
    jepa.ema_update(target, online, 0.9)
    for t, t0, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * o)
    assert not any(p.requires_grad for p in target.parameters())


def test_the_target_encoder_is_a_deterministic_copy_even_with_dropout():
    """The targets are the EMA encoder's in eval mode: with dropout the online encoder's two forwards differ,
    the target's do not."""
    torch.manual_seed(0)
    online = Encoder(EncoderConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5))
    target, idx = jepa.make_target_encoder(online.train()), torch.randint(60, (2, 8))
    assert not torch.equal(online(idx), online(idx))
    torch.testing.assert_close(target(idx), target(idx), rtol=0, atol=0)


def test_ema_momentum_schedule():
    assert jepa.ema_momentum(0.0) == 0.996
    assert jepa.ema_momentum(1.0) == 1.0
    assert abs(jepa.ema_momentum(0.5) - 0.998) < 1e-12


def test_cosine_loss_by_hand_ignores_unused_slots():
    pred = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    # cos = 1 and 0 on the two used slots: mean of (1 - cos) = 0.5
    assert jepa.jepa_loss(pred, target, valid).item() == pytest.approx(0.5)
    sl1 = jepa.jepa_loss(pred, target, valid, "smooth_l1").item()
    assert sl1 == pytest.approx((0.0 + (0.5 + 0.5) / 2) / 2)  # |d| = (1, 1) on the second slot: 0.5 each


def test_sigmoid_balance_gradient():
    bal = jepa.Balance("sigmoid")
    with torch.no_grad():
        bal.w.fill_(0.3)
    l_mlm, l_jepa = torch.tensor(6.0), torch.tensor(0.4)
    loss, (w_mlm, w_jepa) = bal(l_mlm, l_jepa)
    loss.backward()
    lam = torch.sigmoid(torch.tensor(0.3))
    assert w_jepa.item() == pytest.approx(lam.item()) and w_mlm.item() == pytest.approx(1 - lam.item())
    assert bal.w.grad.item() == pytest.approx((lam * (1 - lam) * (0.4 - 6.0)).item())
    assert bal.w.grad.item() < 0  # gradient descent raises w: λ drifts towards 1


def test_uncertainty_balance():
    bal = jepa.Balance("uncertainty")
    with torch.no_grad():
        bal.log_var.copy_(torch.tensor([0.5, -1.0]))
    loss, (w_mlm, w_jepa) = bal(torch.tensor(6.0), torch.tensor(0.4))
    assert loss.item() == pytest.approx(math.exp(-0.5) * 6.0 + math.exp(1.0) * 0.4 + 0.5 - 1.0, rel=1e-6)
    loss.backward()  # d/ds (e^-s L + s) = 1 - e^-s L: zero at s = log L, so the weight settles at 1/L > 0
    torch.testing.assert_close(bal.log_var.grad, torch.tensor([1 - math.exp(-0.5) * 6.0, 1 - math.exp(1.0) * 0.4]))


def test_fixed_balance_has_no_parameters():
    bal = jepa.Balance("fixed", 0.25)
    loss, _ = bal(torch.tensor(4.0), torch.tensor(2.0))
    assert loss.item() == pytest.approx(0.25 * 2.0 + 0.75 * 4.0)
    assert not list(bal.parameters())


def test_hybrid_views():
    """Training: 'separate' takes MLM from the MLM view, 'shared' from the context view. Evaluation: both
    report the MLM view's loss, so every objective's val_mlm is the same task, equal on the same weights."""
    torch.manual_seed(0)
    tok = data.get_tokenizer()
    cfg = EncoderConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.full((4, 1), tok.cls_id), torch.randint(tok.n_normal, (4, 31), generator=g)], 1)
    batch = jepa.add_context_view(data.mask_tokens(idx, g, tok), g, tok.mask_id)
    val = {}
    for views in ("separate", "shared"):
        torch.manual_seed(0)
        model = jepa.Hybrid(cfg, views=views, pred_depth=1, pred_width=8, pred_n_head=2)
        target = jepa.make_target_encoder(model.encoder)
        batch["targets"] = jepa.target_features(target, batch["idx"], batch["tgt_pos"])
        _, stats = model.train()(batch)
        view = "mlm_input" if views == "separate" else "ctx_input"
        expected = model.mlm_loss(model.encoder(batch[view]), batch["mlm_pos"], batch["mlm_labels"])
        torch.testing.assert_close(stats["mlm"], expected)
        assert stats["w_jepa"].item() == pytest.approx(0.5)  # λ = sigmoid(0) at the start
        with torch.no_grad():
            _, stats = model.eval()(batch)
            val[views] = stats["mlm"]
            torch.testing.assert_close(stats["mlm"], model.mlm_loss(model.encoder(batch["mlm_input"]),
                                                                    batch["mlm_pos"], batch["mlm_labels"]))
    assert val["shared"].item() == val["separate"].item()  # same seed, same weights: the same number


def test_rankme_by_hand():
    valid = torch.ones(1, 6, dtype=torch.bool)
    one_direction = torch.randn(6, 1) * torch.randn(1, 8)  # every token on one line: collapse
    assert jepa.rankme(one_direction[None], valid).item() == pytest.approx(1.0, abs=1e-4)
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    three = torch.cat([q[:3], -q[:3]]) * 2.0  # 3 orthogonal directions, equal energy: singular values all equal
    assert jepa.rankme(three[None], valid).item() == pytest.approx(3.0, rel=1e-4)
    valid[0, 3:] = False  # unused slots don't count
    assert jepa.rankme(three[None], valid).item() == pytest.approx(3.0, rel=1e-4)
    # unequal energy: singular values 3 and 1 (not the eigenvalues 9 and 1), p = (3/4, 1/4)
    two = torch.cat([3 * q[:1], 1 * q[1:2]])
    p = torch.tensor([0.75, 0.25])
    want = torch.exp(-(p * p.log()).sum()).item()  # 1.755
    assert jepa.rankme(two[None], torch.ones(1, 2, dtype=torch.bool)).item() == pytest.approx(want, rel=1e-4)


def test_targets_are_the_clean_states_layer_normed_at_the_spans():
    """Each target is the target encoder's state of the clean sequence at a span position, normalised over its
    features with no learned scale: mean 0 and variance 1 per token, whatever the encoder's scale."""
    torch.manual_seed(0)
    target = jepa.make_target_encoder(Encoder(EncoderConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2,
                                                            n_embd=8)))
    with torch.no_grad():
        target.ln_f.weight.fill_(3.0)
        target.ln_f.bias.fill_(1.0)
    idx, tgt_pos = torch.randint(64, (2, 16)), torch.tensor([[3, 4, 0], [9, 10, 11]])
    out = jepa.target_features(target, idx, tgt_pos)
    h = target(idx)
    for b in range(2):
        for m in range(3):
            x = h[b, tgt_pos[b, m]]
            torch.testing.assert_close(out[b, m], (x - x.mean()) / (x.var(unbiased=False) + 1e-5).sqrt())
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)


def test_feature_std_by_hand_counts_used_slots_only():
    targets = torch.tensor([[[0.0, 0.0], [2.0, 4.0], [100.0, -100.0]]])
    valid = torch.tensor([[True, True, False]])
    # per feature over the two used tokens: std(0, 2) = sqrt(2), std(0, 4) = 2 sqrt(2); mean 1.5 sqrt(2)
    assert jepa.feature_std(targets, valid).item() == pytest.approx(1.5 * math.sqrt(2))


def predictor_and_states(T=12):
    torch.manual_seed(0)
    pred = jepa.Predictor(enc_width=8, width=8, depth=1, n_head=2, block_size=T)
    h = torch.randn(1, T, 8)
    tgt_mask = torch.zeros(1, T, dtype=torch.bool)
    tgt_mask[0, 3:6] = True
    return pred, h, tgt_mask, torch.tensor([[3, 4, 5]])


def test_predictor_reads_a_mask_token_at_the_targets_not_their_states():
    pred, h, tgt_mask, tgt_pos = predictor_and_states()
    out = pred(h, tgt_mask, tgt_pos)
    changed = h.clone()
    changed[0, 3:6] += 10 * torch.randn(3, 8)  # the encoder's states at the target positions
    torch.testing.assert_close(pred(changed, tgt_mask, tgt_pos), out)
    changed = h.clone()
    changed[0, 8] += 10 * torch.randn(8)  # a context position
    assert not torch.allclose(pred(changed, tgt_mask, tgt_pos), out)


def test_predictor_knows_where_each_target_is():
    """With the same context state everywhere the mask tokens differ only by their positions: each target's
    prediction must still be its own."""
    pred, h, tgt_mask, tgt_pos = predictor_and_states()
    out = pred(h[:, :1].expand_as(h), tgt_mask, tgt_pos)[0]
    assert (out[0] - out[1]).abs().max() > 1e-3 and (out[1] - out[2]).abs().max() > 1e-3


def test_predictions_come_out_in_the_order_of_the_target_positions():
    """Slot j of the predictor's output is its state at tgt_pos[j], whatever the order of the positions."""
    pred, h, tgt_mask, tgt_pos = predictor_and_states()
    out = pred(h, tgt_mask, tgt_pos)
    torch.testing.assert_close(pred(h, tgt_mask, tgt_pos.flip(1)), out.flip(1))
    for j in range(3):  # each position read alone
        torch.testing.assert_close(pred(h, tgt_mask, tgt_pos[:, j:j + 1]), out[:, j:j + 1])


def test_param_groups_decay_matrices_only_and_keep_the_balance_apart():
    """Weight decay on the matrices (embeddings included), none on biases and LayerNorms; the balance's w in
    a group of its own, with its learning-rate fraction and decay, and left out of gradient clipping."""
    cfg = EncoderConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=8)
    model = jepa.Hybrid(cfg, pred_depth=1, pred_width=8, pred_n_head=2)
    groups, clipped = jepa.param_groups(model, weight_decay=0.1, balance_lr=0.3, balance_wd=0.0)
    name = {id(p): n for n, p in model.named_parameters()}
    decayed, plain, balance = ([name[id(p)] for p in g["params"]] for g in groups)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.0] and groups[2]["lr_scale"] == 0.3
    assert "encoder.wte.weight" in decayed and "encoder.blocks.0.attn.qkv.weight" in decayed
    assert all(n.endswith((".bias", "ln_1.weight", "ln_2.weight", "ln_f.weight", ".ln.weight", "mask_token"))
               for n in plain)
    assert "encoder.blocks.0.attn.qkv.bias" in plain and "encoder.ln_f.weight" in plain
    assert balance == ["balance.w"] and "balance.w" not in {name[id(p)] for p in clipped}
    assert len(decayed) + len(plain) + 1 == len(name) == len(clipped) + 1
