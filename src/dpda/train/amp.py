"""Dynamic loss scaling for float16 training with two gradient paths.

``torch.amp.GradScaler`` unscales the gradients held in ``param.grad``; the
dual-path engine keeps two gradients per parameter in its own flat buffer and
must unscale both *before* aligning them, so it uses this small scaler with
the same policy as GradScaler (start at 2**16, halve on a non-finite gradient
and skip the step, double after 2000 finite steps). bfloat16 autocast needs
no loss scaling.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence

import torch


class LossScaler:
    """Dynamic loss scale: ``scale``, ``update(found_inf)``, ``state_dict()``."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        if init_scale <= 0 or growth_factor <= 1 or not 0 < backoff_factor < 1 or growth_interval < 1:
            raise ValueError("need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval >= 1")
        self.scale = float(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self._good_steps = 0

    def unscale_(self, grads: Sequence[torch.Tensor]) -> bool:
        """Divide the (scaled) gradients by the scale in place, then :meth:`update`; True when one is not finite.

        ``grads``: the gradient tensors of one step (any shapes; a flat buffer
        or ``param.grad`` tensors). The caller skips the step when this returns
        True (the scale has then been backed off already).
        """
        inv = 1.0 / self.scale
        for g in grads:
            g.mul_(inv)
        found_inf = not all(bool(torch.isfinite(g).all()) for g in grads)
        self.update(found_inf)
        return found_inf

    def update(self, found_inf: bool) -> None:
        """Adjust the scale after a step (skipped when ``found_inf``)."""
        if found_inf:
            self.scale *= self.backoff_factor
            self._good_steps = 0
        else:
            self._good_steps += 1
            if self._good_steps >= self.growth_interval:
                self.scale *= self.growth_factor
                self._good_steps = 0

    def state_dict(self) -> Dict[str, Any]:
        return {"scale": self.scale, "good_steps": self._good_steps}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scale = float(state["scale"])
        self._good_steps = int(state["good_steps"])
