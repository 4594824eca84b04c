"""Default config: ``tiny_gap`` on the embedded ``camjax_shapes`` data set (2 CPU cores).

Run: ``python train.py --config configs/default.py --workdir runs/default``.
Every other config starts from ``get_config()`` here and overrides fields only.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "tiny_gap"
    c.model.kwargs = ml_collections.ConfigDict()  # passed to camjax.models.create

    c.data = ml_collections.ConfigDict()
    c.data.name = "camjax_shapes"  # camjax_shapes | imagenet2012 | caltech_birds2011
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)
    # ILSVRC2012 validation boxes (folder of XML files or CSV); ImageNet only.
    c.data.val_boxes = ml_collections.FieldReference(None, field_type=str)
    c.data.image_size = 64
    c.data.train_augment = "crop_flip"  # crop_flip | random_resized_crop | none
    c.data.normalization = "imagenet"  # imagenet | minus127_div128 | unit
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.shuffle_buffer = 4096
    c.data.max_boxes = 8
    # Embedded data set only: examples per split and the generator's image side.
    c.data.shapes = ml_collections.ConfigDict()
    c.data.shapes.num_train = 4000
    c.data.shapes.num_validation = 500
    c.data.shapes.num_test = 500
    c.data.shapes.image_size = 64

    return c
