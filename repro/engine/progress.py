"""Progress bar over optimizer steps with the mean training loss and throughput.

Shown (on stderr) only for runs that last longer than `delay_s` seconds, so short runs and
tests print nothing; updated once per chunk, i.e. a few times per epoch.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


class Progress:
    def __init__(self, total_steps: int, initial_step: int, mode: Any, delay_s: float = 5.0):
        enabled = mode not in (False, "false", "off", "never", None)
        self.bar = (
            tqdm(
                total=total_steps,
                initial=initial_step,
                unit="step",
                delay=0.0 if mode in (True, "always") else delay_s,
                dynamic_ncols=True,
                mininterval=0.5,
                file=sys.stderr,
                leave=False,
            )
            if enabled
            else None
        )

    def update(self, steps: int, loss: float, examples_per_s: float, epoch: int) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(
            epoch=epoch, loss=f"{loss:.4g}", ex_s=f"{examples_per_s:,.0f}", refresh=False
        )
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
