"""The typed IR shared by every backend."""
