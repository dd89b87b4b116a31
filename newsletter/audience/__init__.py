"""Subscribers: the one owner of subscriber state (``subscribers``), their status changes with a cause
(``events``), what mail that comes back does to them (``bounces``), finding them (``search``), their history
(``history``) and their CSV files (``csvio``)."""

from .bounces import add_soft_bounce, complained, mark_bounced, soft_score
from .csvio import BATCH, COLUMNS, ImportResult, export_chunks, export_csv, import_csv
from .search import Listing, Query, active_count, iter_listing, listing, status_counts
from .subscribers import (
                          INACTIVE,
                          NAME_MAX,
                          Subscriber,
                          add,
                          address_hash,
                          block,
                          check_signup,
                          clean_name,
                          confirm_id,
                          delete,
                          delete_id,
                          email_key,
                          get,
                          get_id,
                          is_suppressed,
                          join_areas,
                          needs_smtputf8,
                          normalize_email,
                          parse_areas,
                          request_signup,
                          set_areas,
                          set_areas_id,
                          set_name,
                          set_preferences,
                          split_areas,
                          suppress,
                          suppressed_hashes,
                          unblock,
                          unsubscribe,
                          unsubscribe_by_operator,
                          unsubscribe_id,
)

__all__ = ["BATCH", "COLUMNS", "INACTIVE", "NAME_MAX", "ImportResult", "Listing", "Query", "Subscriber",
           "active_count", "add", "add_soft_bounce", "address_hash", "block", "check_signup", "clean_name",
           "complained", "confirm_id", "delete", "delete_id", "email_key", "export_chunks", "export_csv", "get",
           "get_id", "import_csv", "is_suppressed", "iter_listing", "join_areas", "listing", "mark_bounced",
           "needs_smtputf8", "normalize_email", "parse_areas", "request_signup", "set_areas", "set_areas_id",
           "set_name", "set_preferences", "soft_score", "split_areas", "status_counts", "suppress",
           "suppressed_hashes", "unblock", "unsubscribe", "unsubscribe_by_operator", "unsubscribe_id"]
