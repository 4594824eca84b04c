"""GoogLeNet-GAP on ILSVRC2012 (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/googlenet_gap_imagenet.py \
        --workdir runs/googlenet_gap_imagenet \
        --config.init_from=/path/to/googlenet-1378be20.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Recipe: camjax's (``paper_recipe``): the released solver's schedule with a x10 head
learning rate (camjax's choice; ``*_as_released`` configs follow the released lr_mult
1/2). Localization numbers of the paper: protocol ``released`` (``eval.metrics``
``released_loc``, ``eval.ten_crop``); of Choe et al.: protocol ``wsol`` (``wsol_box``).

Aims at (ILSVRC val): localization error top-1/top-5 56.40/43.00 and classification
error 35.0/13.2 (paper); MaxBoxAccV2 63.4 for vanilla CAM on Inception (Choe et al.,
CVPR 2020; their backbone is Inception-v3, not GoogLeNet).
"""

from configs import paper_recipe


def get_config():
    c = paper_recipe.imagenet("googlenet_gap", sync_batch_norm=True)
    # torchvision's GoogLeNet weights were trained on inputs re-normalised inside the
    # network (transform_input=True); the recipe feeds ImageNet-normalised images.
    c.model.kwargs.transform_input = True
    return c
