"""Example apps (``make run`` serves examples/app.py)."""
