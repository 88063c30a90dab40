"""Emulated OLM and Service Mesh 2 operator for the local lab (run as ``python -m meshlab_lab.operators``)."""
