// Generated from proto/constants.json by scripts/gen-constants; do not edit.
export const PROTOCOL = Object.freeze({
  "names": Object.freeze({
    "max_tokens": 16,
    "max_bytes": 255,
    "token_chars": "A-Za-z0-9_-",
    "single_wildcard": "*",
    "tail_wildcard": ">",
    "max_plain_key_chars": 64
  }),
  "sub_names": Object.freeze({
    "min_chars": 1,
    "max_chars": 64,
    "chars": "A-Za-z0-9_.:*>-"
  }),
  "filters": Object.freeze({
    "lookups": Object.freeze([
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
      "iregex"
    ]),
    "default_lookup": "exact",
    "limits": Object.freeze({
      "max_conditions": Object.freeze({
        "default": 16,
        "gateway_setting": "limits.max_filter_conditions"
      }),
      "max_regex_conditions": Object.freeze({
        "default": 4,
        "gateway_setting": "limits.max_regex_conditions"
      }),
      "max_bytes": Object.freeze({
        "default": 4096
      }),
      "max_in_values": Object.freeze({
        "default": 100
      }),
      "max_regex_bytes": Object.freeze({
        "default": 256
      }),
      "max_regex_program_bytes": Object.freeze({
        "default": 262144
      })
    })
  }),
  "limits": Object.freeze({
    "max_event_bytes": Object.freeze({
      "default": 1048576,
      "gateway_setting": "limits.max_event_bytes"
    })
  }),
  "tokens": Object.freeze({
    "connect_prefix": "tg1",
    "resume_prefix": "tg1r",
    "max_bytes": 4096,
    "max_allow": 64,
    "jti_hex_chars": 32,
    "clock_skew": 5,
    "max_ttl": 3600,
    "min_secret_bytes": 32,
    "max_info_bytes": 256
  }),
  "buckets": Object.freeze({
    "tokens": Object.freeze({
      "name": "telegraphy_tokens",
      "max_age": 3600,
      "gateway_setting": "auth.tokens_bucket"
    }),
    "revocations": Object.freeze({
      "name": "telegraphy_revocations",
      "max_age": 86400,
      "gateway_setting": "auth.revocations_bucket"
    })
  }),
  "presence": Object.freeze({
    "bucket": Object.freeze({
      "name": "telegraphy_presence",
      "gateway_setting": "presence.bucket"
    }),
    "ttl_refresh_intervals": 3,
    "snapshot_cost": 5,
    "client_id_chars": 16
  }),
  "catalog": Object.freeze({
    "bucket": Object.freeze({
      "name": "telegraphy_catalog",
      "gateway_setting": "catalog.bucket"
    }),
    "format": 1,
    "max_entry_bytes": 65536,
    "max_patterns": 32,
    "max_description_chars": 4096,
    "mode": Object.freeze({
      "default": "open",
      "gateway_setting": "catalog.mode"
    }),
    "modes": Object.freeze([
      "off",
      "open",
      "strict"
    ]),
    "max_entries": Object.freeze({
      "default": 10000,
      "gateway_setting": "catalog.max_entries"
    }),
    "max_reply_bytes": Object.freeze({
      "default": 262144,
      "gateway_setting": "catalog.max_reply_bytes"
    })
  }),
  "error_codes": Object.freeze([
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_connected",
    "limit_exceeded",
    "internal",
    "unavailable",
    "timeout",
    "unknown_event"
  ]),
  "actions": Object.freeze({
    "grant_claims": Object.freeze([
      "publish",
      "publish_ephemeral",
      "rpc"
    ]),
    "max_grant_patterns": 64,
    "rpc_suffix": "_rpc",
    "lifecycle_suffix": "_lifecycle",
    "queue_group": "telegraphy_workers",
    "headers": Object.freeze({
      "client": "Telegraphy-Client",
      "user": "Telegraphy-User",
      "session": "Telegraphy-Session",
      "info": "Telegraphy-Info",
      "node": "Telegraphy-Node"
    }),
    "rpc_error_code_chars": "a-z0-9_",
    "rpc_error_code_max_chars": 64,
    "rpc_error_message_max_bytes": 256,
    "lifecycle_kinds": Object.freeze([
      "connect",
      "disconnect",
      "subscribe",
      "unsubscribe"
    ]),
    "limits": Object.freeze({
      "rpc_timeout": Object.freeze({
        "default": 5,
        "gateway_setting": "rpc.timeout"
      }),
      "rpc_max_in_flight": Object.freeze({
        "default": 4,
        "gateway_setting": "rpc.max_in_flight"
      }),
      "rpc_max_request_bytes": Object.freeze({
        "default": 16384,
        "gateway_setting": "rpc.max_request_bytes"
      }),
      "rpc_max_reply_bytes": Object.freeze({
        "default": 65536,
        "gateway_setting": "rpc.max_reply_bytes"
      }),
      "rpc_requests_per_second": Object.freeze({
        "default": 5,
        "gateway_setting": "rpc.requests_per_second"
      }),
      "rpc_request_burst": Object.freeze({
        "default": 20,
        "gateway_setting": "rpc.request_burst"
      }),
      "publish_max_bytes": Object.freeze({
        "default": 4096,
        "gateway_setting": "client_publish.max_bytes"
      }),
      "publish_requests_per_second": Object.freeze({
        "default": 10,
        "gateway_setting": "client_publish.requests_per_second"
      }),
      "publish_request_burst": Object.freeze({
        "default": 20,
        "gateway_setting": "client_publish.request_burst"
      })
    })
  }),
  "close_codes": Object.freeze({
    "normal": Object.freeze({
      "code": 1000,
      "client": "reconnect"
    }),
    "protocol_violation": Object.freeze({
      "code": 1008,
      "client": "stop"
    }),
    "frame_too_big": Object.freeze({
      "code": 1009,
      "client": "stop"
    }),
    "restart": Object.freeze({
      "code": 1012,
      "client": "reconnect_at_once"
    }),
    "try_again_later": Object.freeze({
      "code": 1013,
      "client": "reconnect"
    }),
    "unauthorized": Object.freeze({
      "code": 4001,
      "client": "new_token"
    }),
    "forbidden": Object.freeze({
      "code": 4003,
      "client": "stop"
    }),
    "too_slow": Object.freeze({
      "code": 4008,
      "client": "reconnect"
    }),
    "rate_limited": Object.freeze({
      "code": 4029,
      "client": "reconnect"
    })
  })
});
