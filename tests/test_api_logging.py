"""Log masking keeps `record.args` usable: uvicorn's access formatter prints its line (it used to
print a 60-line "--- Logging error ---" for every request), and no secret is in it."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from uvicorn.logging import AccessFormatter, DefaultFormatter

from backend.core.secrets import install_log_masking, register_secret
from tests.support.callbacks import free_port

SECRET = "very-secret-token-0123456789abcdef"


def test_uvicorns_access_formatter_prints_a_masked_line():
    install_log_masking()
    register_secret(SECRET)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AccessFormatter('%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                                         use_colors=False))
    logger = logging.getLogger("uvicorn.access.test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        # Exactly the call uvicorn's h11 protocol makes for each response.
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", f"/verify/x?k={SECRET}", "1.1", 200)
        logging.getLogger("uvicorn.error.test").addHandler(handler)
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
        logger.info("key %s in a %s", SECRET, "message")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("INFO:") and '"GET /verify/x?k=••••••' in lines[0] and lines[0].endswith(" 200 OK")
    assert lines[1] == "INFO:     key ••••••cdef in a message"
    assert SECRET not in stream.getvalue()


@pytest.mark.slow
def test_mani_serve_prints_one_access_line_per_request_and_no_token(tmp_path, mani_env):
    port = free_port()
    env = {**os.environ, **mani_env, "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-c", "import cli; cli.main()", "serve", "--port", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None, log_path.read_text()
                    time.sleep(0.2)
            token = "mani_" + "T" * 40
            httpx.post(f"http://127.0.0.1:{port}/api/v1/jobs", content=b"{}",
                       headers={"Authorization": f"Bearer {token}"})
            httpx.get(f"http://127.0.0.1:{port}/metrics")
            time.sleep(0.5)
        finally:
            server.terminate()
            server.wait(timeout=20)
    text = log_path.read_text()
    assert "Logging error" not in text and "Traceback" not in text, text
    access = [line for line in text.splitlines() if '"GET /' in line or '"POST /' in line]
    assert any('"POST /api/v1/jobs HTTP/1.1" 401' in line for line in access), text
    assert sum('"GET /metrics HTTP/1.1" 200' in line for line in access) == 1, text
    assert token not in text
