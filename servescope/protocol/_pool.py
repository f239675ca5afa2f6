"""The descriptor pool that servescope's protocol messages live in (see proto/generate.py for why)."""

from __future__ import annotations

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
