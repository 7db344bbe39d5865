// Generated from proto/constants.json by scripts/gen-constants; do not edit.
const deepFreeze = (value) => {
  if (value !== null && typeof value === "object") Object.values(value).forEach(deepFreeze);
  return Object.freeze(value);
};
export const PROTOCOL = deepFreeze({
  "names": {
    "max_tokens": 16,
    "max_bytes": 255,
    "token_chars": "A-Za-z0-9_-",
    "single_wildcard": "*",
    "tail_wildcard": ">",
    "max_plain_key_chars": 64
  },
  "sub_names": {
    "min_chars": 1,
    "max_chars": 64,
    "chars": "A-Za-z0-9_.:*>-"
  },
  "filters": {
    "lookups": [
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
    ],
    "default_lookup": "exact",
    "limits": {
      "max_conditions": {
        "default": 16,
        "gateway_setting": "limits.max_filter_conditions"
      },
      "max_regex_conditions": {
        "default": 4,
        "gateway_setting": "limits.max_regex_conditions"
      },
      "max_bytes": {
        "default": 4096
      },
      "max_in_values": {
        "default": 100
      },
      "max_regex_bytes": {
        "default": 256
      },
      "max_regex_program_bytes": {
        "default": 262144
      }
    }
  },
  "tokens": {
    "connect_prefix": "tg1",
    "resume_prefix": "tg1r",
    "max_bytes": 4096,
    "max_allow": 64,
    "jti_hex_chars": 32,
    "clock_skew": 5,
    "max_ttl": 3600,
    "min_secret_bytes": 32,
    "max_info_bytes": 256
  },
  "buckets": {
    "tokens": {
      "name": "telegraphy_tokens",
      "max_age": 3600,
      "gateway_setting": "auth.tokens_bucket"
    },
    "revocations": {
      "name": "telegraphy_revocations",
      "max_age": 86400,
      "gateway_setting": "auth.revocations_bucket"
    }
  },
  "presence": {
    "bucket": {
      "name": "telegraphy_presence",
      "gateway_setting": "presence.bucket"
    },
    "ttl_refresh_intervals": 3,
    "snapshot_cost": 5,
    "client_id_chars": 16
  },
  "error_codes": [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_connected",
    "limit_exceeded",
    "internal"
  ],
  "close_codes": {
    "normal": {
      "code": 1000,
      "client": "reconnect"
    },
    "protocol_violation": {
      "code": 1008,
      "client": "stop"
    },
    "frame_too_big": {
      "code": 1009,
      "client": "stop"
    },
    "restart": {
      "code": 1012,
      "client": "reconnect_at_once"
    },
    "try_again_later": {
      "code": 1013,
      "client": "reconnect"
    },
    "unauthorized": {
      "code": 4001,
      "client": "new_token"
    },
    "forbidden": {
      "code": 4003,
      "client": "stop"
    },
    "too_slow": {
      "code": 4008,
      "client": "reconnect"
    },
    "rate_limited": {
      "code": 4029,
      "client": "reconnect"
    }
  }
});
