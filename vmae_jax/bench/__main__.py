import sys

from vmae_jax.bench.cli import main

sys.exit(main())
