"""Signing in: the flows (login.py), the device code display (device.py), the loopback receiver and the
pasted redirect for the browser flow (paste.py), and the app-only credential check (apponly.py)."""
