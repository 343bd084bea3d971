"""Test support: private servers and the processes a test starts."""
