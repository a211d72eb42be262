"""The wpw command line (host tool); see main.py."""
