"""Real servers the integration tests run: a private Dovecot, an SMTP sink, a scripted fake Exchange."""
