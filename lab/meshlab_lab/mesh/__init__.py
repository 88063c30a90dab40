"""The lab's service mesh: istiod emulation (config push, injection, mesh CA), sidecar/gateway proxy, Route router.

This is an independent implementation of the Istio rules the lab needs; it never imports the collection.
"""
