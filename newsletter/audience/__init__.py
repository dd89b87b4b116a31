"""Subscribers: the one owner of subscriber state (``subscribers``), what mail that comes back does to
them (``bounces``) and their CSV files (``csvio``)."""

from .bounces import add_soft_bounce, complained, mark_bounced, soft_score
from .csvio import BATCH, COLUMNS, ImportResult, export_csv, import_csv
from .subscribers import (
                          INACTIVE,
                          NAME_MAX,
                          Listing,
                          Subscriber,
                          active_count,
                          add,
                          address_hash,
                          check_signup,
                          clean_name,
                          confirm_id,
                          delete,
                          email_key,
                          get,
                          get_id,
                          is_suppressed,
                          join_areas,
                          listing,
                          needs_smtputf8,
                          normalize_email,
                          parse_areas,
                          request_signup,
                          set_areas,
                          set_name,
                          set_preferences,
                          split_areas,
                          suppress,
                          suppressed_hashes,
                          unsubscribe,
                          unsubscribe_id,
)

__all__ = ["BATCH", "COLUMNS", "INACTIVE", "NAME_MAX", "ImportResult", "Listing", "Subscriber", "active_count", "add",
           "add_soft_bounce", "address_hash", "check_signup", "clean_name", "complained", "confirm_id", "delete",
           "email_key", "export_csv", "get", "get_id", "import_csv", "is_suppressed", "join_areas", "listing",
           "mark_bounced", "needs_smtputf8", "normalize_email", "parse_areas", "request_signup", "set_areas",
           "set_name", "set_preferences", "soft_score", "split_areas", "suppress", "suppressed_hashes",
           "unsubscribe", "unsubscribe_id"]
