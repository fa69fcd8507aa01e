"""A real S3 API over HTTP for the suite: moto's standalone server, on a free loopback port.

``TENANTRY_TEST_S3_ENDPOINT`` names a server already running (``.ci/run`` may start one);
else the session starts its own and stops it at the end. moto is a pinned test dependency:
a server that cannot start fails the tests that need it, it never skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from tests.server import free_port, stop

ENDPOINT_ENV_VAR = "TENANTRY_TEST_S3_ENDPOINT"
# moto accepts any; set so boto3 never looks for a real account's.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tenantry-test",
    "AWS_SECRET_ACCESS_KEY": "tenantry-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """moto's server in a subprocess: ``url`` once it answers."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.url = os.environ.get(ENDPOINT_ENV_VAR, "")

    def __enter__(self) -> MotoServer:
        if self.url:
            return self
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # Its request log goes to a file: a pipe nobody reads would fill and stop it.
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"moto's server stopped: {self.log.read()[-2000:]!r}")
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1).close()  # noqa: S310
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError("moto's server did not answer within 30 s")

    def __exit__(self, *exc_info) -> None:
        if self.process is not None:
            stop(self.process)
            self.log.close()
            self.process = None
