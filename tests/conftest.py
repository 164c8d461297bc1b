import sys
from pathlib import Path

# Make tests/envs.py importable as `envs` from every test module.
sys.path.insert(0, str(Path(__file__).parent))
