"""How the token server and the registrar serve HTTP: uvicorn with the limits a
listener reachable by anyone needs (header size and count, a request read timeout, a
connection cap) and optional TLS.

``limits`` is light (the command line imports it for its defaults); ``guard`` and
``run`` load uvicorn.
"""
