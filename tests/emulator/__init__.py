# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HEM emulator: Encedo HEM devices (PPA / EPA) served over real HTTPS, for tests and demos.

Run `python -m tests.emulator --help` from the repository root. Needs only the standard
library and `cryptography`. Contract: ../shared/reference/hem-api-1.2.2.yaml (OpenAPI,
followed where it disagrees with anything else), PROTOCOL.md, docs/development.md (CLI,
control interface, harness). Layout: util.py (encodings, JWT, keys, X.509), device.py
(state + REST API of one device), server.py (sockets, stand-in backend, control
interface), logger.py (the audit logger, `/api/logger/*`: its docstring gives the file format
and every choice), cli.py (options, READY line), harness.py (start/stop from tests), keymgmt.py
(the key repository, /api/keymgmt/*).

Choices made where the contract is ambiguous or silent
======================================================

Start-up, clock, power
- Startup stays fast (100 devices well under 5 s) because every key is P-256/X25519/Ed25519
  and `--passphrase` does not run PBKDF2 at start: each device derives its stored user or
  master public key (PBKDF2-HMAC-SHA256, 600000 iterations, salt = its eid base64 text)
  lazily, the first time a login needs it (about 0.3 s once per key and device), outside
  the device lock. With `--state-dir` the derived public key is then persisted; a device
  stopped before its first login derives again from the `--passphrase` given at restart.
- `--passphrase` personalisation writes: user "user", hostname `hem<i>.emulator.test`,
  email "", origin "*", trusted_ts true, trusted_backend true, allow_keysearch false,
  factory ip/storage values, an instanceid.
- Factory default of `trusted_ts` is **true**, so "clock unset -> logins answer 403 until
  a check-in" holds by default. `GET/POST /api/auth/token` answer 403 when trusted_ts is on
  and the clock is unset. `GET/POST /api/auth/init` answer 403 whenever the clock is unset
  (the spec: "initialisation requires valid time"), so a fresh device needs a check-in (or
  `--rtc-set`) before personalisation.
- `--rtc-set` applies to the first power-up of this process only; every reboot or
  shutdown comes back with the clock unset, as real hardware does.
- The device clock is the host clock plus the control-interface offset; "clock set" is a
  flag raised by a valid check-in (the backend's `iat` is the host time).
- While rebooting (`--reboot-seconds`) the ports stay bound and every new connection is
  reset (RST): a client sees a connection error. Rebinding ports could lose them to
  another process. `GET /api/system/shutdown` behaves like a reboot (a power cycle after
  `--reboot-seconds`). A new boot has a new boot id, session key (`spk`), bearer-token key
  (all tokens invalid), empty nonce tables, uptime 0, clock unset, and installs a
  pending TLS certificate.
- HTTPS is TLS 1.3 only (OpenAPI info: "TLS 1.3 via wolfSSL"); a TLS 1.2 client gets no handshake.

Login and tokens (PROTOCOL.md)
- The login JWS header must be exactly the bytes `{"ecdh":"x25519","alg":"HS256","typ":"JWT"}`.
  `aud`, when present, must equal the `spk` as issued. A nonce (`jti`, 36 bytes: 4-byte
  time + 32 random, valid 60 s) is consumed by any attempt that names it, failed or not.
  `iss` is compared (constant time) with the stored user key (role U) then master key
  (role M); an unknown `iss`, a bad HMAC, a replayed/expired nonce, an `exp` in the past,
  a `scope` over 127 characters or a `ctx` of 64+ characters answer 401. A body without
  an `auth` string answers 400.
- Every `POST /api/auth/token` answer takes at least `--auth-delay` seconds, 3x that after
  3 consecutive 401s (reset by a success).
- Bearer tokens: header `{"alg":"HS256","typ":"JWT"}`, claims jti, iat, exp, scope, sub
  (+ ctx when given); `exp` is the proof's (OA: "becomes the issued token's expiry"), 0 means
  now + 8 h (OA, 1.2.2); with `--no-exp-default` 0 is an expiry in the past (401), as a
  firmware without that default would read it (no vendor client sends 0).
- Not checked (sources silent): a login proof's `iat`; a personalisation proof's `exp`, `iat`
  and `aud` absent (the 60 s single-use nonce bounds a proof; MGR and SDK send them, OA
  names only `jti` and `cfg` for the init proof).
- A scope requirement R is met when the token's scope starts with R (prefix match).
  `system:config` is needed for config read/write; reads also accept `logger:get` and
  `auth:ext:pair`; attestation and selftest accept any valid token; `/api/logger/*` need `logger:get`.
- A present but invalid `Authorization` header answers 401 on every path, before routing
  (so also on unknown paths and on /api/system/status).

Personalisation (`/api/auth/init`)
- The `init` JWS is signed with the MASTER key, as the vendor's clients sign it (PROTOCOL.md
  "What the vendor's own clients do"; encedo-manager assets/build.js `initFinal`, hem-sdk-js
  `initialize`: "eJWT signed with the ADMIN key"): same header bytes as a login, `jti` from `GET
  /api/auth/init`, optional `aud` = spk, `iss` = the master public key, which must equal
  `cfg.masterkey`, HMAC keyed with X25519(master private key, spk). A proof whose `iss` is not
  `cfg.masterkey` (e.g. the user key, as this emulator accepted before issue 14) or whose HMAC does
  not verify with it answers 401 and consumes the nonce; the device stays factory-fresh. The other
  claims the vendor's clients send (`exp` = the challenge's, `iat`) are not checked: the sources
  do not say how the firmware treats them, and the 60 s nonce bounds a proof anyway.
- `cfg` must hold the required fields (on EPA: without ip, storage_mode, storage_disk0size,
  dnsd) plus optionally ctx, gen_csr, http_option_hsts, http_option_dosprot_mode; a missing
  one answers 400. Anything else is ignored, not refused: the web manager sends the MSC
  fields to every model (build.js `initFinal`), hem-sdk-js `initialize` passes any caller
  field through, and the OpenAPI names no 400 for extra fields. Types as the OpenAPI
  file gives them (strings, booleans, integers that are not booleans; keys base64 of 32 bytes;
  ip "a.b.c.d/n", n 0..32). Limits only where a source states one: user at most 32 characters
  and http_option_dosprot_mode 0..4 (OpenAPI POST /api/system/config), storage_disk0size 0..the
  storage capacity (the web manager's size slider stops at the total of the status `storage`).
  No other length, character or range limit (sources silent; until issue 14 the emulator also
  refused hostnames that are not DNS names or longer than 63, ip prefixes outside /8../30 or not
  canonical, printable-only user/email/origin with lengths 32/64/128, storage_mode outside
  0..255, ctx outside 0..2^32-1): it accepts what those types allow, e.g. any storage_mode
  integer (the web manager sends 0x50, 0x51, 0x53, 0xA0, 0xA1, 0xA3; `encedo_init` sends only
  those).
- The answer carries `reboot_required: true` only when ip or storage settings differ from
  the factory values (factory_config: 192.168.7.1/24, storage_mode 0x51, storage_disk0size
  8388608; the storage layout of a fresh device is not documented: the emulator takes the web
  manager's default layout, so that personalising with the manager's values neither reboots nor
  formats, as the manager's own flow after `initFinal` expects); `genuine` always, `csr` with gen_csr - except that when the CSR
  cannot be made (a hostname no certificate can carry, e.g. a CN over 64 characters) both `csr`
  and `genuine` are left out, as the OpenAPI file describes a failed CSR generation. The device
  stays up. On a PPA, a storage_disk0size other than the stored one starts a disk format
  (status `format`, 409 on busy endpoints, as after a configuration change): the web manager
  waits for `format` after personalising (build.js checkDeviceReadyAfterInit); `encedo_init`
  waits for it too.
- `--master-recovery-phrase WORDS` (with `--passphrase`) sets the master key as the web manager
  derives it from its 24-word BIP39 recovery phrase: BIP39 seed (jsbip39 `toSeed`: words split on
  white space and joined by single spaces, NFKD, PBKDF2-HMAC-SHA512, salt "mnemonic", 2048
  rounds) as 128 hex digits, digits 1..64 (`seedM.substr(1, 64)`, build.js `initFinal`) as the
  X25519 private key; derived at start (cheap), no word-list or checksum check (the device never
  sees the phrase).

Configuration (`/api/system/config`)
- Limits are the OpenAPI file's or the device's own, nothing else: user a string of at most
  32 characters (OpenAPI maxLength; the manager's form allows 2-63 of [a-zA-Z0-9 ] - the
  OpenAPI wins), http_option_dosprot_mode 0-4 (OpenAPI), storage_disk0size
  0..storage_capacity (120979451, the "total usable sectors" GET config reports; any integer
  in that range, whole GiB or not: the vendor's own sample holds 8388607). Where the OpenAPI
  gives only a type the emulator accepts the whole type: email and origin any string (the
  manager's maxlength 63 is its form's; the body limit of 7300 bytes bounds them), ctx and
  storage_mode any integer from 0 to 2^53-1 (JSON integers carried exactly, RFC 8259
  section 6; neither a size nor a bit set is negative; the firmware's C width is
  undocumented). storage_mode is stored as given (the manager sends only 0x50, 0x51, 0x53,
  0xA0, 0xA1, 0xA3; e.g. 7 is stored). Both are permissive choices where the sources are silent:
  a 500-character email and storage_mode 7 are accepted (docs/fidelity.md, "Where the field
  table and the emulator differ"). Booleans must be JSON booleans; integers must not be booleans or
  floats; a bad value answers 400 with `{"updated": false}` and nothing changes. Unknown
  fields, MSC-only fields on EPA, `hostname` and `ip` (never settable after personalisation)
  are ignored - not applied, no error (hem-sdk-js `setConfig`: "unknown fields are ignored
  and reported back via updated: false"; the OpenAPI names no 400 for them).
- Storage (PPA). A POST whose storage_disk0size differs from the stored one stores it and
  starts a disk format (OpenAPI: "change triggers a reformat") that runs `--format-seconds`
  (default 3). It starts `--format-start-seconds` after the answer (default 0; when a format
  starts is not documented, and the manager's 28.2 s notice suggests it need not be at once);
  until then the status shows what it showed before and nothing is busy. The answer is the OpenAPI 200 shape `{"updated": true}` (no reboot_required:
  the OpenAPI sets it only for a TLS import). Status `format` is "status<N>" while it runs
  (N = percent done, the emulator's choice: the OpenAPI does not say what N counts), then
  "done" until the next boot; it is absent when no format ran since boot (the manager's
  `checkDeviceReadyAfterInit` treats absent or "done" as ready). While it runs, the
  implemented endpoints whose OpenAPI answers list the generic Conflict ("... disk format
  in progress") answer 409 with nothing applied: POST /api/system/config, GET/POST
  /api/auth/init, GET /api/system/config/attestation. Reads, logins, check-in and reboot
  answer as usual (reboot and shutdown document 409 only for a software install); a reboot
  ends the format task, the stored size stays. Status `storage` is
  ["<disk0size>:<flag>", "<capacity - disk0size>:-"] (the manager adds both for the total),
  the old split until a format ends. Disk 1 shows "-" (locked; /api/storage is not
  implemented). The disk 0 flag follows the storage_mode in effect at boot (index.html:
  "Show regular disk on start", "Regular disk on start: Read-only/Writable";
  build.js layeredStorageEncrSet): 0x53/0xA3 "rw", 0x51/0xA1 "ro", 0x50/0xA0 "-", other
  values "rw" (sources silent); a new flag shows after the next reboot. A storage_mode
  change between CTR and XTS (disk 1 encryption: 0x50/0x51/0x53 CTR, 0xA0/0xA1/0xA3 XTS,
  build.js layeredStorageEncrSet) starts a format like a new disk 0 size (the manager's
  `storage_change` warns "This will format storage and remove all the data stored there" and
  resends storage_disk0size with the mode, `storageChange(..., true)`); a change within one
  encryption formats nothing. A value outside those six has no known encryption: a change to
  or from one formats nothing (sources silent; listed as a choice). Personalisation formats
  only for a new disk 0 size (whether a fresh device formats for XTS is undocumented).
- `updated` is true only when a stored value changed (a new user key, a TLS import, a
  config value different from the stored one); `uts` moves only then.
- The rotation triple must come together; the `nonce` is the one from `GET
  /api/system/config` (single use, valid 300 s); a bad proof answers 400. Roles U and M
  may rotate.
- EPA answers still carry `dnsd` (false) and `ip` (the factory value) because the
  OpenAPI 200 schema requires them; they cannot be changed on EPA.
- `wipeout: true` answers 200 with an empty body, then wipes and reboots: factory config,
  not personalised, new eid/eid_sign, a new TLS key with a **factory certificate** (issued by
  the fleet's "Encedo Factory CA (emulator)", written to `<ca stem>-factory.pem`, READY
  `factory_ca_file`; not the tests' CA, so a client that trusted the device before does not
  verify it), at the factory address (see Addressing); devid, genuine_id and the secure
  element (attestation key/certificate) are kept. Sources: the web manager goes to
  https://my.ence.do after a wipe, waits 8 s and checks in (build.js); what certificate a
  wiped device serves is not documented, but its TLS key is new, so no certificate issued for
  the old one can be served (issue 25 item 6).
- Factory-fresh mode (not personalised, no token): the body must carry `tls` (406 without
  it, 400 with bad material; other fields ignored: "the raw body is persisted"); it is installed at once
  (the spec: "the HTTPS server is started") and the answer is 200 with an empty body.
- Factory-fresh TLS (`--no-tls-bundle`; OpenAPI POST /api/system/config "the raw body is
  persisted as the initial TLS bundle and the HTTPS server is started", status `https`
  "present only on plain-HTTP requests"; PROTOCOL.md "Factory-fresh TLS"). The sources do
  not say whether a new or a wiped device has a bundle, so the default stays "every device
  has one" and the option makes new devices (and, with it, wiped ones) start without one.
  Without a bundle the HTTPS port stays bound but every connection is reset (RST), as
  while rebooting (a real device has no HTTPS server then: "connection refused"; closing
  and rebinding the port could lose it); plain-HTTP status says `https: false`. The device
  still holds a factory TLS key pair (the fresh-mode `emp`/`key` transport below is
  encrypted to it; the control interface's `state` shows it as `tls_public_key`, standing
  in for what the vendor backend knows when it answers the web manager's domain
  registration). The fresh-mode POST over plain HTTP stores the bundle and HTTPS serves it
  at once (`https: true`); an authenticated import on a personalised device without a
  bundle counts from the reboot that installs it. Check-in `tls` names the serial of the
  stand-in certificate the device holds while no bundle is served.
- `--tls-bundle-at-boot`: the fresh-mode POST stores the bundle but HTTPS stays off (status
  `https: false`, connections reset) until the next boot serves it. The vendor's rescue page
  reboots the device 4.9 s after storing a bundle and only then checks it over HTTPS
  (core-rescue-final.js `makeCheckin`, `checkEncedoAfterRescue`); the OpenAPI says "the HTTPS
  server is started". Which one the firmware does is not documented, so the default follows
  the OpenAPI and the option models the other; a client must handle both. The reboot itself is
  the client's `GET /api/system/reboot` (unauthenticated on a fresh device, OpenAPI), as the
  rescue page's; the device does not reboot by itself.
- `--status-https-false`: the status says `https: false` over both schemes although HTTPS
  works, as a real PPA answered (community client OPEN-QUESTIONS OQ-21); a client must not
  read it as "no bundle" while the HTTPS server completes a handshake.
- `tls` import (other keys in the object are ignored: the web manager posts the backend's answer as it
  is, build.js `start_init`/`registerDomain`): `crt` (base64 DER, P-256 key) alone must match the device's stored TLS key
  (the pending key if an import is pending), else 400. With `emp` + `key`, the emulator
  cannot decrypt the vendor's format, so it defines its own transport: `emp` = base64 of
  the client's ephemeral P-256 public key (65-byte uncompressed point or SPKI DER); the
  AES-256 key is SHA-256 of the ECDH x-coordinate between `emp` and the device's stored
  TLS key (its public key is in the served certificate and in gen_csr's CSR); `key` =
  b64(16-byte IV) "." b64(AES-256-CBC, no padding, of d (32 bytes big-endian) || Qx (32
  bytes)) = exactly 113 characters. The `crt` must match the decrypted key. Either way the
  answer has `reboot_required: true`, `updated: true`, and the certificate (with its key)
  is served after the next reboot; gen_csr in the same call is ignored.
- `gen_csr` returns a PEM CSR (the OpenAPI says PEM; the vendor's seed page says base64
  DER - the OpenAPI wins) for the stored TLS key, subject CN = hostname, SAN DNS:hostname
  and IP of `ip` (the personalised ones), plus a `genuine` token. At personalisation
  `gen_csr` first makes a new TLS key (OpenAPI POST /api/auth/init: "generate a TLS key +
  CSR"; after it, POST /api/system/config: "from the stored TLS key"): that key is the
  stored one from then on (later CSRs, a `crt`-only import, the `emp` transport), while the
  device keeps serving its old certificate and key until a certificate for the new key is
  imported and it reboots (a TLS server loads its certificate at boot; the OpenAPI's
  `reboot_required` for a TLS import). If the CSR cannot be made the new key is dropped.

Attestation (PPA only; on EPA both paths answer 404)
- `genuine` = b64(key id) "." b64(ASCII unix time) "." b64(DER ECDSA P-256/SHA-256 over
  the ASCII time) by the secure-element key; key id = the SKI of the attestation
  certificate, or (fresh SE) the RFC 5280 method-1 SKI of the public key. EPA init answers
  still carry a `genuine` (the schema requires it).
- The `genuine` time is the device clock (PROTOCOL.md "Attestation certificates expire":
  unset until a check-in after every power-up): once set (check-in or `--rtc-set`), host
  time plus the control offset. While unset, the sources do not say what the RTC reads;
  the emulator's choice: the seconds since power-up (an RTC counting from 0 = 1970-01-01),
  so such a token is decades old.
- `--attestation-not-after YYYY-MM-DD`: the attestation certificates the emulator issues
  at start (new devices; a `--state-dir` device keeps its stored one; provisioning stores
  the client's certificate, the emulator issues none) are valid from that date three
  years earlier to that date, both at 00:00:00 UTC, mimicking the vendor's sample (valid
  2020-10-05 19:29:33 to 2023-10-05 19:29:33 UTC, exactly three years; the emulator takes
  midnight). Default: from yesterday for three years. The custody CA stays valid now (ten
  years) and its notBefore precedes the attestation certificates' (so the chain is
  coherent at issuance time).
- The attestation certificate: subject C=UK, O=HEM Emulator, CN=#<genuine_id>; keyUsage
  digitalSignature (critical); SKI; AKI; SAN otherName 1.3.6.1.4.1.56231.1 holding an
  OCTET STRING of 20 bytes (the emulator puts SHA-1 of the device eid public key there);
  issued by the custody CA "Encedo Custody CA (emulator)" written to
  `<ca stem>-custody.pem`. genuine_id = "0123" + 14 hex digits.
- `GET /api/system/config/attestation`: no token needed while not personalised, else any
  valid token (401 without). Fresh SE: `csr` (PEM, CN #<genuine_id>), `key` (b64 SPKI
  DER), `genuine`; provisioned SE: `crt`, `genuine`.
- `POST /api/system/config/provisioning`: body with `genuine` and `crt` strings (else 400; other keys ignored); genuine
  must verify under the SE key (else 400); personalised 403; already provisioned 406;
  certificate key different from the SE key 406; the chain is not checked.

Check-in (the blobs are opaque to clients)
- `check` = compact JWS, header as the login header, claims jti (single use, valid 600 s),
  spk, did (devid), iat, fws (the installed firmware's, as in the version), tls (served
  certificate serial, hex); HS256 keyed with
  X25519(device session key, backend public key).
- The stand-in backend (`POST /checkin {"check"}` -> `{"checked"}`) recomputes that key from
  `spk`, checks the HMAC (401 if bad, 400 if malformed) and answers an EdDSA (Ed25519) JWS
  with claims jti, aud (= did), iss "hem-emulator-backend", iat (host time), action "OK"
  (or what the control interface ordered, below).
  Its keys are made per fleet (kept in --state-dir); only the emulated devices trust them.
- `POST /api/system/checkin` needs a `checked` string (400 otherwise; other keys are ignored: the
  vendor clients post the backend's answer as it is - build.js `checkin`, hem-sdk-js `checkin`,
  the Python client's `checkin`), verifies signature, issuer, aud and nonce (401 otherwise),
  sets the clock (also when it then executes an action) and answers `{"status": <executed action>}`.
- Actions (OpenAPI POST /api/system/checkin; PROTOCOL.md "Check-in actions"): the backend's
  reply carries `action` (default "OK") and optionally `newcrt` (base64 DER certificate):
  both claim names are the emulator's (the backend's reply format is not documented; it is
  opaque to clients). The control interface (`POST /devices/<i>/checkin`) orders them per
  device. An action outside OK, L, W, R, B, U answers `"???"` (OpenAPI) and does nothing.
- Actions run only while `trusted_backend` is on (OpenAPI: "Actions are suppressed when the
  trusted-backend option is off"). Suppressed, the answer is `"status": "OK"`: the field is
  the *executed* action (OpenAPI) and OK means none, so no client can take a suppressed
  action for an executed one. A pushed certificate is suppressed too (no `newcrt` in the
  answer): the OpenAPI lists the install with the actions, and an untrusted backend changing
  the served certificate would defeat the option; the clock is still set.
- Effects: `L` erases the stored user key (user logins then answer 401, the master key still
  logs in; issued tokens stay valid until they expire); `W` = `wipeout` (answer, then full
  wipe and reboot); `R` changes nothing; `B` stops the web servers after the answer: every
  connection to the device (HTTPS and HTTP) is reset, state `up` false, until a power cycle,
  which is the control-interface `reboot` fault (a check-in cannot undo it: the OpenAPI has no
  way back but power); `U` ("force upgrade") installs the pending image after the answer, as
  `GET /api/system/upgrade/install_fw` does (tests/emulator/upgrade.py): an image given through
  the control interface (`POST /devices/<i>/firmware`, how an EPA gets one) or, on a PPA, a
  staged firmware whose check passed; the device comes back with the new firmware,
  `fw_upgrade` and the clock unset. Without one (or with one that fails the check, which is
  dropped) `U` only reboots: same firmware, no `fw_upgrade`, clock unset. Known limit: a device personalised by `--passphrase` whose user key `L`
  erased gets it back when the emulator is restarted with `--state-dir` and `--passphrase`.
- `newcrt` is installed like a `tls` import of `crt` alone: it must be a P-256 certificate for
  the device's stored TLS key (the pending one if an import is pending), else `newcrt:
  "ERROR"` and nothing changes; `"OK"` makes it pending: served from the next reboot on, as a
  `tls` import (the OpenAPI says "installs" and names no reboot; the TLS server's certificate is
  loaded at boot, and `reboot_required` is what the config import answers for the same material).

Addressing (issue 25 item 1)
- A PPA answers at the address of its `ip` from the boot after the one that stored it (the
  personalisation answers `reboot_required` for an `ip` other than the factory one; OpenAPI
  "reboot_required ... network/storage settings"; the web manager shows the address
  "(fixed)" at 192.168.7.1, index.html; the OpenAPI gives the host a DHCP lease in
  192.168.7.10-12). The factory `ip` (192.168.7.1/24, any EPA) is served at the `--bind`
  address, which stands in for 192.168.7.1 on the USB link (in the server test bed it is
  192.168.7.1). Another `ip` is served at its own address only, on the same ports: the
  emulator binds it when the device boots (any 127.0.0.0/8 address on Linux loopback; in the
  test bed an address of the namespace), and connections to the old address are reset. An
  address this host cannot bind leaves the device unreachable until it is wiped (stderr
  says so), as a real device that moved where the controller has no route. With a wildcard
  `--bind` a moved device answers only connections addressed to its address. An emulator-
  issued certificate that does not name the new address, or the personalised hostname, is
  re-issued at boot (same key, the tests' CA) to name them, as the device's CSRs do (OpenAPI
  `gen_csr`; issue 25 item 9); an imported one is kept. The control interface's `GET /devices` and
  `state` give `address`, `url` and `http_url` as they are now. A wipe brings the device
  back at the factory address.

Transport
- One request per connection, `Connection: close`, `Content-Type: application/json` on
  every answer, empty error bodies (except the config 400). POST without Content-Length,
  with `Content-Length: 0` or with Transfer-Encoding: 411. Declared length over 7300: 413
  and the connection is closed unread (the raw uploads `upload_fw`/`upload_ui` take up to
  16 MiB and close some requests unanswered: upgrade.py, docs/fidelity.md). A body shorter
  than declared (peer closed): 400 (406 for an upload); a stalled request is closed without an answer after http_option_dosprot_mode x 0.5 s
  (10 s when 0). Malformed request line or headers: 400. Non-object JSON body: 400.
- CORS: `origin` is a list split on commas/blanks; `*`, exact origins and `*.domain`
  wildcards match. A non-matching Origin answers 412, also on OPTIONS; OPTIONS otherwise
  answers 204 with the spec's preflight headers. HSTS header when http_option_hsts is on.
- TLS certificates the emulator issues (at start from the tests' CA, after a wipe from the factory CA) have CN `localhost` and
  SANs `DNS:localhost`, `DNS:hem<i>.emulator.test`, `DNS:my.ence.do` (the vendor's default
  device name, PROTOCOL.md "Certificates on the device's name"), `IP:127.0.0.1` and the
  address the devices are reached on (`--bind`; an IP SAN, or a DNS SAN for a name; the
  loopback for a wildcard bind).
- Plain HTTP serves the same API; `/api/keymgmt/*` and `/api/crypto/*` answer 418 there
  (409 for the two documented quirks). Over HTTPS keymgmt is the key repository of
  keymgmt.py (its choices: docs/fidelity.md, "Key repository"); crypto, storage,
  `/api/system/upgrade/usbmode` and external auth answer 404 on both (not implemented); the
  logger and the upgrade (upgrade.py) answer. Unknown paths 404.
- `/api/system/status`: `hostname` appears when the Host header differs from the
  configured hostname (so almost always, over 127.0.0.1); `storage` and `format` on PPA as
  in Configuration above; temp 36.6.

Firmware upgrade (PPA; tests/emulator/upgrade.py, images: tests/emulator/firmware.py)
- upload_fw / upload_ui / check_fw / check_ui / install_fw / install_ui as docs/fidelity.md
  "Firmware upgrade" lists them, with their sources. Checks take `--upgrade-seconds`
  (201, then 202, then 200 or 406); install_fw answers, keeps answering (409 to another
  install) for `--upgrade-seconds`, then is down for `--reboot-seconds` and boots the new
  firmware (`fwv`, `fws` in the version, `fw_upgrade` in the status for that boot, clock
  unset). Personalisation, configuration and keys survive (the emulator's assumption).
  On an EPA every upgrade path answers 404.

Test support
- Control interface: docs/development.md. A `drop` fault resets the connection; it is
  logged with status null (so is an upload closed unanswered). `flash_power_loss` cuts the
  next flash (the device comes back on its old firmware); `flash_never_back` leaves the
  device down after the next flash until the `reboot` fault (a power cycle). `reboot`
  happens at once. `tamper_attestation` flips one byte in the middle of the next `count`
  signatures.
- State files: `<state-dir>/fleet.json` (CAs, backend keys) and `device-<i>.json`, each
  written through a temporary file + os.replace.
"""
