// Generated from VERSION by scripts/gen-constants; do not edit.
export const VERSION = "0.1.0";
