"""sinkhole: a DNS sinkhole and alerting daemon that finds the infected device."""

__version__ = "0.1.0"
