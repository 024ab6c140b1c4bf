"""Git repositories: the `git` provider and the in-process ref lookup behind it.

    urls.py        which URLs we may contact, their transport and host (no I/O)
    protocol.py    pkt-lines and ref advertisements (sans-IO)
    smart_http.py  list_refs over http(s), through the shared httpx client
    daemon.py      list_refs over git:// (a raw socket)
    ssh.py         list_refs over ssh and local paths (`git ls-remote`)
    remote.py      GitRemote: checks a URL, picks the transport, translates its errors
    provider.py    GitProvider: the `git` provider (spec -> ResolvedRepo)

Nothing is re-exported here: `security/credentials.py` imports `urls`, and `remote` imports that,
so importing the modules themselves keeps that from becoming an import cycle.
"""
