"""ResNet50-CAM on ILSVRC2012 (not in Zhou et al. 2016; the WSOL benchmark's backbone).

Command::

    python train.py --config configs/resnet50_gap_imagenet.py --workdir runs/resnet50_gap_imagenet \
        --config.init_from=/path/to/resnet50-0676ba61.pth --config.data.manual_dir=/path/ilsvrc

Hardware and time (estimate, not measured here): 8 GPUs of the A100/H100 class, data
parallel, about 1-2 days for the 120k steps at batch 64; bfloat16
(``--config.model.dtype=bfloat16``) roughly halves that.

Recipe: the WSOL benchmark's ResNet50-CAM (clovaai/wsolevaluation ``wsol/resnet.py``:
no conv between layer4 and GAP; ``main.py`` l. 74, 156-158: ``layer4`` and the classifier
at ``lr_classifier_ratio`` 10 times the base lr) on camjax's schedule.

Aims at (ILSVRC val): MaxBoxAccV2 63.7 for vanilla CAM on ResNet50 (Choe et al., CVPR
2020), under ``eval.metrics`` ``wsol_box`` (protocol ``wsol``).
"""

from configs import paper_recipe


def get_config():
    c = paper_recipe.imagenet("resnet50_gap", sync_batch_norm=True)
    # As the benchmark's ResNet50-CAM: GAP straight on layer4 (no extra conv), and
    # layer4 learns as fast as the classifier (x10; wsolevaluation main.py l. 74).
    c.model.kwargs.head_convs = ()
    c.optimizer.lr_multipliers = ",".join(f"backbone/layer4_{i}=10" for i in range(3))
    return c
