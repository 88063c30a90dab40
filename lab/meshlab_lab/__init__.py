"""The meshlab local lab: a real Kubernetes 1.20.2 control plane plus emulated nodes."""
