"""Ed25519 signature verification (RFC 8032, section 5.1), in pure Python for the stub, as strict as libsodium.

The stub cannot carry `cryptography`; verification needs only integer arithmetic and SHA-512. Signing stays
on the build side, with `cryptography`. Nothing here handles a secret, so timing does not matter.

Strict as libsodium's crypto_sign_verify_detached: a public key or R that is not the canonical encoding of a
curve point, or that is a point of small order (order 1, 2, 4 or 8), is refused, and so is S >= L; the check
is the cofactorless one, [S]B = R + [k]A. A small-order key would otherwise let one forged signature (the
identity key, R = identity, S = 0) verify every message.

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


def _strong_point(data):
    """The point `data` encodes when the encoding is canonical and the point's order is not small, else None."""
    point = _decode_point(data)
    if point is None or _same_point(_multiply(8, point), _IDENTITY):
        return None
    return point


def weak_public_key(public_key):
    """Why `public_key` (32 bytes) can never be trusted, or None for a usable key: a key that is no canonical
    curve point, or one of small order (which verifies forged signatures), is refused for pinning too."""
    public_key = _check_bytes(public_key, PUBLIC_KEY_SIZE, "public key")
    if _decode_point(public_key) is None:
        return "it is not the canonical encoding of a curve point"
    if _strong_point(public_key) is None:
        return "it is a point of small order, which verifies forged signatures"
    return None


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by `public_key` (32 bytes).

    Raises Ed25519Error when the key or signature has the wrong type or length; any other flaw (a key or R
    that is no canonical point or is of small order, S not below the group order, a wrong signature) gives False.
    """
    public_key = _check_bytes(public_key, PUBLIC_KEY_SIZE, "public key")
    signature = _check_bytes(signature, SIGNATURE_SIZE, "signature")
    s = int.from_bytes(signature[32:], "little")
    if s >= _L:
        return False
    a = _strong_point(public_key)
    r = _strong_point(signature[:32])
    if a is None or r is None:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + bytes(message)).digest(), "little") % _L
    # The cofactorless check, as libsodium and OpenSSL make it: [S]B = R + [k]A.
    return _same_point(_multiply(s, _BASE), _add(r, _multiply(k, a)))
