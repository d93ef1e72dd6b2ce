"""Temporal adapters through the shared training loop: each recipe's :smoke run initialised from a converted CLIP
checkpoint (HF layout), checkpoints + `vmae_jax.load`, BatchNorm statistics saved and resumed, the frozen EVL
backbone (bit-identical, no optimizer state), the head remap by class names, and learning above chance on the
synthetic motion data."""
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch
import torch_refs
from recipes import load_config
from transformers import CLIPVisionConfig, CLIPVisionModel

import vmae_jax
from vmae_jax import convert, models
from vmae_jax.data import annotations
from vmae_jax.main import run
from vmae_jax.weights import initialize
from vmae_jax.weights.initialize import restore_any

ROOT = os.path.join(os.path.dirname(__file__), '..')
LABELS = annotations.KINETICS_DIR   # the class lists shipped with the package
ADAPTER_CONFIGS = ['uniformerv2_b16_k400', 'uniformerv2_b16_ssv2', 'evl_b16_k400']


pytestmark = pytest.mark.usefixtures('synthetic_cache')


@pytest.fixture(scope='module')
def clip_ckpt(tmp_path_factory):
  """A random HF CLIPVisionModel of the :smoke backbone's shape (32 px, p=8, width 32, 2 blocks, 2 heads),
  converted as a user would convert openai/clip-vit-base-patch16."""
  base = tmp_path_factory.mktemp('clip')
  torch.manual_seed(0)
  hf = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=32, patch_size=8, hidden_act='quick_gelu'))
  torch_refs.randomize_(hf, 0).save_pretrained(base / 'hf')
  convert.convert(str(base / 'hf'), str(base / 'ckpt'))
  return str(base / 'ckpt')


@pytest.fixture(scope='module')
def runs(tmp_path_factory, clip_ckpt):
  base = tmp_path_factory.mktemp('runs')
  out = {}
  for name in ADAPTER_CONFIGS:
    c = load_config(name, 'smoke')
    c.init.checkpoint = clip_ckpt
    out[name] = (str(base / name), run(c, str(base / name)))
  return out


@pytest.mark.parametrize('name', ADAPTER_CONFIGS)
def test_recipes_pass_the_checks(name):
  from vmae_jax.train import schema
  for arg in ('', 'smoke'):
    c = load_config(name, arg)
    model = schema.check(c, num_devices=8, num_processes=1).model
    assert model.kind in ('uniformerv2', 'evl') and model.num_frames == c.data.num_frames
  full = load_config(name)
  clip_mean = (0.48145466, 0.4578275, 0.40821073)
  assert tuple(full.data.mean) == (clip_mean if name.startswith('evl') else (0.45, 0.45, 0.45))


@pytest.mark.parametrize('name', ADAPTER_CONFIGS)
def test_smoke_runs_from_clip(runs, name):
  workdir, results = runs[name]
  assert 0 <= results['eval/top1'] <= results['eval/top5'] <= 100 and results['eval/videos'] > 0
  m = vmae_jax.load(workdir)
  assert m.config.kind == ('evl' if name.startswith('evl') else 'uniformerv2')
  video = np.zeros((2, m.config.num_frames, 32, 32, 3), np.float32)
  assert m.classify(video).shape == (2, m.config.num_classes)


def test_ssv2_batch_stats_are_trained_saved_and_resumed(runs, clip_ckpt):
  workdir, _ = runs['uniformerv2_b16_ssv2']
  m = vmae_jax.load(workdir)
  bn = m.variables['batch_stats']['backbone']['resblocks_0']['lmhra1']['bn']
  assert float(np.abs(np.asarray(bn['mean'])).max()) > 0 and not np.allclose(bn['var'], 1.0)
  # the same command with more steps resumes from the last checkpoint (batch_stats restored from their item); a
  # longer schedule is a change the resumed run must be allowed explicitly
  c = load_config('uniformerv2_b16_ssv2', 'smoke')
  c.init.checkpoint = clip_ckpt
  c.num_train_steps = 6
  c.resume.allow_changes = ('num_train_steps',)
  run(c, workdir)
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    steps = [json.loads(line)['step'] for line in f if 'loss' in json.loads(line)]
  assert steps[-2:] == [5, 6] and steps.count(5) == 1
  again = vmae_jax.load(workdir).variables['batch_stats']['backbone']['resblocks_0']['lmhra1']['bn']
  assert not np.array_equal(again['mean'], bn['mean'])


def test_evl_backbone_frozen_bitwise_and_stateless(runs, clip_ckpt):
  workdir, _ = runs['evl_b16_k400']
  clip_config, clip = restore_any(clip_ckpt)
  config, trained = restore_any(workdir)
  same = jax.tree_util.tree_map(lambda a, b: np.array_equal(a, b), clip, trained['backbone'])
  assert all(jax.tree_util.tree_leaves(same))
  # ... while the decoder moved away from its initial values (the run's init: seed 0, from the same CLIP)
  start = initialize.init_adapter(clip, clip_config, config, jax.random.key(0))
  assert not np.array_equal(start['decoder_layers_0']['q_kernel'], trained['decoder_layers_0']['q_kernel'])
  np.testing.assert_array_equal(start['backbone']['embed']['conv1'], trained['backbone']['embed']['conv1'])
  # the optimizer state of the last checkpoint holds moments for the trained parameters only
  root = os.path.join(workdir, 'checkpoints')
  with ocp.CheckpointManager(root, item_names=('train_state',)) as mngr:
    state = mngr.restore(mngr.latest_step(), args=ocp.args.Composite(train_state=ocp.args.StandardRestore()))
  opt_leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(state['train_state']['opt_state'])]
  trained_count = sum(a.size for k, v in trained.items() if k != 'backbone' for a in jax.tree_util.tree_leaves(v))
  backbone_count = sum(a.size for a in jax.tree_util.tree_leaves(trained['backbone']))
  opt_count = sum(a.size for a in opt_leaves if a.ndim > 0)
  assert opt_count == 2 * trained_count, (opt_count, trained_count, backbone_count)   # Adam mu and nu, nothing else


def test_adapter_head_remapped_by_class_names(runs):
  """A 400-class adapter checkpoint initialising a 4-class one by name (the K710 → K400 path of the ViTs)."""
  workdir, _ = runs['evl_b16_k400']
  src_config, src = restore_any(workdir)
  with open(os.path.join(LABELS, 'label_map_k400.txt')) as f:
    names = [line.strip() for line in f if line.strip()]
  assert len(names) == 400
  target = [names[7], names[3], names[399], names[0]]
  config = src_config.replace(num_classes=4)
  params = initialize.init_adapter(src, src_config, config, jax.random.key(0), names, target)
  np.testing.assert_array_equal(params['head_kernel'], np.asarray(src['head_kernel'])[:, [7, 3, 399, 0]])
  np.testing.assert_array_equal(params['head_bias'], np.asarray(src['head_bias'])[[7, 3, 399, 0]])
  np.testing.assert_array_equal(params['cross_attention_1']['w1'], src['cross_attention_1']['w1'])
  with pytest.raises(initialize.ClipInitError, match="cannot initialise a 'uniformerv2' model"):
    initialize.init_adapter(src, src_config, models.get_config('uniformerv2_b16', **{
        f: getattr(src_config, f) for f in ('img_size', 'patch_size', 'embed_dim', 'depth', 'num_heads',
                                            'decoder_embed_dim', 'decoder_num_heads', 'decoder_depth',
                                            'num_frames')}), jax.random.key(0))


# --- learning ------------------------------------------------------------------------------------------------
# Each adapter with a randomly initialised tiny CLIP backbone (no real CLIP weights offline; the :smoke sizes:
# 32 px, p=8, width 32, 2 blocks, 2 global blocks / decoder layers) on the synthetic motion data reduced to its first two classes, move_left and move_right: one frame
# cannot tell them apart, the direction of motion can. The easier look of the demo, 400 clips per class (fewer let
# the frozen-feature EVL memorise the training clips instead), 8 frames, no dropout. Val: 80 clips per class.
# UniFormerV2 is run in its Something-Something layout (local temporal UniBlocks, temporal downsampling, global
# blocks): in the Kinetics layout, whose only temporal path is the global blocks over a random backbone, the loss
# stayed at ln 2 for 200 steps (BENCHMARKS.md).
LEARN_CLASSES = 2
LEARN_SYNTHETIC = dict(num_classes=LEARN_CLASSES, clips_per_class=400, num_frames=8, size=32, val_fraction=0.2,
                       test_fraction=0.0, background_contrast=0.15, radius_range=(0.15, 0.3),
                       travel_range=(0.5, 0.8))


LEARN_EVL_STEPS, LEARN_EVL_LR, LEARN_EVL_THRESHOLD = 250, 2e-3, 70.0


def learn_config(name, steps, peak_lr):
  c = load_config(name, 'smoke')   # no init.checkpoint: the model's own random init of the CLIP backbone
  c.data.synthetic.update(LEARN_SYNTHETIC)
  c.data.update(dict(num_frames=8, sampling='dense' if name.startswith('evl') else 'segment', sampling_rate=1,
                     input_size=32, short_side=32, flip=False, rand_augment=False, erase_prob=0.0,
                     crop_scale=(0.6, 1.0), num_sample=1, test_num_segment=1, test_num_crop=1))
  c.model.update(dict(num_classes=LEARN_CLASSES, decoder_drop_rate=0.0, head_drop_rate=0.0, drop_path_rate=0.0,
                      decoder_drop_path_rate=0.0))
  c.batch_size, c.num_train_steps, c.warmup_steps = 16, steps, 5
  c.checkpoint_every_steps, c.log_every_steps = steps, 50
  c.eval.update(dict(every_steps=0, batch_size=16, max_videos=0, final_multi_view=False))
  c.optim.update(dict(base_lr=peak_lr * 256 / c.batch_size, min_lr=peak_lr * 256 / c.batch_size / 100))
  return c


@pytest.mark.parametrize('name, steps, peak_lr, threshold', [
    ('uniformerv2_b16_ssv2', 150, 1e-3, 85.0),
    ('evl_b16_k400', LEARN_EVL_STEPS, LEARN_EVL_LR, LEARN_EVL_THRESHOLD),
])
def test_learns_motion_above_chance(tmp_path, name, steps, peak_lr, threshold):
  results = run(learn_config(name, steps, peak_lr), str(tmp_path / name))
  print(f'  {name}: val top-1 {results["eval/top1"]:.1f} on {results["eval/videos"]} clips after {steps} steps '
        f'(chance {100 / LEARN_CLASSES:.0f}, threshold {threshold:.0f})')
  assert results['eval/videos'] == 160 and results['eval/top1'] >= threshold
