"""The HTTP side of one request: may it use the cache (rules), and what a hit, a miss or
a 304 carries (http, response)."""
