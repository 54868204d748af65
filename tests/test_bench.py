"""bench.py: the FLOP counters against a hand count and torch's own, the CPU benchmark end to end, and (on a GPU) that
the flash attention kernel serves our packed pre-training attention."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import jepa
from conftest import ROOT, run_here
from model import Encoder, EncoderConfig, MaskedLM


# -----------------------------------------------------------------------------
# the convention, by hand: FLOPs per token = 6 * (matmul weights) + 12 * L * d * T (attention, fwd + bwd),
# the MLM head (dense d x d, decoder d x V) at the K masked positions of each T-token sequence,
# the target encoder forward only (2 * weights + 4 * L * d * T), the predictor fwd + bwd at its own width
# with its two projections between widths d and d_p.


def hand_encoder(L, d, T, backward=True):
    weights = L * (3 * d * d + d * d + 4 * d * d + 4 * d * d)  # qkv, attn proj, mlp fc, mlp proj
    fwd = 2 * weights + 4 * L * d * T  # QK^T and AV: 2 * T * d each, per layer, per token
    return 3 * fwd if backward else fwd


def hand_head(d, V, K, T):
    return 6 * (d * d + d * V) * K / T


def hand_predictor(d, dp, Lp, T):
    weights = Lp * 12 * dp * dp + 2 * d * dp  # blocks, proj_in, proj_out
    return 3 * (2 * weights + 4 * Lp * dp * T)


# the tiny configuration: 2 layers of width 16, T = 8, vocab 128, K = ceil(0.15 * 8) = 2 masked positions,
# predictor depth 1 width 8; the numbers written out
L, d, H, T, V, K = 2, 16, 2, 8, 128, 2
Lp, dp = 1, 8
ENC = 3 * (2 * 2 * 12 * 16 * 16 + 4 * 2 * 16 * 8)  # 3 * (12288 + 1024) = 39936
ENC_FWD = 2 * 2 * 12 * 16 * 16 + 4 * 2 * 16 * 8  # 13312
HEAD = 6 * (16 * 16 + 16 * 128) * 2 / 8  # 3456
PRED = 3 * (2 * (12 * 8 * 8 + 2 * 16 * 8) + 4 * 1 * 8 * 8)  # 3 * (1536 + 512 + 256) = 6912


def tiny_config():
    return EncoderConfig(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=d)


def test_encoder_and_mlm_flops_match_the_hand_count():
    model = MaskedLM(tiny_config())
    assert model.encoder.flops_per_token() == ENC == 39936
    assert model.encoder.flops_per_token(backward=False) == ENC_FWD
    assert model.flops_per_token(K) == ENC + HEAD == 43392
    assert model.flops_per_token(K, backward=False) == ENC_FWD + HEAD / 3
    assert model.flops_per_token(T) == ENC + 6 * (d * d + d * V)  # the head at every position


@pytest.mark.parametrize("views, expected", [("separate", 2 * ENC + HEAD + ENC_FWD + PRED),  # 103552
                                             ("shared", ENC + HEAD + ENC_FWD + PRED)])  # 63616
def test_hybrid_flops_match_the_hand_count(views, expected):
    model = jepa.Hybrid(tiny_config(), views, pred_depth=Lp, pred_width=dp, pred_n_head=2)
    assert model.predictor.flops_per_token(d) == PRED
    assert model.flops_per_token(K) == expected
    assert expected == {"separate": 103552, "shared": 63616}[views]


def test_the_counters_weight_flops_are_those_torch_measures():
    """torch's FlopCounterMode counts the matmuls of a real forward (and backward) pass: the counter's total
    less the attention term (which SDPA on the CPU does not report) must be exactly what it measured."""
    from torch.utils.flop_counter import FlopCounterMode
    enc, B = Encoder(tiny_config()), 4
    idx = torch.randint(V, (B, T), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        enc(idx)
    with FlopCounterMode(display=False) as both:
        enc(idx).sum().backward()
    assert fwd.get_total_flops() == B * T * (enc.flops_per_token(backward=False) - 4 * L * d * T)
    assert both.get_total_flops() == B * T * (enc.flops_per_token() - 12 * L * d * T)

# -----------------------------------------------------------------------------
# bench.py --device=cpu end to end


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    """As the docstring runs it, with no --out: the JSON goes to out-bench/ where it runs, never over the
    committed results/bench/cpu.json."""
    here = tmp_path_factory.mktemp("bench")
    p = run_here("bench.py", "--device=cpu", cwd=here)
    assert p.returncode == 0, p.stderr
    assert os.listdir(here) == ["out-bench"] and os.listdir(here / "out-bench") == ["cpu.json"]
    with open(here / "out-bench" / "cpu.json") as f:
        return json.load(f), p.stdout


def test_cpu_bench_writes_every_row_with_the_models_flops(bench_json):
    result, stdout = bench_json
    assert result["device"] == "cpu" and result["torch"] == torch.__version__ and "--device=cpu" in result["command"]
    assert torch.backends.cpu.get_cpu_capability() in result["cpu"]  # AVX2 and AVX-512 timings differ
    rows = {r["objective"]: r for r in result["rows"]}
    assert set(rows) == {"mlm", "hybrid-separate", "hybrid-shared", "official"}
    for r in rows.values():
        assert r["tok_per_s"] > 0 and r["ms_per_step"] > 0 and r["first_step_s"] > 0 and math.isfinite(r["loss"])
        assert r["mfu"] is None and r["peak_mem_gb"] is None  # no peak FLOP/s or CUDA memory on the CPU
        assert r["name"] in stdout
    r = rows["mlm"]
    Lb, db, Tb, Vb, Kb = r["n_layer"], r["n_embd"], r["block_size"], r["vocab_size"], r["mlm_positions"]
    assert Kb == math.ceil(0.15 * Tb)
    enc, head = hand_encoder(Lb, db, Tb), hand_head(db, Vb, Kb, Tb)
    pred = hand_predictor(db, r["pred_width"], r["pred_depth"], Tb)
    tgt = hand_encoder(Lb, db, Tb, backward=False)
    expected = {"mlm": (1, 0, 0), "hybrid-separate": (2, tgt, pred), "hybrid-shared": (1, tgt, pred),
                "official": (2, tgt, pred)}
    for name, (views, t, p) in expected.items():
        f = rows[name]["flops_per_token"]
        assert f["views"] == views and f["encoder"] == enc and f["target"] == t and f["predictor"] == p
        assert math.isclose(f["total"], views * enc + head + t + p, rel_tol=1e-12)
    # the official recipe runs the head at every position; its useful FLOPs are the paper's hybrid's
    off = rows["official"]["flops_per_token"]
    assert math.isclose(off["mlm_head"], hand_head(db, Vb, Tb, Tb), rel_tol=1e-12)
    assert math.isclose(off["executed"], off["total"] - head + hand_head(db, Vb, Tb, Tb), rel_tol=1e-12)
    assert off["total"] == rows["hybrid-separate"]["flops_per_token"]["total"]
    # sharing the view saves exactly one encoder forward + backward
    assert rows["hybrid-separate"]["flops_per_token"]["total"] - rows["hybrid-shared"]["flops_per_token"]["total"] == enc
    # the official batches are padded articles, ours packed
    assert 0 < rows["official"]["pad_frac"] < 1 and rows["official"]["real_tokens_per_step"] < r["tokens_per_step"]
    assert all(rows[o]["pad_frac"] == 0 for o in ("mlm", "hybrid-separate", "hybrid-shared"))
    assert not rows["official"]["compile"]


def test_cpu_bench_times_embedding_extraction(bench_json):
    result, _ = bench_json
    (e,) = result["embed"]
    assert e["sentences"] == 128 and 5 <= e["mean_len"] <= 60  # the CPU default: lognormal lengths around 24
    # length-sorted batches waste far less on padding than random order
    assert e["sorted"]["pad_frac"] < 0.5 * e["random"]["pad_frac"]


@pytest.mark.parametrize("arg,says", [("--sizes=huge", "unknown size 'huge'"),
                                      ("--iters=-1", "--iters=-1: must be a whole number >= 0"),
                                      ("--compile_mode=max-autotune", "compile_mode=max-autotune is torch.compile's: "
                                                                      "pass --compile=True"),
                                      ("--out=README.md/cpu.json", "--out=README.md/cpu.json cannot be written")])
def test_bench_refuses_a_bad_setting_in_one_line(arg, says):
    """Before the timing starts: a lever that would not be applied, or an --out the results could not reach."""
    p = run_here("bench.py", "--device=cpu", arg)
    assert p.returncode == 2 and p.stderr.startswith(f"error: {says}") and len(p.stderr.splitlines()) == 1
    assert p.stdout == ""


@pytest.mark.parametrize("objective", ["mlm", "separate", "shared"])
def test_the_training_graph_compiles_whole_without_recompiles(objective):
    """The levers fullgraph=True and dynamic=False: dynamo traces the model and the target encoder without a
    graph break (fullgraph raises on one), new batches of the same shapes never recompile (the stance raises
    on one), and the compiled loss is the eager one (backend='eager': no C++ compiler needed)."""
    import data
    tok = data.get_tokenizer()
    config = EncoderConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32)
    model = MaskedLM(config) if objective == "mlm" else \
        jepa.Hybrid(config, objective, pred_depth=1, pred_width=16, pred_n_head=2)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="eager")
    target = torch.compile(jepa.make_target_encoder(model.encoder), fullgraph=True, dynamic=False, backend="eager")
    g = torch.Generator().manual_seed(0)

    def train_step():
        idx = torch.randint(tok.n_normal, (4, 32), generator=g)
        idx[:, 0] = tok.cls_id
        batch = data.mask_tokens(idx, g, tok)
        if objective != "mlm":
            jepa.add_context_view(batch, g, tok.mask_id)
            batch["targets"] = jepa.target_features(target, batch["idx"], batch["tgt_pos"])
        loss = compiled(batch)[0]
        torch.testing.assert_close(loss, model(batch)[0])
        loss.backward()

    try:
        train_step()  # compiles
        with torch._dynamo.config.patch(error_on_recompile=True):  # torch >= 2.5 (set_stance is 2.6's)
            for _ in range(2):
                train_step()
    finally:
        torch._dynamo.reset()

# -----------------------------------------------------------------------------
# GPU only


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flash_attention_serves_packed_pretraining_not_padded_batches():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    enc = Encoder(EncoderConfig(n_layer=2, n_embd=512, n_head=8, block_size=128)).cuda()
    idx = torch.randint(32000, (8, 128), device="cuda")
    bf16 = torch.autocast("cuda", dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), bf16:  # packed: no mask, so flash is eligible
        enc(idx).float().sum().backward()
    pad = torch.ones(8, 128, dtype=torch.bool, device="cuda")
    pad[:, 100:] = False
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), bf16, pytest.raises(RuntimeError):
        enc(idx, pad)  # a key padding mask rules flash out ...
    with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]), bf16:
        enc(idx, pad).float().sum().backward()  # ... and the fallbacks serve it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bench_runs_compiled_and_official_with_mfu(tmp_path):
    out = str(tmp_path / "g.json")
    p = subprocess.run([sys.executable, "bench.py", "--sizes=tiny", "--objectives=hybrid-separate,official",
                        "--warmup_iters=2", "--iters=3", "--embed_sentences=512", f"--out={out}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    with open(out) as f:
        rows = {r["objective"]: r for r in json.load(f)["rows"]}
    assert rows["hybrid-separate"]["compile"] and rows["hybrid-separate"]["recompiles_timed"] == 0
    assert rows["official"]["dtype"] == "float16+GradScaler"
    for r in rows.values():
        assert r["peak_mem_gb"] > 0 and (r["mfu"] is None or 0 < r["mfu"] < 1)
