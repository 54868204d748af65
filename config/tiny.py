# A scale overlay for a CPU: put it after config/hybrid.py or config/mlm.py.
# A small encoder on the embedded corpus (prose shipped with CPython, no network), float32, no compile;
# under 4 and 2 minutes on 2 cores, ending over 1 nat below the unigram line. Not the paper's setting.
out_dir = out_dir + "-tiny"  # out-hybrid-tiny / out-mlm-tiny: never overwrite a paper-size run
dataset = "embedded"
# What took the tiny runs off the unigram plateau (val MLM 7.1 against the line's 7.2, for 1,200 steps):
# - rotary positions: with sin-cos added to the input, attending to "the token next to me" must be learnt
#   for every position pair, and a count-based left-bigram already gets 1.7 nats below the unigram line here;
#   rotary attention sees the offset directly (800 steps: 0.54 nats below the line against 0.21);
# - an 8k vocabulary (cl100k's first 8,192 ranks): the 32k embedding and head were 95% of the parameters and
#   ~60% of the FLOPs of a 2 x 128 encoder; 8k makes a step 1.7x faster;
# - a learning rate of 1e-3 (2e-3 and 5e-3 plateaued longer; 5e-4 and 1e-3 did best of 2e-4 ... 5e-3).
vocab_ranks = 8192
rope = True

n_layer = 2
n_head = 4
n_embd = 128
block_size = 128
pred_depth = 2
pred_width = 64
pred_n_head = 4

batch_size = 16
# A step is the model's FLOPs at ~half this CPU's fp32 matmul ceiling, with no lever left that wins on both CPU
# kinds (results/bench/cpu-levers-avx2.md), so the quickstart's time is its step count: 1,000 steps end
# ~1.2 nats under the unigram line, 800 only 0.87 (the analysis in results/tiny/ was made at 1,200)
max_iters = 1000
# the hybrid's MLM weight 1 - λ over these steps: see the README's table (results/balance/trajectory.py)
learning_rate = 1e-3
min_lr = 1e-4
warmup_frac = 0.05
eval_interval = 200
eval_iters = 20
log_interval = 50

device = "cpu"
dtype = "float32"
compile = False
