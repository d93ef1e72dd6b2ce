"""Training: the config schema and its checks (schema.py), the optimizer recipes (optim.py), the one train step
(step.py), the loop with checkpoints, resume and signals (trainer.py), metrics output (metrics.py), the demo
(demo.py), and the one error path every command line uses for user mistakes (errors.py). The tasks that plug
into the loop live in vmae_jax/tasks/."""
