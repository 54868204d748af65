# The CPU-scale overlay on the paper's corpus: put it after config/hybrid.py or config/mlm.py.
#   python train.py config/hybrid.py config/cpu.py
#   python train.py config/mlm.py config/cpu.py
# English Wikipedia text (here the 66 MB WikiExtractor sample; any local Wikipedia text, or --dataset=wikipedia
# through HF datasets, works the same way), the quickstart's recipe (config/tiny.py: rotary positions, an 8k
# vocabulary, lr 1e-3) on a model twice as deep and batches twice as large. Sized for several runs in one
# session on 2 CPU cores: see the README for the measured wall times and losses. Not the paper's setting.
out_dir = out_dir + "-cpu"  # out-hybrid-cpu / out-mlm-cpu
dataset = "../shared/data/enwiki_sample"  # or --dataset=/path/to/enwiki (a folder or file of text, .xz/.gz/.bz2 too)
vocab_ranks = 8192
rope = True

n_layer = 4
n_head = 4
n_embd = 128
block_size = 128
pred_depth = 2
pred_width = 64
pred_n_head = 4

batch_size = 32
max_iters = 1600
learning_rate = 1e-3
min_lr = 1e-4
warmup_frac = 0.05
eval_interval = 200
eval_iters = 20
log_interval = 50

device = "cpu"
dtype = "float32"
compile = False
