"""VGGnet-GAP fine-tuned on CUB-200-2011 (Zhou et al., CVPR 2016, Sec. 4.1).

Command::

    python train.py --config configs/vgg16_gap_cub.py --workdir runs/vgg16_gap_cub \
        --config.init_from=/path/to/vgg16-397923af.pth --config.data.data_dir=/path/tfds

Hardware and time (estimate, not measured here): one A100/H100-class GPU, a few hours
for 20k steps at batch 64 (5,994 training images: about 200 epochs).

Recipe: camjax's (``paper_recipe``): the released solver's schedule with a x10 head
learning rate (camjax's choice; ``*_as_released`` configs follow the released lr_mult
1/2). Localization numbers of the paper: protocol ``released`` (``eval.metrics``
``released_loc``, ``eval.ten_crop``); of Choe et al.: protocol ``wsol`` (``wsol_box``).

Aims at (CUB test split): MaxBoxAccV2 63.7 for vanilla CAM on VGG (Choe et al., CVPR
2020); the paper reports CUB localization for GoogLeNet-GAP in Sec. 4.1.
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.cub("vgg16_gap")
