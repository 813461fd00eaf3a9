"""limen: a VM manager over libvirt whose browser console never hangs."""

# The one place the version is written: the package metadata (pyproject.toml), `limen --version` and
# /healthz read it from here.
__version__ = "0.1.0"
