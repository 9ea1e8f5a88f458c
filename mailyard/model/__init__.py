"""The mail model: the rules of a mailbox store, written once over the narrow `MailTx` port.

An engine (store/sqlite, store/postgres) implements `store.ports.MailTx`: one write
transaction on one account's rows, offering primitives only (rows by key, counters, the next
MODSEQ, an append to the change log). What those primitives are combined into (which keyword
list an email ends with, when an unread counter moves, which change-log entries a write makes
and under which MODSEQ, when an expunge destroys an email, which thread a message joins) is
decided here, once, so that no engine can drift from another. Which model function answers
each method of the MailStore port is decided here too (writes.py, views.py, reads.py): an
engine's MailStore inherits them and only opens its transactions and reads (`write_mail`,
`read_mail`, `account_rows`, ...); what is still written per engine is listed in
docs/ARCHITECTURE.md.

The model's functions are coroutines: PostgreSQL's MailTx awaits its driver, SQLite's runs
each primitive at once on its writer thread and drives the coroutine there without an event
loop (store/sqlite/mailtx.py `run_now`).
"""
