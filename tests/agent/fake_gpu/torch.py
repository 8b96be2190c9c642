"""Fake torch: torch.empty(..., device="cuda:N") registers the allocation with the fake GPU."""

import types

import _registry

uint8 = "uint8"


class _Tensor:
    def fill_(self, value: int) -> "_Tensor":
        return self


def empty(n: int, dtype: str, device: str) -> _Tensor:
    _registry.allocate(int(device.split(":")[1]), n)
    return _Tensor()


cuda = types.SimpleNamespace(synchronize=lambda: None)
