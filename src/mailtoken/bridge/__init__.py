"""Local IMAP/POP3/SMTP bridge: password logins locally, XOAUTH2 upstream (``mailtoken serve``)."""
