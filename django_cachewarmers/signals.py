"""Signals sent around every warming run."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent before a run starts. sender: the ``CacheWarmer`` class; kwargs: ``warmer`` (the instance),
#: ``name``, ``trigger``, ``keys`` (the requested keys, or None for the warmer's key provider).
warming_started = Signal()

#: Sent after a run finished and was recorded. sender: the ``CacheWarmer`` class; kwargs:
#: ``warmer``, ``name``, ``trigger``, ``stats`` (``WarmingStats``) and ``run`` (the ``WarmingRun``
#: row, or None when the database could not record it).
warming_finished = Signal()
