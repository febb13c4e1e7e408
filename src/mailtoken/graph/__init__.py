"""Sending through Microsoft Graph (`mailtoken sendmail`), for tenants that turned SMTP AUTH off.

scopes.py   which Graph permissions an account needs, and where its Graph API lives (catalog data)
message.py  sendmail(8)'s command line and the message: envelope, Bcc, From (pure, no I/O)
client.py   one Graph exchange over HTTPS, and Graph's answers turned into sysexits
sendmail.py the command: token, submission, retries within one deadline, the queue
consent.py  what `mailtoken login` adds for send = "graph"
"""
