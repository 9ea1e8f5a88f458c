"""The scaled-out engines on PostgreSQL: the MailStore (more ports to follow)."""
