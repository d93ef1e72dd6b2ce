"""Logit distillation of the K710 ViT-g (teacher) into ViT-B (student), as V2's released `vit_b_k710_dl_from_giant`.

    python -m vmae_jax.main --config=configs/distill_g_to_b.py --workdir=DIR \
        --config.distill.teacher=VITG_K710_WORKDIR --config.init.checkpoint=VITB_K710_WORKDIR \
        --config.data.path=K710_LISTS --config.data.root=VIDEOS

What the VideoMAE V2 release fixes (docs/fidelity.md, "Recipes"): teacher = the K710-fine-tuned ViT-g, student
initialised from its own K710-fine-tuned model, trained on K710 on the teacher's logits, tested without further
fine-tuning (81.5 K710 / 86.6 K400 for ViT-B). The loss, temperature and epochs are not in the official repos; here:
pure logit distillation (alpha 1, temperature 1, KL), and the student's own V2 K710 fine-tune recipe otherwise
(16 × 32 = 512 videos, num_sample 2, base lr 7e-4 → 1.4e-3, layer decay 0.75, drop path 0.1, 90 epochs with 5
warmup; docs/fidelity.md, "Recipes": "V2 vit_b_k710").
"""
from vmae_jax.train import schema


def get_config(arg: str = ''):
  c = schema.defaults('distill')
  c.batch_size = 512
  c.num_epochs = 90
  c.warmup_epochs = 5
  c.eval.every_steps = 2000
  c.model.update(dict(name='vit_base_patch16_224', num_classes=710, drop_path_rate=0.1, use_mean_pooling=True,
                      dtype='bfloat16'))
  c.data.update(dict(source='list', num_frames=16, sampling_rate=4, sampling='dense', num_sample=2,
                     test_num_segment=5, test_num_crop=3))
  c.optim.update(dict(base_lr=7e-4, min_lr=1e-6, b1=0.9, b2=0.999, weight_decay=0.05, layer_decay=0.75))
  c.distill.update(dict(temperature=1.0, alpha=1.0))
  c.eval.max_videos = 2000   # periodic single-view val on 2000 videos spread over the list; the end: all, multi-view
  return schema.variant(c, arg)
