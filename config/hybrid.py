# The paper's hybrid: JEPA + MLM over one shared encoder, 6 layers x 512 wide at 128 tokens,
# on English Wikipedia, compiled bf16 on one H100. config/mlm.py differs only in the objective.
# The paper does not state its step budget; ours: 100k steps x 256 sequences x 128 tokens = 3.3B tokens.
out_dir = "out-hybrid"
dataset = "wikipedia"
objective = "hybrid"
jepa_views = "separate"
balance = "sigmoid"

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
