"""JMAP (RFC 8620 core; the Mail, Submission and push parts plug into it).

errors (the two levels of failure) · references (§3.7 back-references) · core (Request,
Context, the method registry, the dispatcher) · session (the Session resource and the capability
registry) · auth (Basic/Bearer, TLS) · services (what the listener is given) · http (the
Starlette app and the uvicorn listener).
"""

from mailyard.protocols.jmap import blobs as blobs  # Blob/copy
from mailyard.protocols.jmap import mail as mail  # registers the Mail methods
from mailyard.protocols.jmap import pushsub as pushsub  # PushSubscription/get|set
from mailyard.protocols.jmap import websocket as websocket  # the websocket capability
