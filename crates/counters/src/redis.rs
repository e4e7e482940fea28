//! Counters shared through Redis: every replica counts in the same place, each take one Lua
//! script (one round trip, atomic), timed by Redis's clock so replicas agree on the windows.
//!
//! A counter is a hash `PREFIX KEY ":" WINDOW` holding its window's start (`s`) and what the
//! window has counted (`u`); a take in a new window starts it from zero. Each write sets the
//! hash to expire at its window's end plus a margin, so counters nobody uses disappear.
//! Numbers are exact up to 2^53 (Lua's doubles).

use std::time::Duration;

use async_trait::async_trait;
use morpheus_domain::ports::{CounterFailure, CounterState, Counters, Take, Taken, window_seconds};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

/// Seconds a counter outlives its window.
const EXPIRY_MARGIN: i64 = 60;

/// KEYS: the counters. ARGV: the expiry margin, then each counter's window (seconds), limit
/// and amount. Returns the refusing counter's 1-based index (0: allowed), Redis's time, then
/// each counter's use (after the take when allowed) and window start.
const TAKE: &str = r"
local now = tonumber(redis.call('TIME')[1])
local margin = tonumber(ARGV[1])
local n = #KEYS
local refused = 0
local starts, used, pending = {}, {}, {}
for i = 1, n do
  local w = tonumber(ARGV[3 * i - 1])
  local limit = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local k = KEYS[i]
  local start = now - (now % w)
  local stored = redis.call('HMGET', k, 's', 'u')
  local cur = 0
  if tonumber(stored[1]) == start then cur = tonumber(stored[2]) or 0 end
  cur = cur + (pending[k] or 0)
  if refused == 0 and cur + amount > limit then refused = i end
  pending[k] = (pending[k] or 0) + amount
  starts[i] = start
  used[i] = cur
end
if refused == 0 then
  for i = 1, n do
    local w = tonumber(ARGV[3 * i - 1])
    local amount = tonumber(ARGV[3 * i + 1])
    used[i] = used[i] + amount
    if amount > 0 then
      local k = KEYS[i]
      if tonumber(redis.call('HGET', k, 's')) ~= starts[i] then
        redis.call('HSET', k, 's', starts[i], 'u', 0)
      end
      redis.call('HINCRBY', k, 'u', ARGV[3 * i + 1])
      redis.call('EXPIREAT', k, starts[i] + w + margin)
    end
  end
end
local out = {refused, now}
for i = 1, n do
  out[2 * i + 1] = used[i]
  out[2 * i + 2] = starts[i]
end
return out
";

/// KEYS[1]: the counter. ARGV: its window (seconds), the window start the correction is for,
/// the correction, the expiry margin. Applies it to that window if it is the stored one, or
/// the current one not begun yet; leaves a window that is over alone.
const ADJUST: &str = r"
local now = tonumber(redis.call('TIME')[1])
local w = tonumber(ARGV[1])
local start = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local k = KEYS[1]
local stored = tonumber(redis.call('HGET', k, 's'))
if stored == start then
  if redis.call('HINCRBY', k, 'u', ARGV[3]) < 0 then redis.call('HSET', k, 'u', 0) end
  return 1
end
if start == now - (now % w) and (stored == nil or stored < start) then
  if delta < 0 then delta = 0 end
  redis.call('HSET', k, 's', start, 'u', delta)
  redis.call('EXPIREAT', k, start + w + margin)
  return 1
end
return 0
";

/// How to reach Redis.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put before every key (`morpheus:`), so several deployments can share a server.
    pub prefix: String,
    /// The longest a call may take, connection included.
    pub timeout: Duration,
    /// The longest a connection attempt may take.
    pub connect_timeout: Duration,
}

/// Counters in Redis, over one multiplexed connection that reconnects by itself.
pub struct RedisCounters {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    take: Script,
    adjust: Script,
}

impl RedisCounters {
    /// Prepares the connection without opening it: the first call connects, so the gateway
    /// starts while Redis is down.
    ///
    /// # Errors
    /// When the URL is not a Redis URL.
    pub fn new(url: &str, options: RedisOptions) -> redis::RedisResult<Self> {
        let client = Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.timeout))
            .set_connection_timeout(Some(options.connect_timeout))
            // The circuit breaker in front decides when to try again.
            .set_number_of_retries(0);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            prefix: options.prefix,
            timeout: options.timeout,
            take: Script::new(TAKE),
            adjust: Script::new(ADJUST),
        })
    }

    fn key(&self, key: &str, window: i64) -> String {
        format!("{}{key}:{window}", self.prefix)
    }

    /// Runs a script invocation within the time limit.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, CounterFailure> {
        let mut connection = self.connection.clone();
        match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(failure(format!("redis: {e}"))),
            Err(_) => Err(failure(format!(
                "redis did not answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }
}

fn failure(reason: String) -> CounterFailure {
    CounterFailure {
        retry_after: Duration::from_secs(1),
        reason,
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn take(&self, takes: &[Take]) -> Result<Taken, CounterFailure> {
        let mut invocation = self.take.prepare_invoke();
        invocation.arg(EXPIRY_MARGIN);
        for take in takes {
            let window = window_seconds(take.window);
            invocation
                .key(self.key(&take.key, window))
                .arg(window)
                .arg(take.limit)
                .arg(take.amount);
        }
        let reply: Vec<i64> = self.run(invocation).await?;
        if reply.len() != 2 + 2 * takes.len() {
            return Err(failure(format!(
                "redis answered {} numbers for {} counters",
                reply.len(),
                takes.len()
            )));
        }
        let counters = takes
            .iter()
            .zip(reply[2..].chunks_exact(2))
            .map(|(take, pair)| CounterState {
                used: pair[0].max(0).unsigned_abs(),
                limit: take.limit,
                window_start: pair[1],
                resets_at: pair[1] + window_seconds(take.window),
            })
            .collect();
        Ok(Taken {
            counters,
            refused_by: usize::try_from(reply[0])
                .ok()
                .and_then(|i| i.checked_sub(1)),
            degraded: false,
            now: reply[1],
        })
    }

    async fn adjust(
        &self,
        key: &str,
        window: Duration,
        window_start: i64,
        delta: i64,
    ) -> Result<(), CounterFailure> {
        let window = window_seconds(window);
        let mut invocation = self.adjust.prepare_invoke();
        invocation
            .key(self.key(key, window))
            .arg(window)
            .arg(window_start)
            .arg(delta)
            .arg(EXPIRY_MARGIN);
        self.run::<i64>(invocation).await.map(|_| ())
    }
}
