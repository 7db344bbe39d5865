"""The protocol's constants (proto/PROTOCOL.md section 9): one name per value of proto/constants.json,
its path in upper case (``names.max_tokens`` -> ``NAMES_MAX_TOKENS``; a limit's name holds its default).

Generated from proto/constants.json by scripts/gen-constants; do not edit.
"""

# names
NAMES_MAX_TOKENS = 16
NAMES_MAX_BYTES = 255
NAMES_TOKEN_CHARS = "A-Za-z0-9_-"
NAMES_SINGLE_WILDCARD = "*"
NAMES_TAIL_WILDCARD = ">"
NAMES_MAX_PLAIN_KEY_CHARS = 64

# sub_names
SUB_NAMES_MIN_CHARS = 1
SUB_NAMES_MAX_CHARS = 64
SUB_NAMES_CHARS = "A-Za-z0-9_.:*>-"

# filters
FILTERS_LOOKUPS = (
    "exact",
    "iexact",
    "contains",
    "icontains",
    "in",
    "gt",
    "gte",
    "lt",
    "lte",
    "range",
    "startswith",
    "istartswith",
    "endswith",
    "iendswith",
    "isnull",
    "regex",
    "iregex",
)
FILTERS_DEFAULT_LOOKUP = "exact"
FILTERS_LIMITS_MAX_CONDITIONS = 16  # default of the gateway setting limits.max_filter_conditions
FILTERS_LIMITS_MAX_REGEX_CONDITIONS = 4  # default of the gateway setting limits.max_regex_conditions
FILTERS_LIMITS_MAX_BYTES = 4096  # fixed
FILTERS_LIMITS_MAX_IN_VALUES = 100  # fixed
FILTERS_LIMITS_MAX_REGEX_BYTES = 256  # fixed
FILTERS_LIMITS_MAX_REGEX_PROGRAM_BYTES = 262144  # fixed

# limits
LIMITS_MAX_EVENT_BYTES = 1048576  # default of the gateway setting limits.max_event_bytes

# tokens
TOKENS_CONNECT_PREFIX = "tg1"
TOKENS_RESUME_PREFIX = "tg1r"
TOKENS_MAX_BYTES = 4096
TOKENS_MAX_ALLOW = 64
TOKENS_JTI_HEX_CHARS = 32
TOKENS_CLOCK_SKEW = 5
TOKENS_MAX_TTL = 3600
TOKENS_MIN_SECRET_BYTES = 32
TOKENS_MAX_INFO_BYTES = 256

# buckets
# buckets.tokens: default of the gateway setting auth.tokens_bucket
BUCKETS_TOKENS_NAME = "telegraphy_tokens"
BUCKETS_TOKENS_MAX_AGE = 3600
# buckets.revocations: default of the gateway setting auth.revocations_bucket
BUCKETS_REVOCATIONS_NAME = "telegraphy_revocations"
BUCKETS_REVOCATIONS_MAX_AGE = 86400

# presence
# presence.bucket: default of the gateway setting presence.bucket
PRESENCE_BUCKET_NAME = "telegraphy_presence"
PRESENCE_TTL_REFRESH_INTERVALS = 3
PRESENCE_SNAPSHOT_COST = 5
PRESENCE_CLIENT_ID_CHARS = 16

# catalog
# catalog.bucket: default of the gateway setting catalog.bucket
CATALOG_BUCKET_NAME = "telegraphy_catalog"
CATALOG_FORMAT = 1
CATALOG_MAX_ENTRY_BYTES = 65536
CATALOG_MAX_PATTERNS = 32
CATALOG_MAX_DESCRIPTION_CHARS = 4096
CATALOG_MODE = "open"  # default of the gateway setting catalog.mode
CATALOG_MODES = ("off", "open", "strict")
CATALOG_MAX_ENTRIES = 10000  # default of the gateway setting catalog.max_entries
CATALOG_MAX_REPLY_BYTES = 262144  # default of the gateway setting catalog.max_reply_bytes

# error_codes
ERROR_CODES = (
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_connected",
    "limit_exceeded",
    "internal",
    "unavailable",
    "timeout",
    "unknown_event",
)

# actions
ACTIONS_GRANT_CLAIMS = ("publish", "publish_ephemeral", "rpc")
ACTIONS_MAX_GRANT_PATTERNS = 64
ACTIONS_RPC_SUFFIX = "_rpc"
ACTIONS_LIFECYCLE_SUFFIX = "_lifecycle"
ACTIONS_QUEUE_GROUP = "telegraphy_workers"
ACTIONS_HEADERS_CLIENT = "Telegraphy-Client"
ACTIONS_HEADERS_USER = "Telegraphy-User"
ACTIONS_HEADERS_SESSION = "Telegraphy-Session"
ACTIONS_HEADERS_INFO = "Telegraphy-Info"
ACTIONS_HEADERS_NODE = "Telegraphy-Node"
ACTIONS_RPC_ERROR_CODE_CHARS = "a-z0-9_"
ACTIONS_RPC_ERROR_CODE_MAX_CHARS = 64
ACTIONS_RPC_ERROR_MESSAGE_MAX_BYTES = 256
ACTIONS_LIFECYCLE_KINDS = ("connect", "disconnect", "subscribe", "unsubscribe")
ACTIONS_LIMITS_RPC_TIMEOUT = 5  # default of the gateway setting rpc.timeout
ACTIONS_LIMITS_RPC_MAX_IN_FLIGHT = 4  # default of the gateway setting rpc.max_in_flight
ACTIONS_LIMITS_RPC_MAX_REQUEST_BYTES = 16384  # default of the gateway setting rpc.max_request_bytes
ACTIONS_LIMITS_RPC_MAX_REPLY_BYTES = 65536  # default of the gateway setting rpc.max_reply_bytes
ACTIONS_LIMITS_RPC_REQUESTS_PER_SECOND = 5  # default of the gateway setting rpc.requests_per_second
ACTIONS_LIMITS_RPC_REQUEST_BURST = 20  # default of the gateway setting rpc.request_burst
ACTIONS_LIMITS_PUBLISH_MAX_BYTES = 4096  # default of the gateway setting client_publish.max_bytes
ACTIONS_LIMITS_PUBLISH_REQUESTS_PER_SECOND = 10  # default of the gateway setting client_publish.requests_per_second
ACTIONS_LIMITS_PUBLISH_REQUEST_BURST = 20  # default of the gateway setting client_publish.request_burst

# close_codes
CLOSE_NORMAL = 1000  # a client does reconnect
CLOSE_PROTOCOL_VIOLATION = 1008  # a client does stop
CLOSE_FRAME_TOO_BIG = 1009  # a client does stop
CLOSE_RESTART = 1012  # a client does reconnect_at_once
CLOSE_TRY_AGAIN_LATER = 1013  # a client does reconnect
CLOSE_UNAUTHORIZED = 4001  # a client does new_token
CLOSE_FORBIDDEN = 4003  # a client does stop
CLOSE_TOO_SLOW = 4008  # a client does reconnect
CLOSE_RATE_LIMITED = 4029  # a client does reconnect

# close codes by name
CLOSE_CODES = {
    "normal": 1000,
    "protocol_violation": 1008,
    "frame_too_big": 1009,
    "restart": 1012,
    "try_again_later": 1013,
    "unauthorized": 4001,
    "forbidden": 4003,
    "too_slow": 4008,
    "rate_limited": 4029,
}
# what a client does on each close code
CLOSE_CLIENT = {
    1000: "reconnect",
    1008: "stop",
    1009: "stop",
    1012: "reconnect_at_once",
    1013: "reconnect",
    4001: "new_token",
    4003: "stop",
    4008: "reconnect",
    4029: "reconnect",
}
