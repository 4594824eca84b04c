"""VGGnet-GAP on ILSVRC2012, the authors' released recipe (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/vgg16_gap_imagenet_as_released.py \
        --workdir runs/vgg16_gap_imagenet_as_released \
        --config.init_from=/path/to/vgg16-397923af.pth --config.data.manual_dir=/path/ilsvrc

Recipe: as released (``paper_recipe.as_released``): the released solver (base lr 1e-3,
x0.1 every 40k iterations, momentum 0.9, weight decay 5e-4, batch 64) with every layer's
Caffe multipliers, ``lr_mult`` 1 on weights and 2 on biases, the CAM layers included (no
x10 head). Not modelled: the released head conv has ``group: 2``
(deploy_vgg16CAM.prototxt l. 333). Compare with ``configs/vgg16_gap_imagenet.py``,
camjax's recipe (x10 head).

Aims at (ILSVRC val, protocol ``released`` with ``eval.ten_crop``): localization error
top-1/top-5 57.20/45.14, classification error 33.4/12.2 (paper, Table 1-2).
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.as_released(paper_recipe.imagenet("vgg16_gap"))
