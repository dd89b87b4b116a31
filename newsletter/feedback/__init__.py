"""Mail that comes back to the bounce address, sorted: bounces (hard or soft, per recipient), complaints
(RFC 5965 ARF), auto-replies (RFC 3834), readers' own mail, and the rest for a person (``classify.py``)."""

from newsletter.feedback.classify import Kind, Recipient, Verdict, classify

__all__ = ["Kind", "Recipient", "Verdict", "classify"]
