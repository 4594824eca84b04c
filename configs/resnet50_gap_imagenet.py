"""ResNet50-CAM on ILSVRC2012 (not in Zhou et al. 2016; the WSOL benchmark's backbone).

Command::

    python train.py --config configs/resnet50_gap_imagenet.py --workdir runs/resnet50_gap_imagenet \
        --config.init_from=/path/to/resnet50-0676ba61.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Aims at (ILSVRC val): MaxBoxAccV2 63.7 for vanilla CAM on ResNet50 (Choe et al., CVPR
2020).
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.imagenet("resnet50_gap", sync_batch_norm=True)
