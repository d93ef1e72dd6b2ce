"""Weights in and out: orbax checkpoints of params + config (checkpoint.py), the official state-dict layout
(official_layout.py), importers for VideoMAE (videomae_import.py) and CLIP (clip_import.py), exporters to HF and
official files (export.py), initialising a model from a checkpoint (initialize.py), and `vmae_jax.load`'s restored
model (loaded.py)."""
