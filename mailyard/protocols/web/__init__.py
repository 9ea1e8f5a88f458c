"""The webmail: a page served by the HTTP listener that talks only JMAP to the same server.

`pages` serves the app shell, its static files, login and logout, in front of the JMAP app's
authentication (like the ops paths); `message` serves a message's sanitised HTML behind it, with
the session cookie accepted as JMAP credentials (protocols/jmap/auth.py).
"""
