"""Security: where the service may connect, with which credentials, and what it never shows or hands on.

    egress.py        only public addresses for connections made on a user's behalf (checked after DNS)
    destinations.py  the repository a build will clone, checked before the build starts
    credentials.py   operator-configured git credentials, looked up by a URL's origin
    child_env.py     the environment every subprocess gets: none of the service's secrets
    redaction.py     credentials out of URLs and of text we show (messages, logs, annotations)

Nothing is re-exported here: `providers/git/` imports `redaction` and `egress`, and `credentials` imports
`providers/git/urls.py`, so importing the modules themselves keeps that from becoming an import cycle.
"""
