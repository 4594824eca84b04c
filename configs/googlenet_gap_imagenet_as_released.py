"""GoogLeNet-GAP on ILSVRC2012, the authors' released recipe (Zhou et al., CVPR 2016).

Command::

    python train.py --config configs/googlenet_gap_imagenet_as_released.py \
        --workdir runs/googlenet_gap_imagenet_as_released \
        --config.init_from=/path/to/googlenet-1378be20.pth --config.data.manual_dir=/path/ilsvrc

Recipe: as released (``paper_recipe.as_released``): the released solver (base lr 1e-3,
x0.1 every 40k iterations, momentum 0.9, weight decay 5e-4, batch 64) with every layer's
Caffe multipliers, ``lr_mult`` 1 on weights and 2 on biases, the CAM layers included (no
x10 head). The released GoogLeNet-CAM head conv has ``group: 2``
(train_val_googlenetCAM.prototxt l. 1720), not modelled. Compare with
``configs/googlenet_gap_imagenet.py``, camjax's recipe (x10 head).

Aims at (ILSVRC val, protocol ``released`` with ``eval.ten_crop``): localization error
top-1/top-5 56.40/43.00, classification error 35.0/13.2 (paper, Table 1-2).
"""

from configs import paper_recipe


def get_config():
    c = paper_recipe.as_released(paper_recipe.imagenet("googlenet_gap", sync_batch_norm=True))
    c.model.kwargs.transform_input = True  # torchvision's GoogLeNet weights expect it
    return c
