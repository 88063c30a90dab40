# -*- coding: utf-8 -*-
# Copyright: meshlab.mtls contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Repeat an observation with a growing pause until it shows what is expected or time runs out."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time


def backoff_delays(first=0.5, factor=1.6, cap=8.0):
    """0.5, 0.8, 1.28, ... seconds, never more than ``cap``."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def poll_until(observe, matches, timeout_s, clock=time.monotonic, pause=time.sleep, delays=None):
    """Call ``observe()`` until ``matches(result)`` or ``timeout_s`` passed since the first call.

    Returns ``(result, converged, converged_after_s, attempts)``; ``converged_after_s`` is measured from
    the start of the first observation to the start of the matching one (None if none matched).
    A ``timeout_s`` of 0 observes exactly once.
    """
    delays = delays or backoff_delays()
    start = clock()
    attempts = 0
    while True:
        began = clock()
        result = observe()
        attempts += 1
        if matches(result):
            return result, True, round(began - start, 3), attempts
        remaining = timeout_s - (clock() - start)
        if remaining <= 0:
            return result, False, None, attempts
        pause(min(next(delays), remaining))
