# The paper's hybrid: JEPA + MLM over one shared encoder, 6 layers x 512 wide at 128 tokens,
# on English Wikipedia, compiled bf16 on one H100. config/mlm.py differs only in the objective.
# The paper does not state its step budget; ours: 100k steps x 256 sequences x 128 tokens = 3.3B tokens.
out_dir = "out-hybrid"
dataset = "wikipedia"
objective = "hybrid"
jepa_views = "separate"
balance = "sigmoid"
# λ = sigmoid(w) climbs by ~w's learning rate every step (jepa.Balance); w's learning rate is train.py's
# balance_lr (0.1) x the model's. Computed by results/balance/trajectory.py, the MLM weight 1 - λ over this
# budget: 0.390 at 10k steps, 0.240 at 25k, 0.112 at 50k, 0.072 at 75k, 0.060 at 100k (never below 0.05).
# At the model's learning rate (--balance_lr=1.0) it would be 0.012 at 10k and ~0 from 25k on.

n_layer = 6
n_head = 8
n_embd = 512
block_size = 128
pred_depth = 6
pred_width = 192

batch_size = 256
max_iters = 100000
learning_rate = 5e-4
eval_interval = 1000

device = "cuda"
dtype = "bfloat16"
compile = True
