# A scale overlay for a CPU: put it after config/hybrid.py or config/mlm.py.
# A small encoder on the embedded corpus (prose shipped with CPython, no network), float32, no compile;
# a few minutes on 2 cores, with a clearly falling loss. Not the paper's setting.
out_dir = out_dir + "-tiny"  # out-hybrid-tiny / out-mlm-tiny: never overwrite a paper-size run
dataset = "embedded"

n_layer = 2
n_head = 4
n_embd = 128
block_size = 128
pred_depth = 2
pred_width = 64
pred_n_head = 4

batch_size = 16
max_iters = 1200  # enough to leave the unigram plateau (val MLM ~7.2 on this corpus) behind
# the hybrid's MLM weight 1 - λ over these steps: 0.495 at 120, 0.476 at 600, 0.469 at 1200 (results/balance/)
learning_rate = 2e-3
min_lr = 1e-4
warmup_frac = 0.05
eval_interval = 200
eval_iters = 20
log_interval = 50

device = "cpu"
dtype = "float32"
compile = False
