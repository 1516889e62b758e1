"""The sinkhole listener: connections to the sinkhole address, recorded by the name they meant.

`CaptureListener` accepts, `hello` reads a TLS ClientHello's SNI/ALPN, `http` an HTTP request
line and Host; each connection that sent bytes becomes a `ConnectEvent` for the daemon to turn
into a hit of kind `connect`.
"""

from sinkhole.capture.listener import CaptureListener, ConnectEvent, capture_addresses

__all__ = ["CaptureListener", "ConnectEvent", "capture_addresses"]
