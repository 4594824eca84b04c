"""Default config: ``tiny_gap`` on the embedded ``camjax_shapes`` data set, on a CPU.

Run: ``python train.py --config configs/default.py --workdir runs/default``.
Every other config starts from ``get_config()`` here and overrides fields only.

Sized for ``make demo`` on a fresh clone (data set generated first) on a small x86 CPU,
with the opt-in CPU tuning of ``config.cpu``; the README gives the measured time,
accuracy and box numbers.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.model = ml_collections.ConfigDict()
    c.model.name = "tiny_gap"
    c.model.kwargs = ml_collections.ConfigDict()  # passed to camjax.models.create
    # Compute dtype ("float32" | "bfloat16"); params and the loss stay float32.
    c.model.dtype = "float32"
    # BatchNorm backbones: True passes bn_axis_name="batch" (statistics over the global
    # batch); False keeps per-device statistics (averaged after each step so replicas
    # stay equal). Ignored by models without BatchNorm.
    c.model.sync_batch_norm = False
    # Pretrained weights file for camjax.pretrained.load_into (None: from scratch).
    c.init_from = ml_collections.FieldReference(None, field_type=str)

    c.data = ml_collections.ConfigDict()
    c.data.name = "camjax_shapes"  # camjax_shapes|imagenet2012|caltech_birds2011|folder|tfds
    c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.data.manual_dir = ml_collections.FieldReference(None, field_type=str)
    # ILSVRC2012 validation boxes (folder of XML files or CSV); ImageNet only.
    c.data.val_boxes = ml_collections.FieldReference(None, field_type=str)
    # Model input side. 32 px (the generator draws at 64, the pipeline resizes): 4x less
    # compute than 64 px, for the demo's time target (README).
    c.data.image_size = 32
    c.data.train_augment = "crop_flip"  # crop_flip | random_resized_crop | none
    c.data.normalization = "imagenet"  # imagenet | minus127_div128 | unit
    c.data.train_split = "train"
    c.data.eval_split = "validation"
    c.data.shuffle_buffer = 4096
    # Hold the decoded train split in memory (read and decoded once, reshuffled in full
    # each epoch) when its decoded size is known and at most this many MiB; 0 = never.
    c.data.cache_decoded_mb = 1024
    c.data.max_boxes = 8
    # Embedded data set only: examples per split and the generator's image side.
    c.data.shapes = ml_collections.ConfigDict()
    c.data.shapes.num_train = 16000  # fewer overfit tiny_gap
    c.data.shapes.num_validation = 500
    c.data.shapes.num_test = 500
    c.data.shapes.image_size = 64
    c.data.shapes.seed = 0  # the data set's own seed (not c.seed, the run's)
    # Own data (data.name = "folder"; camjax/data/image_folder.py): root/<class>/<image> or
    # root/<split>/<class>/<image>; boxes: a folder of VOC .xml, a COCO .json or a .csv.
    c.data.folder = ml_collections.ConfigDict()
    c.data.folder.root = ml_collections.FieldReference(None, field_type=str)
    c.data.folder.boxes = ml_collections.FieldReference(None, field_type=str)
    c.data.folder.box_format = "auto"  # auto | voc | coco | csv
    c.data.folder.one_based = False  # VOC/CSV corners count from 1 (PASCAL VOC devkit)
    c.data.folder.masks = ml_collections.FieldReference(None, field_type=str)  # PNG folder
    c.data.folder.val_fraction = 0.1  # root/<class> layout: share held out as "validation"
    c.data.folder.split_seed = 0
    # Any TFDS data set (data.name = "tfds"; camjax/data/tfds_any.py); "/" for nesting.
    c.data.tfds = ml_collections.ConfigDict()
    c.data.tfds.name = ml_collections.FieldReference(None, field_type=str)
    c.data.tfds.image_key = "image"
    c.data.tfds.label_key = "label"  # a scalar ClassLabel
    c.data.tfds.boxes_key = ml_collections.FieldReference(None, field_type=str)  # BBox(es)
    c.data.tfds.mask_key = ml_collections.FieldReference(None, field_type=str)

    # Training (camjax.train). batch_size is global (all devices, all processes).
    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 64
    # Sized, with its evaluation, for the demo's time target (README).
    c.train.num_steps = 3500
    c.train.log_every = 250
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 2
    c.train.async_checkpoints = True
    c.train.eval_every = 0  # 0: evaluate at the end only

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 0.05
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.head_lr_multiplier = 1.0  # > 1 when the backbone is pretrained
    c.optimizer.schedule = "cosine"  # step | cosine | constant
    c.optimizer.lr_decay_every = 0  # step schedule: multiply by lr_decay_factor every N
    c.optimizer.lr_decay_factor = 0.1
    c.optimizer.warmup_steps = 30  # cosine schedule only
    c.optimizer.bias_lr_multiplier = 1.0  # the released Caffe solvers: 2 (lr_mult 1 / 2)
    c.optimizer.lr_multipliers = ""  # "path/prefix=mult,...", e.g. "backbone/layer4_0=10"

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 128
    c.eval.cam_threshold_steps = 100  # MaxBoxAccV2 CAM thresholds in [0, 1)
    c.eval.iou_thresholds = (0.3, 0.5, 0.7)
    c.eval.max_batches = 0  # 0: the whole split
    # Metric names (camjax.metrics) for evaluate.py, and the cheaper subset
    # that training's periodic evaluation computes (with classification accuracy).
    # paper_loc: the paper's localization errors (maps divided by their max, 20% cut);
    # released_loc / wsol_box: the released code's and Choe et al.'s exact protocols
    # (host-side, slower); loc_error / heuristic: camjax's min-max rule.
    c.eval.metrics = ("paper_loc", "max_box_acc", "max_box_acc_v2", "pxap")
    c.eval.train_metrics = ("max_box_acc_v2",)
    c.eval.blacklist = ""  # devkit blacklist file (validation image numbers); "" = none
    c.eval.ten_crop = False  # the released ten-crop testing (256x256 resize, 10 crops)
    c.eval.released_jpeg_quality = 0  # 0: no JPEG round trip of the released heatmaps
    # Faithfulness metrics (average_drop, insertion_deletion, road): which class's map is
    # perturbed ("top1" predicted or "gt"), insertion/deletion steps, ROAD's settings.
    c.eval.faithfulness_class = "top1"
    c.eval.faithfulness_steps = 8
    c.eval.road_fractions = (0.2, 0.4, 0.6, 0.8)
    c.eval.road_noise = 0.01
    c.eval.road_seed = 0

    # Opt-in CPU tuning (camjax/cpu.py); nothing changes on a GPU or TPU. cpu.devices: the
    # entry points (camjax train / evaluate / demo) split the host CPU into this many JAX
    # devices (the largest count <= it that divides the batch) so that data parallelism
    # keeps every core busy; 0 = JAX's one CPU device. cpu.shifted_depthwise: depthwise
    # convolutions (EfficientNet-Lite0) as shifted slices in CPU programs.
    c.cpu = ml_collections.ConfigDict()
    c.cpu.devices = 4
    c.cpu.shifted_depthwise = True

    c.parallel = "shard_map"  # shard_map | pmap
    c.distributed = ml_collections.ConfigDict()
    # jax.distributed.initialize: "auto" when JAX's cluster env vars are set (or
    # coordinator_address is given), "on" always, "off" never.
    c.distributed.mode = "auto"
    c.distributed.coordinator_address = ml_collections.FieldReference(None, field_type=str)
    c.distributed.num_processes = ml_collections.FieldReference(None, field_type=int)
    c.distributed.process_id = ml_collections.FieldReference(None, field_type=int)
    c.distributed.cpu_collectives = "gloo"  # CPU-only multi-process runs

    return c
