"""AlexNet-GAP on ILSVRC2012, the authors' released recipe (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/alexnet_gap_imagenet_as_released.py \
        --workdir runs/alexnet_gap_imagenet_as_released \
        --config.init_from=/path/to/alexnet-owt-7be5be79.pth --config.data.manual_dir=/path/ilsvrc

Recipe: as released (``paper_recipe.as_released``): the released solver (base lr 1e-3,
x0.1 every 40k iterations, momentum 0.9, weight decay 5e-4, batch 64) with every layer's
Caffe multipliers, ``lr_mult`` 1 on weights and 2 on biases, the CAM layers included (no
x10 head). Compare with ``configs/alexnet_gap_imagenet.py``, camjax's recipe (x10 head).

Aims at (ILSVRC val, protocol ``released`` with ``eval.ten_crop``): localization error
top-1/top-5 67.19/52.16, classification error 51.1/26.3 (paper, Table 1-2).
"""

from configs import paper_recipe


def get_config():
    return paper_recipe.as_released(paper_recipe.imagenet("alexnet_gap"))
