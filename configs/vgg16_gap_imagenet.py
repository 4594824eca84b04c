"""VGGnet-GAP on ILSVRC2012 (Zhou et al., CVPR 2016, Sec. 2-3).

Command::

    python train.py --config configs/vgg16_gap_imagenet.py --workdir runs/vgg16_gap_in \
        --config.init_from=/path/to/vgg16-397923af.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Recipe: camjax's (``paper_recipe``): the released solver's schedule with a x10 head
learning rate (camjax's choice; ``*_as_released`` configs follow the released lr_mult
1/2). Localization numbers of the paper: protocol ``released`` (``eval.metrics``
``released_loc``, ``eval.ten_crop``); of Choe et al.: protocol ``wsol`` (``wsol_box``).

Aims at (ILSVRC val): localization error top-1/top-5 57.20/45.14 and classification
error 33.4/12.2 (paper); MaxBoxAccV2 60.0 for vanilla CAM on VGG (Choe et al., CVPR 2020).
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.imagenet("vgg16_gap")
