"""Self-signed TLS certificates for tests that serve HTTPS or WSS (Debian's openssl, an EC key: fast)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

DEFAULT_NAMES = ("IP:127.0.0.1", "DNS:localhost")

# `openssl ca`'s least configuration: what `openssl req -x509` cannot make, a certificate of chosen dates.
_CA_CONFIG = """[ca]
default_ca = limen_test
[limen_test]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = anything
copy_extensions = copy
[anything]
commonName = supplied
"""


def make_certificate(directory: Path, *, names: tuple[str, ...] = DEFAULT_NAMES, expired: bool = False,
                     stem: str = "limen") -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (subjectAltName entries: 127.0.0.1 and localhost unless said),
    and its key; ``expired``: valid on 1 January 2020 only."""
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=limen-test",
               "-keyout", str(key), "-addext", f"subjectAltName={','.join(names)}"]
    if not expired:
        subprocess.run(["openssl", "req", "-x509", *new_key, "-days", "2", "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "ca.cnf").write_text(_CA_CONFIG)
        (work / "index.txt").touch()
        (work / "serial").write_text("01\n")
        subprocess.run(["openssl", "req", "-new", *new_key, "-out", str(work / "request.csr")],
                       check=True, capture_output=True, timeout=60)
        subprocess.run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", str(key),
                        "-in", "request.csr", "-out", str(cert), "-notext",
                        "-startdate", "20200101000000Z", "-enddate", "20200102000000Z"],
                       check=True, capture_output=True, timeout=60, cwd=work)
    return cert, key
