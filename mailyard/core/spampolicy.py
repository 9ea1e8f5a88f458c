"""The content-filtering settings (`[spam]` in the config), apart from the rules so that
reading the configuration does not load the MIME parser and the spam features."""

from __future__ import annotations

from dataclasses import dataclass

JUNK_THRESHOLD = 5.0


@dataclass(frozen=True)
class SpamPolicy:
    """Content filtering (services/checks/content.py): rules, the classifier, users' lessons,
    optional rspamd and clamd. It is the `[spam]` config table as it stands."""

    enabled: bool = True
    junk_threshold: float = JUNK_THRESHOLD
    """Score at or above which a message goes to Junk."""
    reject_threshold: float = 0.0
    """Score at or above which DATA is refused (550 5.7.1); 0: never."""
    min_spam: int = 5
    min_ham: int = 5
    """The classifier speaks once its model has learnt this many spam and ham messages."""
    user_weight: float = 1.0
    """Weight of a user's own lessons against the global counts in that user's verdicts."""
    global_weight: float = 0.5
    """Weight of one user's lesson in the global model."""
    collab_window: float = 86_400.0
    collab_reporters: int = 3
    collab_score: float = 3.0
    """Added when collab_reporters users reported the sender or content within the window."""
    rspamd_url: str = ""
    """e.g. "http://127.0.0.1:11333"; "": no rspamd."""
    rspamd_timeout: float = 5.0
    clamd: str = ""
    """"host:port" or a Unix socket path of clamd; "": no virus scanning."""
    clamd_timeout: float = 30.0
