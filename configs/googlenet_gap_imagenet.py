"""GoogLeNet-GAP on ILSVRC2012 (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/googlenet_gap_imagenet.py \
        --workdir runs/googlenet_gap_imagenet \
        --config.init_from=/path/to/googlenet-1378be20.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Aims at (ILSVRC val): localization error top-1/top-5 56.40/43.00 and classification
error 35.0/13.2 (paper); MaxBoxAccV2 63.4 for vanilla CAM on Inception (Choe et al.,
CVPR 2020; their backbone is Inception-v3, not GoogLeNet).
"""

from configs import default


def get_config():
    c = default.get_config()
    # BatchNorm statistics over the global batch (bn_axis_name = the data axis).
    c.model.sync_batch_norm = True
    c.model.name = "googlenet_gap"
    c.data.name = "imagenet2012"
    c.data.image_size = 224
    c.data.normalization = "imagenet"
    c.data.train_augment = "crop_flip"  # the paper's 224 crops with mirroring
    c.train.batch_size = 64  # the released solver's batch
    c.train.num_steps = 120_000  # three 40k stages (our choice of length)
    c.train.log_every = 100
    c.train.checkpoint_every = 5_000
    c.train.keep_checkpoints = 3
    c.train.eval_every = 20_000
    c.eval.batch_size = 64
    # The released GoogLeNet-CAM solver: base lr 1e-3, x0.1 every 40k iterations, momentum
    # 0.9, weight decay 5e-4; the new CAM layers learn faster than the pretrained backbone.
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "step"
    c.optimizer.lr_decay_every = 40_000
    c.optimizer.lr_decay_factor = 0.1
    c.optimizer.warmup_steps = 0
    c.optimizer.head_lr_multiplier = 10.0
    return c
