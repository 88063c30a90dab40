"""Emulated cluster DNS: A records of Services, NXDOMAIN for everything else, never forwards."""
