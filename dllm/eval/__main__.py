"""``python -m dllm.eval ...``: the ``dllm eval`` commands.

Usable with ``accelerate launch -m`` / ``torchrun -m``.
"""

import sys

from dllm.eval.cli import main

sys.exit(main())
