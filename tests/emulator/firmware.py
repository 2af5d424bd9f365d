# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Firmware and dashboard images the HEM emulator accepts (the emulator's own format).

```console
$ python -m tests.emulator.firmware --fwv "nGINE 1.2.3 (HEM emulator)" --out firmware.bin
$ python -m tests.emulator.firmware --fwv "nGINE 1.2.3 (HEM emulator)" --corrupt --out bad.bin
$ python -m tests.emulator.firmware --ui --fwv "dashboard 2.0" --out webroot.tar
```

The vendor's image format is not documented (OpenAPI: `fwv` is the "firmware name from the
signed image footer"). An emulator image is

    payload | footer (UTF-8 JSON) | footer length (4 bytes, big-endian) | MAGIC | Ed25519 signature (64 bytes)

signed over everything before the signature. The footer holds `kind` ("fw" or "ui"),
`fwv` (the version text) and `sha256` (base64 of the payload's SHA-256). The signing key is
derived deterministically from a fixed label (`IMAGE_KEY_LABEL`), so this tool and every
emulator agree without sharing a state directory; it is a test key and public on purpose.
`--corrupt` flips one payload byte after signing: the check then fails (406).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from .util import b64d, b64e

MAGIC = b"HEMEMU1\n"
IMAGE_KEY_LABEL = b"encedo.hem emulator image signing key, version 1"
KINDS = ("fw", "ui")
SIG_LEN = 64


def signing_key() -> ed25519.Ed25519PrivateKey:
    """The emulator's image key: Ed25519 from SHA-256 of a fixed label (deterministic, not secret)."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(IMAGE_KEY_LABEL).digest())


def public_key_b64() -> str:
    """`fwk` of /api/system/version: base64 of the image public key."""
    return b64e(signing_key().public_key().public_bytes_raw())


def make_image(fwv: str, kind: str = "fw", size: int = 4096, corrupt: bool = False) -> bytes:
    """A signed image of `size` payload bytes (deterministic filler) carrying the version text `fwv`."""
    if kind not in KINDS:
        raise ValueError("kind must be one of %s" % ", ".join(KINDS))
    if not isinstance(fwv, str) or not fwv.strip():
        raise ValueError("the version text must not be empty")
    payload = (hashlib.sha256(fwv.encode("utf-8")).digest() * (size // 32 + 1))[:max(size, 1)]
    footer = json.dumps({"kind": kind, "fwv": fwv, "sha256": b64e(hashlib.sha256(payload).digest())},
                        sort_keys=True).encode("utf-8")
    signed = payload + footer + struct.pack(">I", len(footer)) + MAGIC
    image = bytearray(signed + signing_key().sign(signed))
    if corrupt:
        image[len(payload) // 2] ^= 0x01
    return bytes(image)


def parse_image(data: bytes, kind: str):
    """-> (footer dict, base64 signature) of a valid image of `kind`, or None when it fails the check."""
    tail = SIG_LEN + len(MAGIC) + 4
    if not isinstance(data, (bytes, bytearray)) or len(data) < tail + 2:
        return None
    signed, sig = bytes(data[:-SIG_LEN]), bytes(data[-SIG_LEN:])
    if signed[-len(MAGIC):] != MAGIC:
        return None
    (flen,) = struct.unpack(">I", signed[-len(MAGIC) - 4:-len(MAGIC)])
    end = len(signed) - len(MAGIC) - 4
    if flen > end:
        return None
    try:
        signing_key().public_key().verify(sig, signed)
        footer = json.loads(signed[end - flen:end].decode("utf-8"))
    except (InvalidSignature, UnicodeDecodeError, ValueError):
        return None
    payload = signed[:end - flen]
    if not isinstance(footer, dict) or footer.get("kind") != kind or not isinstance(footer.get("fwv"), str):
        return None
    try:
        if b64d(footer.get("sha256", "")) != hashlib.sha256(payload).digest():
            return None
    except ValueError:
        return None
    return footer, b64e(sig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.emulator.firmware",
                                 description="Make a firmware image (or with --ui a dashboard archive) the HEM "
                                             "emulator accepts, signed with the emulator's image key.")
    ap.add_argument("--fwv", required=True, metavar="TEXT",
                    help="version text the device shows after the install (version fwv; for --ui it sets uis)")
    ap.add_argument("--out", required=True, metavar="FILE", help="where to write the image")
    ap.add_argument("--ui", action="store_true", help="a dashboard archive (upload as webroot.tar) instead of firmware")
    ap.add_argument("--corrupt", action="store_true", help="flip one byte after signing: the device's check fails (406)")
    ap.add_argument("--size", type=int, default=4096, metavar="BYTES",
                    help="payload size in bytes, 1 to 16777216 (default 4096); firmware over 3 MiB is refused on upload")
    args = ap.parse_args(argv)
    if not args.fwv.strip():
        ap.error("--fwv must not be empty")
    if not 1 <= args.size <= 16 * 1024 * 1024:
        ap.error("--size must be between 1 and 16777216 bytes, got %d" % args.size)
    image = make_image(args.fwv, "ui" if args.ui else "fw", args.size, args.corrupt)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    with open(args.out, "wb") as fh:
        fh.write(image)
    sys.stdout.write("%s: %d bytes, %s %r%s\n" % (args.out, len(image), "dashboard" if args.ui else "firmware",
                                                  args.fwv, " (corrupt)" if args.corrupt else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
