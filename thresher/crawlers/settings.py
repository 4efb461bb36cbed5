"""CrawlConfig → Scrapy settings for one partition process."""

from __future__ import annotations

from thresher.crawlers.config import CrawlConfig
from thresher.crawlers.scope import MAX_URL_LENGTH

_MW = "thresher.crawlers.middlewares"


def scrapy_settings(config: CrawlConfig) -> dict:
    return {
        "BOT_NAME": config.robots_token,
        "USER_AGENT": config.full_user_agent,
        "ROBOTSTXT_OBEY": config.obey_robots,
        "ROBOTSTXT_USER_AGENT": config.robots_token,
        "DEFAULT_REQUEST_HEADERS": {
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
            "Accept-Language": "*",
            "Accept-Encoding": config.accept_encoding,
        },
        "CONCURRENT_REQUESTS": config.concurrent_requests,  # transfers (downloader.PoliteDownloader)
        "DOWNLOADER": "thresher.crawlers.downloader.PoliteDownloader",
        # The spider yields only requests: Scrapy's default of 100 parallel item tasks per
        # response cost 27% of the CPU per page for nothing.
        "CONCURRENT_ITEMS": 1,
        "DNSCACHE_ENABLED": True,
        "DNSCACHE_SIZE": 100_000,  # one entry per host; netsafety resolves through this cache
        "TWISTED_DNS_RESOLVER": "thresher.crawlers.dns.ExpiringResolver",  # entries expire (dns_cache_ttl)
        "THRESHER_DNS_TTL": config.dns_cache_ttl,
        "THRESHER_CONCURRENT_PER_IP": config.concurrent_per_ip,  # downloader.AddressGate
        "THRESHER_IP_DELAY": config.ip_delay,
        "CONCURRENT_REQUESTS_PER_DOMAIN": config.concurrent_per_host,
        "DOWNLOAD_DELAY": config.download_delay,
        "AUTOTHROTTLE_ENABLED": config.autothrottle,
        "AUTOTHROTTLE_START_DELAY": max(config.autothrottle_start_delay, config.download_delay),
        "AUTOTHROTTLE_MAX_DELAY": config.autothrottle_max_delay,
        "AUTOTHROTTLE_TARGET_CONCURRENCY": config.autothrottle_target_concurrency,
        "DOWNLOAD_TIMEOUT": config.timeout,
        "DNS_TIMEOUT": config.dns_timeout,
        "DOWNLOAD_MAXSIZE": config.max_page_bytes,
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_TIMES": config.retries,
        "THRESHER_RETRY_BACKOFF": config.retry_backoff_base,
        "THRESHER_ROBOTS_RETRY_DELAY": config.robots_retry_delay,
        "REDIRECT_MAX_TIMES": config.max_redirects,
        "METAREFRESH_ENABLED": False,  # would bypass the redirect vetting in RawCaptureMiddleware
        "COOKIES_ENABLED": False,  # pages archived as an anonymous visitor sees them
        "THRESHER_ALLOW_PRIVATE": config.allow_private,
        "THRESHER_ALLOW_PRIVATE_HOSTS": list(config.allow_private_hosts),
        "THRESHER_ALLOW_NETWORKS": list(config.allow_networks),
        # page requests wait on disk, one queue per host; the spider's Frontier dedups
        "SCHEDULER": "thresher.crawlers.scheduler.FrontierScheduler",
        "DEPTH_LIMIT": 0,  # depth is a scope rule, checked before a request is made
        "URLLENGTH_LIMIT": MAX_URL_LENGTH,  # also a scope rule (scope.MAX_URL_LENGTH)
        "DOWNLOADER_MIDDLEWARES": {
            # scope.Scope decides what is followed; Scrapy's offsite check (the spider names no
            # allowed_domains) passed everything at ~4% of the CPU per request, twice per request
            "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
            f"{_MW}.HostSlotMiddleware": 30,
            "thresher.crawlers.netsafety.AddressGuardMiddleware": 40,
            "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
            "thresher.crawlers.robots.RobotsPolicyMiddleware": 100,
            "thresher.crawlers.partition.BudgetMiddleware": 120,  # reserves a page of the budget
            f"{_MW}.TdmRepMiddleware": 110,
            "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
            f"{_MW}.BackoffRetryMiddleware": 555,
            f"{_MW}.RawCaptureMiddleware": 610,
        },
        "SPIDER_MIDDLEWARES": {
            # scope.Scope checks the URL length and depth before a request is made, and the
            # spider sets each request's depth itself; these re-did it per request
            "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
            "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
            # the spider copies no response meta into its requests
            "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,
        },
        "TELNETCONSOLE_ENABLED": False,
        "EXTENSIONS": {"scrapy.extensions.remote_control.RemoteControl": None},  # no listening port
        "LOG_LEVEL": config.log_level,
        "LOGSTATS_INTERVAL": config.log_interval,
        "LOG_FORMAT": "%(asctime)s %(levelname)s %(name)s: %(message)s",
    }
