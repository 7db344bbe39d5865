// Reconnect (and retry) delays.

/**
 * Delay before reconnect attempt number `attempt` (0-based): full jitter over an exponentially
 * growing window, never below `min` and never above `max` milliseconds.
 */
export function backoffDelay(attempt, random = Math.random, min = 500, max = 20000) {
  const span = Math.min(max, min * 2 ** Math.min(attempt, 31));
  return Math.min(max, min + Math.floor(random() * span));
}
