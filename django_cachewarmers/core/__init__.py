"""The warming engine, free of any framework: nothing in this package imports Django.

``CacheWarmer`` (engine) fills any cache with ``set_many`` (or a plain mapping) from a
``KeyProvider`` (providers) and a ``ValueLoader`` (loaders), with a ``WarmingConfig`` (config), and
reports a ``WarmingStats`` (stats); ``AccessTracker`` (tracker) counts key accesses for adaptive
warming. What a particular cache backend does better than ``set_many`` (a faster write, its key
rules, its entry limit) comes from the ``BackendAdapter`` registered for it (backends): the Django
layer (``django_cachewarmers.backends``) registers Django's cache backends there. The lint step
(``lint-imports``) keeps this package free of Django.
"""
