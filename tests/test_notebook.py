"""notebooks/colab_restore.ipynb executes headlessly (nbclient) on CPU, so it cannot silently rot."""
import json
import os
import sys

import nbformat
from nbclient import NotebookClient

NOTEBOOK = os.path.join(os.path.dirname(__file__), '..', 'notebooks', 'colab_restore.ipynb')


def test_colab_notebook_executes(tmp_path, monkeypatch):
  # A kernel spec for this very interpreter, so the kernel imports the same environment (and PYTHONPATH).
  spec = tmp_path / 'jupyter' / 'kernels' / 'vmae-test'
  spec.mkdir(parents=True)
  (spec / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'vmae test', 'language': 'python'}))
  monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  monkeypatch.delenv('VMAE_JAX_DEMO', raising=False)
  repo = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(p for p in (repo, os.environ.get('PYTHONPATH', '')) if p))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert all(not cell.get('outputs') for cell in nb.cells if cell.cell_type == 'code')  # stored without outputs
  NotebookClient(nb, timeout=300, kernel_name='vmae-test', resources={'metadata': {'path': str(tmp_path)}}).execute()
  text = '\n'.join(o.get('text', '') for cell in nb.cells if cell.cell_type == 'code' for o in cell.outputs)
  assert "bf16 parameters: {'bfloat16'}" in text
  assert "'written': 2, 'skipped': 0" in text and 'broken.mp4' in text
  assert 'clip0 (5, 64)' in text                      # 24 frames, windows of 8 every 4: starts 0, 4, .., 16
  assert "again: {'written': 0, 'skipped': 2" in text  # resumed: nothing redone
  outputs = [o for cell in nb.cells if cell.cell_type == 'code' for o in cell.outputs]
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(images) == 1 and 'wrote' in text
