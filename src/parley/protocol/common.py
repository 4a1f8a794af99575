"""What every msgpack protocol shares: errors and the map encoding moshi-server uses.

Messages are msgpack maps with string keys and a `"type"` field naming the variant (serde's
"internally tagged" enums with struct-as-map), so clients written for moshi-server read ours.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from parley.engine.messages import ErrorMessage, Ready

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a few seconds of float audio; more is refused


class ProtocolError(ValueError):
    """Malformed input from a client; the message is safe to send back to it."""


class MessageTooBig(ProtocolError):
    """A message over MAX_MESSAGE_BYTES (WebSockets close these with 1009)."""


def common_wire(msg: ErrorMessage | Ready) -> dict[str, Any]:
    """`Error{message}` and `Ready`, as both moshi protocols send them."""
    if isinstance(msg, ErrorMessage):
        return {"type": "Error", "message": msg.message}
    return {"type": "Ready"}


def unpack_map(data: bytes) -> dict[str, Any]:
    """Decodes one msgpack map with a string `type`, or raises ProtocolError."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooBig(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES} limit")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except UnicodeDecodeError:
        raise ProtocolError("message contains a string that is not valid UTF-8") from None
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("expected a msgpack map with a 'type' field")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("message has no string 'type' field")
    return obj


def pack(fields: dict[str, Any], single_float: bool = False) -> bytes:
    """`single_float`: floats as float32 (audio samples: half the bytes of float64)."""
    packed: bytes = msgpack.packb(fields, use_bin_type=True, use_single_float=single_float)
    return packed


def float_array(value: Any, name: str) -> np.ndarray:
    """A finite float32 vector from a msgpack list of numbers (float32/64 or ints)."""
    if not isinstance(value, list):
        raise ProtocolError(f"'{name}' must be an array of floats")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"'{name}' must contain only numbers") from None
    if arr.size and arr.dtype.kind not in "fiu":  # not "1.5" strings, not booleans
        raise ProtocolError(f"'{name}' must contain only numbers")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim != 1 or (arr.size and not np.isfinite(arr).all()):
        raise ProtocolError(f"'{name}' must be a flat array of finite numbers (no NaN/inf)")
    return arr


def byte_payload(value: Any, name: str) -> bytes:
    """Bytes sent as msgpack bin, or as an array of ints 0..255 (both occur in the wild)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise ProtocolError(f"'{name}' must be bytes")


def integer(value: Any, name: str) -> int:
    """A whole number that fits msgpack's 64 bits (it is echoed back: 1e300 would not encode)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"'{name}' must be an integer")
    if not -(2**63) <= value < 2**63:
        raise ProtocolError(f"'{name}' must fit in 64 bits")
    return value
