"""The processes of a loopback limen cluster, started as `make cluster` does and as the tests do: a second
libvirt host, PostgreSQL, Redis, ``limen serve`` replicas and HAProxy. A module each; no test code.

``scripts.cluster`` (``make cluster``) is built from them; tests/support wraps them for the tests (a free
loopback address, a database per test, context managers that stop what they start).
"""
