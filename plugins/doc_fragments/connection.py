# -*- coding: utf-8 -*-
# Copyright (c) encedo.hem contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The connection options of every encedo.hem module. They are built in code by
    # plugins/module_utils/_module.py:hem_argument_spec(); a unit test keeps the two equal.
    # Module documentation cannot carry C(env:) entries, so each description names the
    # environment variable used when the task does not set the option.

    DOCUMENTATION = r'''
requirements:
  - requests >= 2.33 (Python library, on the host that runs the module; imported only when the module sends its first request)
  - urllib3 >= 2.7 (Python library, installed with requests; the transport uses its connections)
  - cryptography >= 46.0.7 (Python library, on the host that runs the module; for the login and the certificate checks)
options:
  url:
    description:
      - Base URL of the device API, for example V(https://my.ence.do) or V(https://192.168.7.1).
      - The scheme must be V(https) or V(http). With V(http) a task that needs credentials (O(passphrase) or O(token)) is
        refused before anything is sent, unless O(allow_plain_http) is true; some endpoints refuse plain HTTP anyway.
      - A V(https) URL whose port answers plain HTTP fails saying so; use the device's HTTPS port.
      - IPv6 addresses go in brackets, for example V(https://[fd00::7]). International host names are sent in their IDNA form.
      - Give the device address without a path; the module adds C(/api/...) itself, so a path such as C(/api) is refused. Any
        other path is put before every request path (a reverse proxy that serves the device under it).
      - If not set, the environment variable E(ENCEDO_HEM_URL) is used.
      - Required - set it on the task, in C(module_defaults) for the group C(group/encedo.hem.hem), or in
        E(ENCEDO_HEM_URL); without any of them the task fails before any request.
    type: str
  passphrase:
    description:
      - The user passphrase of the device, used to log in.
      - The key derived from it is computed once per task; the token obtained is reused for every request of the task.
      - Given together with O(token), it is used only when the device refuses the token (it expired, or the device
        rebooted), to log in again once; see O(token).
      - If not set, the environment variable E(ENCEDO_HEM_PASSPHRASE) is used, also when the task sets O(token). Set it to
        an empty string to keep a task from logging in.
    type: str
  token:
    description:
      - A bearer token from M(encedo.hem.encedo_login), to log in once per host and reuse the token in later tasks.
      - The token must have a scope that covers the task (V(system:config) covers every configuration endpoint).
      - A token stops working when it expires or when the device reboots. With O(token) alone the task then fails, saying so.
        With O(passphrase) too (on the task or from E(ENCEDO_HEM_PASSPHRASE)) the task logs in again, once, and
        repeats the refused request (the device refuses it before applying anything).
      - Precedence, for each of O(token) and O(passphrase) on its own - the value on the task, else its environment
        variable. When both are available the token is used first and the passphrase only for that one new login.
      - A task that logged in again returns the new token as C(token) in its result (registered variable), and its output
        is then hidden like with C(no_log), since Ansible can hide a result only whole; a warning says so, and what the task
        changed (with the diff's before and after when run with C(--diff)). Give that token to the later tasks (for example
        C(previous.token if previous.token is defined else login.token)), so that they do not log in again.
      - If not set, the environment variable E(ENCEDO_HEM_TOKEN) is used, also when the task sets O(passphrase). Set it to an
        empty string to ignore that variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of the device.
      - Turning verification off lets anybody on the path intercept the connection; the task warns when it is off.
        Prefer O(ca_path).
      - If not set, the environment variable E(ENCEDO_HEM_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed the device TLS certificate (for example the vendor CA).
      - A directory of hashed CA certificates (C(c_rehash)) works too.
      - If not set, the CA bundle of the Python C(certifi) package (the default of the Python C(requests) library).
      - When set, it is the only trust.
      - Environment variables never change the trust, with or without this option (E(REQUESTS_CA_BUNDLE), E(CURL_CA_BUNDLE)
        and E(SSL_CERT_FILE) are not read), so a variable set for other tools cannot decide which devices are trusted.
      - It also verifies the certificate of an C(https://) proxy (see O(proxy_url)).
      - If not set, the environment variable E(ENCEDO_HEM_CA_PATH) is used.
    type: path
  timeout:
    description:
      - Seconds to wait for the device, per request including its retries.
      - It bounds each request as a whole, from connecting to the last byte of the answer, however slowly the answer
        arrives. An answer is read up to a fixed size (256 KiB), uncompressed; a larger or compressed answer fails the
        task, naming the device and the limit.
      - Reads are retried with exponential backoff on connection errors, timeouts and busy answers (HTTP 409, 429, 500, 503,
        honouring C(Retry-After)) until this time is used up. Writes are never sent twice.
      - If not set, the environment variable E(ENCEDO_HEM_TIMEOUT) is used.
    type: int
    default: 30
  proxy_url:
    description:
      - The proxy to reach the device through, for example V(http://proxy.example:3128) or V(https://user:pass@proxy.example:3129).
      - The value may hold the proxy's credentials, so it is handled like a secret (C(no_log)); Ansible shows it nowhere,
        not in the task's arguments at C(-vvv) nor in the result, and error messages name only the proxy's scheme and host.
        C(http://) and C(https://) proxies work; the device's C(https://) URL goes through an HTTP CONNECT tunnel, so the
        device certificate is verified end to end.
      - When set, every request of the task to the device uses it, whatever E(NO_PROXY) says. The check-in backend
        (C(backend_url) of the modules that have it) never uses it.
      - If not set, the proxies of the environment apply as the Python C(requests) library reads them - E(HTTPS_PROXY),
        E(HTTP_PROXY) and E(ALL_PROXY) (upper or lower case) with E(NO_PROXY) (host names, domains, and address blocks such
        as C(10.0.0.0/8)). C(.netrc) is never read.
      - If not set, the environment variable E(ENCEDO_HEM_PROXY_URL) is used.
    type: str
  allow_plain_http:
    description:
      - Whether a plain V(http://) O(url) may be used for requests that carry credentials - the login (whose proof can be
        replayed while its challenge is valid) and every request with the bearer token, all readable by anybody on the path.
      - When false (the default), such a task fails before sending anything and says to use the V(https://) URL of the
        device. Requests without credentials (the status, a TLS bundle stored on a device without one, see O(url)) are
        not affected.
      - If not set, the environment variable E(ENCEDO_HEM_ALLOW_PLAIN_HTTP) is used.
    type: bool
    default: false
attributes:
  action_group:
    description: Use C(group/encedo.hem.hem) in C(module_defaults) to set the connection options once for every module.
    support: full
    membership:
      - encedo.hem.hem
  platform:
    platforms: encedo_hem
    support: full
    details: Runs where the task runs, normally on the controller with a local connection; that host must reach the device API.
'''
