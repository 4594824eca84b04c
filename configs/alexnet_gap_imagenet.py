"""AlexNet-GAP on ILSVRC2012 (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/alexnet_gap_imagenet.py --workdir runs/alexnet_gap_imagenet \
        --config.init_from=/path/to/alexnet-owt-7be5be79.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Recipe: camjax's (``paper_recipe``): the released solver's schedule with a x10 head
learning rate (camjax's choice; ``*_as_released`` configs follow the released lr_mult
1/2). Localization numbers of the paper: protocol ``released`` (``eval.metrics``
``released_loc``, ``eval.ten_crop``); of Choe et al.: protocol ``wsol`` (``wsol_box``).

Aims at (ILSVRC val): localization error top-1/top-5 67.19/52.16 and classification
error 51.1/26.3 (paper).
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.imagenet("alexnet_gap")
