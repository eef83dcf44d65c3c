"""Ed25519 signature verification (RFC 8032, section 5.1), in pure Python for the stub.

The stub cannot carry `cryptography`; verification needs only integer arithmetic and SHA-512. Signing stays
on the build side, with `cryptography`. Nothing here handles a secret, so timing does not matter.

Points are kept in extended homogeneous coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x*y = T/Z
(RFC 8032 5.1.4).
"""

import hashlib

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


class Ed25519Error(ValueError):
    """A key or signature that is not even of the right shape (wrong type or length)."""


def _recover_x(y, sign):
    """The x with x^2 = (y^2 - 1) / (d y^2 + 1) and the given low bit, or None (RFC 8032 5.1.3 steps 2-4)."""
    if y >= _P:
        return None
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    vxx = v * x * x % _P
    if vxx == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif vxx != u:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _decode_point(data):
    """A point from its 32-byte encoding, or None when the bytes encode no point on the curve."""
    value = int.from_bytes(data, "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * _D * t1 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _double(p):
    x1, y1, z1, _ = p
    a = x1 * x1 % _P
    b = y1 * y1 % _P
    c = 2 * z1 * z1 % _P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


_IDENTITY = (0, 1, 1, 0)


def _multiply(scalar, point):
    result = _IDENTITY
    for bit in bin(scalar)[2:]:
        result = _double(result)
        if bit == "1":
            result = _add(result, point)
    return result


def _same_point(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


_BASE_Y = 4 * pow(5, _P - 2, _P) % _P
_BASE = (_recover_x(_BASE_Y, 0), _BASE_Y, 1, _recover_x(_BASE_Y, 0) * _BASE_Y % _P)


def _check_bytes(value, size, what):
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise Ed25519Error(f"ed25519 {what} must be bytes, not {type(value).__name__}")
    if len(value) != size:
        raise Ed25519Error(f"ed25519 {what} must be {size} bytes, not {len(value)}")
    return bytes(value)


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public_key` (32 bytes).

    Raises Ed25519Error when the key or signature has the wrong type or length; any other flaw
    (a point not on the curve, S not below the group order, a wrong signature) gives False.
    """
    public_key = _check_bytes(public_key, PUBLIC_KEY_SIZE, "public key")
    signature = _check_bytes(signature, SIGNATURE_SIZE, "signature")
    a = _decode_point(public_key)
    r = _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + bytes(message)).digest(), "little") % _L
    # The cofactored check of RFC 8032 5.1.7 step 3: [8][S]B = [8]R + [8][k]A.
    left = _multiply(8 * s, _BASE)
    right = _multiply(8, _add(r, _multiply(k, a)))
    return _same_point(left, right)
