"""What the webmail's routes are given: the services they call, never a store."""

from __future__ import annotations

from dataclasses import dataclass

from mailyard.protocols.jmap.services import JMAPPolicy
from mailyard.services.accounts import AccountService
from mailyard.services.blobs import BlobService
from mailyard.services.mailbox import MailboxService
from mailyard.services.tokens import TokenService

DAY = 86400.0


@dataclass(frozen=True)
class WebServices:
    accounts: AccountService
    tokens: TokenService
    """A session is an API token named SESSION_NAME: any node checks it in the store, the
    user sees and revokes it with the others, and logout revokes it."""
    mailbox: MailboxService
    policy: JMAPPolicy
    """The JMAP listener's: TLS, trusted proxies and allowed origins are the same."""
    blobs: BlobService
    """For attachment previews (web/attachment.py)."""
    authserv_id: str
    """Our hostname as written in our Authentication-Results fields (RFC 8601): the page trusts
    only those, since the server removes any other that claims it (core/authresults.py)."""
    session_seconds: float = 7 * DAY
    """How long a session lasts after login, whether or not the browser is closed."""
