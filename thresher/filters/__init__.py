"""Document filters: language, quality rules, URL blocklists, PII, learned quality classifier.

The stages are registered by name in :mod:`thresher.registry`.
"""
