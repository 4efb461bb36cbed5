"""Document filters: language, quality rules, URL blocklists, PII, learned quality classifier."""
