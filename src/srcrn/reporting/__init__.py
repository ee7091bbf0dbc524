"""Reporting: figures and tables from runs."""
