"""One small module per task; the loop (vmae_jax/train/trainer.py) is shared."""
from vmae_jax.tasks.base import Context, Task
from vmae_jax.tasks.classify import Classify
from vmae_jax.tasks.distill import Distill
from vmae_jax.tasks.pretrain import Pretrain

TASKS = {'pretrain': Pretrain, 'finetune': Classify, 'postpretrain': Classify, 'eval': Classify,
         'distill': Distill}

__all__ = ['Context', 'Task', 'TASKS', 'Pretrain', 'Classify', 'Distill']
