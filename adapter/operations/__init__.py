"""What an operator command does (set a server up, show a referral's journey), without printing.

``adapter.cli`` is the face that prints; the modules here return what it prints, so the same work
can be called from a test, the demo or another tool.
"""
