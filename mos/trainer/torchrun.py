"""`python -m mos.trainer.torchrun ARGS` is `python -m torch.distributed.run ARGS` (torchrun),
except when a process fails: then it exits with that process's exit code (128 + the signal for a
process killed by one), leaving the process's own one-line message as the only report, instead
of torchrun's traceback and failure table. `mos train --nproc N` runs this."""

from __future__ import annotations

import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv: list[str]) -> int:
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
