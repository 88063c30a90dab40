"""Small programs that stand in for the container images of the mesh lab (bookinfo, placeholders)."""
