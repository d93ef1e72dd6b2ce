"""Benchmarks, run as `python -m vmae_jax.bench {step,attention,pipeline,adapters}` (cli.py). Figures go to
BENCHMARKS.md, never into tests. Every step benchmark runs the trainer's own train step (vmae_jax/train/step.py)."""
