# Overlay for the small-scale reproduction on one H100 (results/repro/): the paper model of
# config/hybrid.py or config/mlm.py, on the 66 MB English Wikipedia sample instead of the full dump.
#   python train.py config/hybrid.py config/wiki_sample.py
#   python train.py config/mlm.py config/wiki_sample.py
# The sample (WikiExtractor text, xz) is carried to the GPU machine in .carry/ (results/repro/run.sh);
# data.py strips the <doc> markup and title-only stubs and holds out every 100th article for validation.
out_dir = out_dir + "-wiki"
dataset = ".carry/enwiki_sample"

# Budget, step-matched (the paper's reading): both objectives run the same 12,000 steps of
# 256 x 128 tokens = 393M tokens (~28 passes over the sample's 14.1M training tokens), in the same data order.
# Analytic cost (model.py / jepa.py counters): hybrid 'separate' ~2.3x the FLOPs/token of MLM.
# FLOP-matched alternative: give the MLM run the hybrid's FLOPs, e.g. --max_flops=<hybrid's final
# "flops" in the hybrid's log.jsonl>, which trains it for ~2.3x the steps.
# 12,000 steps were sized for ~8 minutes of the hybrid at ~35% MFU. Measured since (H200, bench.py, results/bench/):
# 32.3 ms a hybrid step and 13.6 ms an MLM step, so 12,000 steps are ~6.5 + ~2.7 minutes. A device session now
# has 15 minutes, machine start included, and at most 600 s a call; a checkpoint (0.6 GB for the MLM, with its
# optimizer) cannot come back from the machine, so a pair's training and analysis share one call: about 3,000
# steps each (an estimate: the analysis of a pair has not yet been timed there).
max_iters = 12000  # the hybrid's MLM weight 1 - λ: 0.487 at 1.2k, 0.438 at 6k, 0.418 at 12k (results/balance/)
batch_size = 256
learning_rate = 5e-4
min_lr = 5e-5
warmup_frac = 0.03
eval_interval = 1000
eval_iters = 20
log_interval = 100
