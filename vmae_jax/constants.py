"""Constants more than one wing reads, kept in one place."""

# Per-channel mean / std of [0, 1] RGB pixels. ImageNet's are what VideoMAE V1/V2 normalise with (inputs, and the
# de-normalisation before the pixel target); CLIP's are OpenAI CLIP's preprocessing constants (EVL); UniFormerV2
# trains with 0.45 / 0.225 on every channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UNIFORMERV2_MEAN = (0.45, 0.45, 0.45)
UNIFORMERV2_STD = (0.225, 0.225, 0.225)

# The dataset splits: `<split>.csv` annotation lists, TFDS splits, `eval.split`.
SPLITS = ('train', 'val', 'test')
