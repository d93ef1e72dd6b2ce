"""README and .ci/run stay in step: CI runs the README's install and test commands verbatim."""
import os
import re

ROOT = os.path.join(os.path.dirname(__file__), '..')


def _read(path):
  with open(os.path.join(ROOT, path)) as f:
    return f.read()


def test_ci_runs_the_readme_commands():
  readme, ci = _read('README.md'), _read('.ci/run')
  commands = [line.strip() for line in ci.splitlines()
              if re.match(r'\s*(pip install|python -m pytest)', line)]
  assert len(commands) == 3
  top = readme[:readme.index('## What is here')]
  for cmd in commands:
    assert cmd in top, f'.ci/run runs {cmd!r}, which the README does not show near its top'
  assert 'python -m vmae_jax.main --config=' in top
