"""The browser console: a WebSocket that ends in a live VNC stream or a clear error, in bounded time.

In the order a console opens:

* ``endpoint.py``    the WebSocket routes; accept, then hand over to a session
* ``admission.py``   who may open it (Origin, ticket / cookie / token, owner), checked in check_vm, and
                     the session's audit row
* ``session.py``     one session's I/O: the stages' work, the proxy, the watches, the final frames
* ``stages.py``      the pure stage machine: stages, transitions, deadlines, which frame goes out when
* ``messages.py``    the JSON text frames (the seed's exact texts and error fields)
* ``upstream.py``    the TCP connection to the VM's VNC server
* ``rfb.py``         the RFB banner check
* ``pump.py``        the two directions of the proxy, with backpressure
* ``sessions.py``    the registry of live sessions (server shutdown ends them all)
* ``ws_protocol.py`` the uvicorn WebSocket protocol whose connections always end

The wire protocol (``GET /api/vms/{id}/console``, alias ``/vnc/{id}``; ``{id}`` a UUID or a name)::

    stage       frame sent on entering it                                       deadline (setting)
    check_vm    {"type":"status","message":"Connected, checking VM status..."}   console_check_vm_timeout 3 s
    start_vm    {"type":"status","message":"Starting VM..."}  (stopped VM only)  console_start_vm_timeout 8 s
    get_port    {"type":"status","message":"Getting VNC port..."}                console_get_port_timeout 3 s
    connect     {"type":"status","message":"Connecting to VNC server on port N..."}  console_connect_timeout 3 s
    read_banner (none: waits for b"RFB xxx.yyy\\n")                               console_banner_timeout 3 s
    proxy       {"type":"status","message":"VNC connection established, starting proxy..."},
                then the banner as the first binary frame, then the VNC stream both ways

Status frames also carry ``"stage"`` and ``"elapsed_ms"`` (since the upgrade). The first goes out
before any libvirt call. Worst case from the upgrade to a verdict with the defaults: 20 s.

An error ends the session: ``{"type":"error","error","code","details","message","stage"}`` (before the
proxy stage, or in it with ``?notices=1``), then a close frame whose code is the error code's close
code (``limen.errors``) and whose reason is the code's name:

    4001 INVALID_VM_ID  4004 VM_NOT_FOUND  4100 VM_NOT_RUNNING  4101 VM_START_FAILED  4102 VM_STOPPED
    4200 VNC_NOT_CONFIGURED  4201 VNC_PORT_ERROR  4202 VNC_CONNECTION_FAILED  4203 VNC_HANDSHAKE_FAILED
    4300 HYPERVISOR_UNAVAILABLE  4400 SLOW_CLIENT  4401 IDLE_TIMEOUT  4402 SERVER_SHUTDOWN
    4403 SESSION_TERMINATED  4501 UNAUTHORIZED  4503 FORBIDDEN  4504 TICKET_EXPIRED  4505 TICKET_USED
    4506 ORIGIN_NOT_ALLOWED  4010 HOST_NOT_ALLOWED  4900 INTERNAL_ERROR
    (and the WebSocket's own 1007 for a text message that is not UTF-8)

Which error a stage's timeout becomes: check_vm → HYPERVISOR_UNAVAILABLE, start_vm → VM_START_FAILED,
get_port → VNC_PORT_ERROR (HYPERVISOR_UNAVAILABLE if a libvirt call was the one hanging), connect →
VNC_CONNECTION_FAILED, read_banner → VNC_HANDSHAKE_FAILED. Every WebSocket write has
``console_write_timeout`` (5 s): a client that does not read is dropped with SLOW_CLIENT (close frame
only). Pings every ``console_ping_interval`` (20 s); an unanswered one drops the client.
``console_idle_timeout`` (off by default) closes with IDLE_TIMEOUT after that long without input, with
an ``IDLE_WARNING`` notice ``console_idle_warning`` seconds before (to ``?notices=1`` clients).
"""
