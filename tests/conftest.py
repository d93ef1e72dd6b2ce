"""Test setup: offline HF, deterministic CPU threads, the reference-model helpers on the path."""
import os
import sys

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope='module')
def synthetic_cache(tmp_path_factory):
  """A fresh synthetic-data cache for one test module (modules that train use it with `usefixtures`)."""
  old = os.environ.get('VMAE_JAX_CACHE')
  os.environ['VMAE_JAX_CACHE'] = str(tmp_path_factory.mktemp('cache'))
  yield
  if old is None:
    del os.environ['VMAE_JAX_CACHE']
  else:
    os.environ['VMAE_JAX_CACHE'] = old
