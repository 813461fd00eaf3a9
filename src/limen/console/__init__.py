"""The browser console: a WebSocket that ends in a live VNC stream or a clear error, in bounded time.

In the order a console opens:

* ``endpoint.py``     the WebSocket routes; accept, then hand over to a session
* ``admission.py``    who may open it (Origin, ticket / cookie / token, owner), checked in check_vm, and
                      the session's audit row
* ``vnc_session.py``  a VNC console session (:class:`ConsoleSession`): how each of the machine's effects is
                      performed (libvirt look-up and start, TCP connect, banner read, proxy)
* ``driver.py``       the generic driver of any console kind (:class:`ConsoleDriver`): runs the pending
                      effect within the stage deadline, feeds back its result, runs the side watches
                      (VM lifecycle, idle, client leaving, end requests), sends the final frames
* ``handshake.py``    the pure machines: :class:`StageMachine` (stages, deadlines, frames, endings, for any
                      kind) and :class:`VncHandshake` (effects out, results in; every VNC decision)
* ``stage_table.py``  what each stage is, declared once: name, label, status text, deadline setting,
                      timeout codes and details, what a generic libvirt refusal becomes (the README's
                      tables and ``GET /api/console-stages`` come from it)
* ``messages.py``     the JSON text frames (the seed's exact field order; the encoder)
* ``upstream.py``     the TCP connection to the VM's VNC server and its banner read (``limen doctor``
                      uses the same two functions)
* ``rfb.py``          the RFB banner check (sans-I/O)
* ``pump.py``         the two directions of the proxy, with backpressure (the portable path)
* ``splice.py``       the proxy stage inside the WebSocket protocol (the fast path)
* ``kernel_move.py``  a streaming session's VNC → browser bytes moved by the kernel (``splice(2)``)
* ``binary_frame.py`` a server's binary frame header, written in place before its payload
* ``ws_protocol.py``  the uvicorn WebSocket protocol whose connections always end, and offers the splice
* ``registry.py``     the registry of live sessions (server shutdown and revocation end them)

The serial text console, on the same stage table, machine base and driver:

* ``serial_endpoint.py``   its WebSocket route (``/api/vms/{id}/serial``), the same admission and registry
* ``serial_session.py``    :class:`SerialSession`, the driver with the serial effects (device check, take
                           over, libvirt's console stream both ways), and who holds each VM's port
* ``serial_handshake.py``  :class:`SerialHandshake`, the pure machine (every serial decision)

The stages, their status frames, deadlines and timeout codes are in ``stage_table.py`` and in the README's
"The console" section (a unit test keeps the two equal). Status frames carry ``"stage"`` and
``"elapsed_ms"`` (since the upgrade); the first goes out before any libvirt call.

An error ends the session: ``{"type":"error","error","code","details","message","stage"}`` (before the
proxy stage, or in it with ``?notices=1``), then a close frame whose code is the error code's close
code (``limen.errors``) and whose reason is the code's name. Every WebSocket write has
``console_write_timeout`` (5 s): a client that does not read is dropped with SLOW_CLIENT (close frame
only). Pings every ``console_ping_interval`` (20 s); an unanswered one drops the client.
``console_idle_timeout`` (off by default) closes with IDLE_TIMEOUT after that long without input, with
an ``IDLE_WARNING`` notice ``console_idle_warning`` seconds before (to ``?notices=1`` clients).
"""
