"""GoogLeNet-GAP fine-tuned on CUB-200-2011 (Zhou et al., CVPR 2016, Sec. 4.1).

Command::

    python train.py --config configs/googlenet_gap_cub.py --workdir runs/googlenet_gap_cub \
        --config.init_from=/path/to/googlenet-1378be20.pth --config.data.data_dir=/path/tfds

Hardware and time (estimate, not measured here): one A100/H100-class GPU, a few hours
for 20k steps at batch 64 (5,994 training images: about 200 epochs).

Aims at (CUB test split): MaxBoxAccV2 56.7 for vanilla CAM on Inception-v3 (Choe et
al.'s stand-in for GoogLeNet) (Choe et al., CVPR 2020); the paper reports CUB
localization for GoogLeNet-GAP in Sec. 4.1.
"""

from configs import default


def get_config():
    c = default.get_config()
    # BatchNorm statistics over the global batch (bn_axis_name = the data axis).
    c.model.sync_batch_norm = True
    c.model.name = "googlenet_gap"
    c.data.name = "caltech_birds2011"
    c.data.image_size = 224
    c.data.normalization = "imagenet"
    c.data.train_augment = "crop_flip"
    c.train.batch_size = 64
    c.train.num_steps = 20_000  # our choice: ~200 epochs of 5,994 images
    c.train.log_every = 100
    c.train.checkpoint_every = 2_000
    c.train.keep_checkpoints = 3
    c.train.eval_every = 5_000
    c.eval.batch_size = 64
    # Paper recipe (SGD 0.9, wd 5e-4, x0.1 steps) scaled to the smaller set; the new
    # CAM layers learn 10x faster than the ImageNet-pretrained backbone.
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "step"
    c.optimizer.lr_decay_every = 8_000
    c.optimizer.lr_decay_factor = 0.1
    c.optimizer.warmup_steps = 0
    c.optimizer.head_lr_multiplier = 10.0
    return c
