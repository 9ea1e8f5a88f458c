"""JMAP Mail (RFC 8621): one module per object type, each registering its methods on import.

The `urn:ietf:params:jmap:mail` capability is declared here, with the limits RFC 8621 §1.3.1
asks each account to advertise; importing this package is what makes the methods callable.
"""

from __future__ import annotations

from typing import Any

from mailyard.protocols.jmap.mail import common, email_sort
from mailyard.protocols.jmap.services import JMAPServices
from mailyard.protocols.jmap.session import capability
from mailyard.store.ports import Account

MiB = 1024 * 1024


def _account_capability(services: JMAPServices, account: Account) -> dict[str, Any]:
    return {
        "maxMailboxesPerEmail": None,
        "maxMailboxDepth": None,
        "maxSizeMailboxName": 255,
        "maxSizeAttachmentsPerEmail": 35 * MiB,
        "emailQuerySortOptions": list(email_sort.PROPERTIES),
        "mayCreateTopLevelMailbox": True,
    }


capability(common.MAIL, account=_account_capability)

from mailyard.protocols.jmap.mail import email_changes as email_changes  # noqa: E402
from mailyard.protocols.jmap.mail import email_get as email_get  # noqa: E402
from mailyard.protocols.jmap.mail import email_import as email_import  # noqa: E402
from mailyard.protocols.jmap.mail import email_query as email_query  # noqa: E402
from mailyard.protocols.jmap.mail import email_set as email_set  # noqa: E402
from mailyard.protocols.jmap.mail import filters as filters  # noqa: E402
from mailyard.protocols.jmap.mail import identity as identity  # noqa: E402
from mailyard.protocols.jmap.mail import mailbox as mailbox  # noqa: E402
from mailyard.protocols.jmap.mail import quota as quota  # noqa: E402
from mailyard.protocols.jmap.mail import sieve as sieve  # noqa: E402
from mailyard.protocols.jmap.mail import snippet as snippet  # noqa: E402
from mailyard.protocols.jmap.mail import submission as submission  # noqa: E402
from mailyard.protocols.jmap.mail import thread as thread  # noqa: E402
from mailyard.protocols.jmap.mail import vacation as vacation  # noqa: E402
