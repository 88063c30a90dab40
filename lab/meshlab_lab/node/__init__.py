"""Emulated Kubernetes node: registers a Node, runs bound pods as processes in network namespaces."""
