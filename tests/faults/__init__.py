"""Faults injected for real, bad input, no password ever printed, and the API-misuse fuzz: each gets one clear
error, and nothing is left behind."""
