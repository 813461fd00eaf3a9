"""The console benchmark: raw TCP, websockify and limen against one fake VNC server, in one run.

``python -m bench.run`` (``--smoke`` for a seconds-long run). Modules, in the order data flows:

* ``rfb``             the RFB 3.8 wire format both ends share: messages, and a parser that counts updates
* ``fake_vnc_server`` the VNC server (modes ``stream``, ``echo-update``, ``idle``), its own process
* ``load_client``     the client: WebSocket upgrade, limen's status frames, RFB handshake, measurements
* ``procstat``        CPU seconds and RSS/PSS of a process group, from /proc
* ``systems``         starting and stopping the servers under test (process groups, free ports)
* ``run``             the runner: every system, every measurement, a table and a JSON file
* ``ws_pump``         a raw asyncio-Protocol WebSocket → TCP pump: the ceiling a Python proxy can reach
"""
