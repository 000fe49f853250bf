"""What the fork server of ``fedcare run`` does once, before it forks any process.

Imported only by the fork server (:mod:`fedcare.local.launch`): the modules a coordinator and
a trainer import, one optimizer step (``torch.optim`` imports ``torch._dynamo`` on the first
step), then :func:`gc.freeze` so that forked processes neither copy nor re-scan these objects.
Never imported by a process that serves or trains. Creates no gRPC channel or server, does not
touch CUDA, and keeps torch at one intra-op thread so that no thread pool exists at fork time.
"""

from __future__ import annotations

import gc

import pyarrow  # type: ignore[import-untyped,unused-ignore]  # noqa: F401 - for the forked processes
import torch

import fedcare.cli
import fedcare.coordinator
import fedcare.data
import fedcare.models
import fedcare.trainer
import fedcare.training
import fedcare.transport  # noqa: F401 - preloaded for the forked processes


def _warm_up() -> None:
    torch.set_num_threads(1)
    param = torch.nn.Parameter(torch.zeros(1))
    param.grad = torch.zeros(1)
    torch.optim.Adam([param], fused=True).step()


_warm_up()
# A process forked after CUDA initialised cannot use CUDA: the trainers initialise it themselves.
initialised = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
assert not initialised, "the fork server must not initialise CUDA"
gc.collect()
gc.freeze()
