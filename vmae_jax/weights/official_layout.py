"""The official state-dict layout of a model config, and the exact tensor moves between it and our parameter tree.

One table (`official_layout`) lists every official key with its torch shape, our parameter path, the layer index
for scanned stacks, and the transform. Both directions (import: `params_from_official`, export:
`official_from_params`) read that table, so they cannot drift apart.

Transforms (torch → ours):
  conv   (D, C, t, p, p) → (t, p, p, C, D)
  linear (out, in) → (in, out)
  qkv    (3·D, D) rows [q | k | v], heads contiguous → (D, 3, heads, head_dim)
  heads  (D,) → (heads, head_dim)
  proj   (D, D) → (heads, head_dim, D)
  same
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from vmae_jax.models.config import ModelConfig


class LayoutError(ValueError):
  """A state dict does not match the layout of the model config; the message names the first offending key."""


@dataclasses.dataclass(frozen=True)
class Entry:
  key: str                     # official state-dict key
  shape: tuple[int, ...]       # torch shape
  path: tuple[str, ...]        # our params path
  layer: int | None            # index on the leading `layers` axis, for scanned blocks
  transform: str
  heads: int = 0               # for qkv / heads / proj transforms


def _block_entries(prefix: str, path: tuple[str, ...], depth: int, dim: int, heads: int, hidden: int,
                   qkv_bias: bool) -> Iterator[Entry]:
  for i in range(depth):
    p = f'{prefix}blocks.{i}.'
    yield Entry(p + 'norm1.weight', (dim,), path + ('norm1', 'scale'), i, 'same')
    yield Entry(p + 'norm1.bias', (dim,), path + ('norm1', 'bias'), i, 'same')
    if qkv_bias:
      yield Entry(p + 'attn.q_bias', (dim,), path + ('attn', 'q_bias'), i, 'heads', heads)
      yield Entry(p + 'attn.v_bias', (dim,), path + ('attn', 'v_bias'), i, 'heads', heads)
    yield Entry(p + 'attn.qkv.weight', (3 * dim, dim), path + ('attn', 'qkv_kernel'), i, 'qkv', heads)
    yield Entry(p + 'attn.proj.weight', (dim, dim), path + ('attn', 'proj_kernel'), i, 'proj', heads)
    yield Entry(p + 'attn.proj.bias', (dim,), path + ('attn', 'proj_bias'), i, 'same')
    yield Entry(p + 'norm2.weight', (dim,), path + ('norm2', 'scale'), i, 'same')
    yield Entry(p + 'norm2.bias', (dim,), path + ('norm2', 'bias'), i, 'same')
    yield Entry(p + 'mlp.fc1.weight', (hidden, dim), path + ('mlp', 'fc1_kernel'), i, 'linear')
    yield Entry(p + 'mlp.fc1.bias', (hidden,), path + ('mlp', 'fc1_bias'), i, 'same')
    yield Entry(p + 'mlp.fc2.weight', (dim, hidden), path + ('mlp', 'fc2_kernel'), i, 'linear')
    yield Entry(p + 'mlp.fc2.bias', (dim,), path + ('mlp', 'fc2_bias'), i, 'same')


def official_layout(c: ModelConfig) -> list[Entry]:
  """Every key of the official state dict for this config, in the official code's state-dict order."""
  entries: list[Entry] = []
  pre = 'encoder.' if c.kind == 'pretrain' else ''
  d, t, p = c.embed_dim, c.tubelet_size, c.patch_size
  if c.kind == 'pretrain':
    entries.append(Entry('mask_token', (1, 1, c.decoder_embed_dim), ('mask_token',), None, 'same'))
  entries.append(Entry(pre + 'patch_embed.proj.weight', (d, c.in_chans, t, p, p), ('encoder', 'patch_embed', 'kernel'),
                       None, 'conv'))
  entries.append(Entry(pre + 'patch_embed.proj.bias', (d,), ('encoder', 'patch_embed', 'bias'), None, 'same'))
  entries += _block_entries(pre, ('encoder', 'blocks'), c.depth, d, c.num_heads, c.mlp_hidden_dim, c.qkv_bias)
  if c.kind == 'pretrain' or not c.use_mean_pooling:
    entries.append(Entry(pre + 'norm.weight', (d,), ('encoder', 'norm', 'scale'), None, 'same'))
    entries.append(Entry(pre + 'norm.bias', (d,), ('encoder', 'norm', 'bias'), None, 'same'))
  if c.kind == 'pretrain':
    dd = c.decoder_embed_dim
    entries += _block_entries('decoder.', ('decoder', 'blocks'), c.decoder_depth, dd, c.decoder_num_heads,
                              c.decoder_mlp_hidden_dim, c.qkv_bias)
    entries.append(Entry('decoder.norm.weight', (dd,), ('decoder', 'norm', 'scale'), None, 'same'))
    entries.append(Entry('decoder.norm.bias', (dd,), ('decoder', 'norm', 'bias'), None, 'same'))
    entries.append(Entry('decoder.head.weight', (c.decoder_num_classes, dd), ('decoder', 'head_kernel'), None,
                         'linear'))
    entries.append(Entry('decoder.head.bias', (c.decoder_num_classes,), ('decoder', 'head_bias'), None, 'same'))
    entries.append(Entry('encoder_to_decoder.weight', (dd, d), ('encoder_to_decoder',), None, 'linear'))
  else:
    if c.use_mean_pooling:
      entries.append(Entry('fc_norm.weight', (d,), ('fc_norm', 'scale'), None, 'same'))
      entries.append(Entry('fc_norm.bias', (d,), ('fc_norm', 'bias'), None, 'same'))
    if c.num_classes > 0:
      entries.append(Entry('head.weight', (c.num_classes, d), ('head_kernel',), None, 'linear'))
      entries.append(Entry('head.bias', (c.num_classes,), ('head_bias',), None, 'same'))
  return entries


def to_ours(e: Entry, w: np.ndarray) -> np.ndarray:
  if e.transform == 'same':
    return w
  if e.transform == 'conv':
    return w.transpose(2, 3, 4, 1, 0)
  if e.transform == 'linear':
    return w.T
  dim = e.shape[-1] if e.transform != 'heads' else e.shape[0]
  hd = dim // e.heads
  if e.transform == 'qkv':
    return w.T.reshape(dim, 3, e.heads, hd)
  if e.transform == 'heads':
    return w.reshape(e.heads, hd)
  if e.transform == 'proj':
    return w.T.reshape(e.heads, hd, e.shape[0])
  raise AssertionError(e.transform)


def to_official(e: Entry, w: np.ndarray) -> np.ndarray:
  if e.transform == 'same':
    return w
  if e.transform == 'conv':
    return w.transpose(4, 3, 0, 1, 2)
  if e.transform == 'linear':
    return w.T
  if e.transform == 'qkv':
    return w.reshape(w.shape[0], -1).T
  if e.transform == 'heads':
    return w.reshape(-1)
  if e.transform == 'proj':
    return w.reshape(-1, w.shape[-1]).T
  raise AssertionError(e.transform)


def check_state_dict(sd: dict[str, np.ndarray], c: ModelConfig, source: str) -> list[Entry]:
  """Raise LayoutError naming the first missing, unexpected or mis-shaped key; return the layout otherwise."""
  entries = official_layout(c)
  expected = {e.key: e for e in entries}
  for e in entries:
    if e.key not in sd:
      raise LayoutError(f'{source}: missing key {e.key!r} (expected shape {e.shape} for model {c.name or c.kind})')
  for k in sd:
    if k not in expected:
      raise LayoutError(f'{source}: unexpected key {k!r} with shape {tuple(np.shape(sd[k]))} '
                        f'(not part of model {c.name or c.kind})')
  for e in entries:
    if tuple(np.shape(sd[e.key])) != e.shape:
      raise LayoutError(f'{source}: key {e.key!r} has shape {tuple(np.shape(sd[e.key]))}, expected {e.shape}')
  return entries


def params_from_official(sd: dict[str, np.ndarray], c: ModelConfig, source: str = 'state dict') -> dict:
  """Our (unboxed, float32 numpy) parameter tree from an official-layout state dict, checked key by key."""
  entries = check_state_dict(sd, c, source)
  stacks: dict[tuple[str, ...], list] = {}
  params: dict = {}
  for e in entries:
    w = to_ours(e, np.asarray(sd[e.key], dtype=np.float32))
    if e.layer is None:
      _set(params, e.path, w)
    else:
      stacks.setdefault(e.path, []).append((e.layer, w))
  for path, items in stacks.items():
    items.sort(key=lambda x: x[0])
    _set(params, path, np.stack([w for _, w in items]))
  return params


def official_from_params(params: dict, c: ModelConfig) -> dict[str, np.ndarray]:
  """The official state dict (numpy, torch shapes and order) of our parameter tree."""
  out = {}
  for e in official_layout(c):
    w = np.asarray(_get(params, e.path), dtype=np.float32)
    if e.layer is not None:
      w = w[e.layer]
    out[e.key] = np.ascontiguousarray(to_official(e, w))
  return out


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _get(tree, path: tuple[str, ...]):
  for name in path:
    tree = tree[name]
  return tree
