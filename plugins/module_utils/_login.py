# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# This module_utils file is PRIVATE to the encedo.hem collection: its API may change
# at any time without notice. Do not use it from other collections.

"""The device's login (the eJWT challenge-response), its key derivation (PBKDF2 of the
passphrase, or a BIP39 recovery phrase for the master key), and the base64 and JWT
helpers they need. No network here: HemClient sends the requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from importlib.util import find_spec

from ansible_collections.encedo.hem.plugins.module_utils._errors import HemError

# cryptography is imported when first needed, not when a module starts: a module run that
# does not log in skips its import cost, which is paid once per task and host in a fleet.
# Whether it is installed is known up front.
HAS_CRYPTOGRAPHY = find_spec('cryptography') is not None
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else ImportError('No module named cryptography')

#: PBKDF2 iterations of the login key derivation.
PBKDF2_ITERATIONS = 600000
#: The exact header bytes of the login proof JWT (the device expects this form).
JWT_HEADER = b'{"ecdh":"x25519","alg":"HS256","typ":"JWT"}'
#: The login challenge is valid for this long after the device issues it.
CHALLENGE_LIFETIME = 60
#: The token lifetime asked for when none is given: firmware 1.2.2's default for ``exp`` 0, sent explicitly.
TOKEN_LIFETIME = 8 * 3600


def _x25519():
    """``cryptography``'s X25519 and serialization modules (imported on first use); HemError when missing."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import x25519
    except ImportError as exc:
        raise HemError('the Python library "cryptography" is required to log in: %s' % exc)
    return x25519, serialization


def b64(data):
    """Standard base64 with padding (the device's form for JSON fields)."""
    return base64.b64encode(data).decode('ascii')


def b64url(data):
    """base64url without padding (JWT segments)."""
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def b64decode_any(text):
    """Decode standard or URL-safe base64, padded or not."""
    if isinstance(text, str):
        text = text.encode('ascii')
    text = text.replace(b'-', b'+').replace(b'_', b'/')
    return base64.b64decode(text + b'=' * (-len(text) % 4), validate=True)


def derive_seed(passphrase, eid):
    """PBKDF2-HMAC-SHA256 of the passphrase, salted with the eid as its base64 text."""
    return hashlib.pbkdf2_hmac('sha256', passphrase.encode('utf-8'), eid.encode('utf-8'), PBKDF2_ITERATIONS, 32)


def derive_keypair(passphrase, eid):
    """The X25519 key of a passphrase on a device: ``(private_bytes, public_b64)``."""
    x25519, serialization = _x25519()
    seed = derive_seed(passphrase, eid)
    public = x25519.X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return seed, b64(public)


def keypair_from_private(private_bytes):
    """``(private_bytes, public_b64)`` of a 32-byte X25519 secret (clamped by X25519 itself, as nacl does)."""
    x25519, serialization = _x25519()
    public = x25519.X25519PrivateKey.from_private_bytes(private_bytes).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return private_bytes, b64(public)


#: PBKDF2-HMAC-SHA512 rounds of a BIP39 seed (BIP39; the web manager's jsbip39 ``toSeed``).
BIP39_ROUNDS = 2048
#: Words of the recovery phrases the vendor's web manager makes (``Mnemonic.generate(256)``).
RECOVERY_PHRASE_WORDS = 24


def normalise_recovery_phrase(phrase, option='master_recovery_phrase'):
    """The recovery phrase as the web manager's ``toSeed`` reads it: words split on any white space,
    joined by single spaces, Unicode NFKD. Checked first (the ``mnemonic`` library's English word list and
    BIP39 checksum). Raises ValueError with a message that names ``option`` but never a word of the phrase.
    """
    try:
        from mnemonic import Mnemonic
    except ImportError:
        raise ValueError('option %s: the Python library "mnemonic" is needed to read a BIP39 recovery phrase and is not '
                         'installed on the host that runs the module: install it (pip install mnemonic) or use '
                         'master_passphrase' % option)
    words = [Mnemonic.normalize_string(word) for word in phrase.split()]
    if len(words) != RECOVERY_PHRASE_WORDS:
        # BIP39 also has 12- to 21-word phrases, but the web manager only makes 24-word ones (generate(256)):
        # a shorter phrase is a truncated one, and would give a master key the device does not have.
        raise ValueError('option %s: a recovery phrase of the Encedo web manager has %d words, this one has %d'
                         % (option, RECOVERY_PHRASE_WORDS, len(words)))
    mnemonic = Mnemonic('english')
    known = set(mnemonic.wordlist)
    for position, word in enumerate(words, 1):
        if word not in known:
            hint = ' (the words are lower case)' if word.lower() in known else ''
            raise ValueError('option %s: word %d is not in the BIP39 English word list%s' % (option, position, hint))
    joined = ' '.join(words)
    if not mnemonic.check(joined):
        raise ValueError('option %s: the BIP39 checksum does not match: a word is wrong, or two words are swapped '
                         '(every word is in the word list)' % option)
    return joined


def recovery_phrase_keypair(phrase, option='master_recovery_phrase'):
    """The master key the web manager derives from a 24-word BIP39 recovery phrase: ``(private_bytes, public_b64)``.

    seed = PBKDF2-HMAC-SHA512(normalised phrase, salt "mnemonic", 2048 rounds), 64 bytes, as lower-case hex
    (128 characters); the private key is the 32 bytes written by hex characters 1 to 64, i.e. starting at
    the SECOND hex digit (encedo-manager assets/build.js ``initFinal`` and ``handleMasterPassphrase``:
    ``fromHexString(seed.substr(1, 64))``), used as an X25519 secret (nacl ``box.keyPair.fromSecretKey``).
    """
    normalised = normalise_recovery_phrase(phrase, option)
    seed_hex = hashlib.pbkdf2_hmac('sha512', normalised.encode('utf-8'), b'mnemonic', BIP39_ROUNDS).hex()
    return keypair_from_private(bytes.fromhex(seed_hex[1:65]))


def master_keypair(eid, passphrase=None, recovery_phrase=None):
    """The master key ``(private_bytes, public_b64)``: from the web manager's recovery phrase when given,
    else from a master passphrase as the vendor's SDK derives it (like the user key, salted with ``eid``)."""
    if recovery_phrase:
        return recovery_phrase_keypair(recovery_phrase)
    return derive_keypair(passphrase, eid)


def x25519_shared(private_bytes, peer_public_b64):
    """X25519(private, peer public given as base64)."""
    x25519 = _x25519()[0]
    private = x25519.X25519PrivateKey.from_private_bytes(private_bytes)
    return private.exchange(x25519.X25519PublicKey.from_public_bytes(b64decode_any(peer_public_b64)))


def build_auth_jwt(challenge, private_bytes, public_b64, scope, iat, exp):
    """The login proof ``header.payload.signature`` for a ``GET /api/auth/token`` challenge."""
    payload = {
        'jti': challenge['jti'],
        'aud': challenge['spk'],
        'exp': int(exp),
        'iat': int(iat),
        'iss': public_b64,
        'scope': scope,
    }
    shared = x25519_shared(private_bytes, challenge['spk'])
    signing_input = b64url(JWT_HEADER) + '.' + b64url(json.dumps(payload, separators=(',', ':')).encode('utf-8'))
    signature = hmac.new(shared, signing_input.encode('ascii'), hashlib.sha256).digest()
    return signing_input + '.' + b64url(signature)


def jwt_claims(token):
    """The claims of a JWT without checking its signature; {} when unreadable."""
    try:
        claims = json.loads(b64decode_any(token.split('.')[1]))
    except (ValueError, IndexError, AttributeError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}
