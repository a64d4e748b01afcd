#!/usr/bin/env python3
"""users.py -- the users of the rotating variant of `make bench` (bench/run.sh): registers
COUNT users through the gateway (an email taken by an earlier run on the same var/ is fine:
the user is then only logged in), logs each in and writes their access tokens, one a line,
to OUT. Register and login each run argon2id in auth (~10-40 ms), so JOBS workers in
parallel (auth has 4 bus workers by default). Prints the size range of their GET /v1/me
bodies (the minimal handler answers one user's bytes; the rotating users' differ a little).

usage: bench/users.py BASE_URL COUNT JOBS OUT   (BASE_URL "http://127.0.0.1:18080")
"""
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.request

# A fixed password: the accounts live only in the bench's own database (build/bench/var).
PASSWORD = 'bench-rotating-password'


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if token is not None:
        req.add_header('Authorization', 'Bearer ' + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def user(base, i):
    # same length for every i below 100000: the /me bodies differ only in their bytes
    email = f'bench-rot-{i:05d}@bench.local'
    st, b = call(base, 'POST', '/v1/auth/register',
                 {'name': f'Bench Rotating {i:05d}', 'email': email, 'password': PASSWORD})
    if st not in (201, 409):
        raise RuntimeError(f'register {email}: {st} {b[:200]!r}')
    new = st == 201
    st, b = call(base, 'POST', '/v1/auth/login', {'email': email, 'password': PASSWORD})
    if st != 200:
        raise RuntimeError(f'login {email}: {st} {b[:200]!r}')
    token = json.loads(b)['accessToken']
    st, b = call(base, 'GET', '/v1/me', token=token)
    if st != 200:
        raise RuntimeError(f'GET /v1/me of {email}: {st} {b[:200]!r}')
    return token, len(b), new


def main():
    base, count, jobs, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        got = list(ex.map(lambda i: user(base, i), range(count)))
    with open(out, 'w') as f:
        for token, _, _ in got:
            f.write(token + '\n')
    sizes = [n for _, n, _ in got]
    print(f'{count} users ({sum(1 for g in got if g[2])} new) logged in in '
          f'{time.monotonic() - t0:.1f} s by {jobs} workers; GET /v1/me bodies '
          f'{min(sizes)}-{max(sizes)} bytes')


if __name__ == '__main__':
    try:
        main()
    except RuntimeError as e:
        print(f'users.py: {e}', file=sys.stderr)
        sys.exit(1)
