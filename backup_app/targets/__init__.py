"""Targets: the databases the app backs up."""
