"""The cached path: everything `mailtoken token|xoauth2|oauthbearer` needs to answer from a fresh record.

Standard library only, and nothing heavy from it: clients run the helper on every connection, so this
package must cost no more than starting Python (tests/test_hot_path.py imports it with msal, requests,
keyring, platformdirs, filelock and argparse blocked). Everything else in mailtoken may import from here;
nothing here imports from the rest.
"""
