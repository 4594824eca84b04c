"""The paper's fine-tuning recipe, shared by the per-experiment configs.

Each ``configs/<model>_<data>.py`` is ``default.get_config()`` with these overrides and its
own model name; this module only keeps the overrides in one place.
"""

import ml_collections

from configs import default


def _paper(model_name: str, data_name: str, sync_batch_norm: bool) -> ml_collections.ConfigDict:
    c = default.get_config()
    c.model.name = model_name
    # BatchNorm backbones: statistics over the global batch (bn_axis_name = the data axis).
    c.model.sync_batch_norm = sync_batch_norm
    c.data.name = data_name
    c.data.image_size = 224
    c.data.normalization = "imagenet"
    c.data.train_augment = "crop_flip"  # the paper's 224 crops with mirroring
    c.train.batch_size = 64  # the released solver's batch
    c.train.log_every = 100
    c.train.keep_checkpoints = 3
    c.eval.batch_size = 64
    # The released GoogLeNet-CAM solver (solver_imagenet_googlenetCAM.prototxt): base lr
    # 1e-3, x0.1 every 40k iterations, momentum 0.9, weight decay 5e-4. The x10 head
    # learning rate is camjax's choice (a common fine-tuning default): the released
    # prototxts give the CAM layers lr_mult 1 / 2 like every other layer (as_released()).
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "step"
    c.optimizer.lr_decay_factor = 0.1
    c.optimizer.warmup_steps = 0
    c.optimizer.head_lr_multiplier = 10.0
    return c


def imagenet(model_name: str, sync_batch_norm: bool = False) -> ml_collections.ConfigDict:
    """ILSVRC2012: x0.1 every 40k iterations (the released solver), three stages."""
    c = _paper(model_name, "imagenet2012", sync_batch_norm)
    c.train.num_steps = 120_000  # three 40k stages (our choice of length)
    c.train.checkpoint_every = 5_000
    c.train.eval_every = 20_000
    c.optimizer.lr_decay_every = 40_000
    return c


def cub(model_name: str, sync_batch_norm: bool = False) -> ml_collections.ConfigDict:
    """CUB-200-2011: the same recipe scaled to 5,994 training images."""
    c = _paper(model_name, "caltech_birds2011", sync_batch_norm)
    c.train.num_steps = 20_000  # our choice: ~200 epochs of 5,994 images
    c.train.checkpoint_every = 2_000
    c.train.eval_every = 5_000
    c.optimizer.lr_decay_every = 8_000
    return c


def as_released(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The released Caffe recipe's multipliers: every layer, the CAM layers included,
    ``lr_mult`` 1 on weights and 2 on biases (train_val_googlenetCAM.prototxt l. 45-60,
    1704-1760); no faster head. (The released VGG16-CAM head conv has ``group: 2``,
    deploy_vgg16CAM.prototxt l. 333, which camjax's CAM head does not model.)"""
    c.optimizer.head_lr_multiplier = 1.0
    c.optimizer.bias_lr_multiplier = 2.0
    return c
