"""Shared math and plumbing of the sb3_pgx algorithms."""
